"""The daemon frame and control socket, with the echo sink as the daemon (no namespaces needed)."""
import json
import socket
import subprocess
import sys

import pytest

from testbed.control import ControlError, call


@pytest.fixture
def sink(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctl, events = tmp_path / "sink.ctl", tmp_path / "events.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "nodes.instruments.sink", "--control", str(ctl), "--log-json", str(events),
                          "--udp", str(port), "--bind", "127.0.0.1"], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "READY"
    yield ctl, port, events
    p.terminate()
    assert p.wait(timeout=5) == 0, "a daemon exits cleanly on SIGTERM"
    p.stdout.close()
    assert not ctl.exists(), "the control socket is removed at exit"


def test_status_reports_what_arrived(sink):
    ctl, port, events = sink
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(b"hello", ("127.0.0.1", port))
        assert s.recv(100) == b"hello"
    received = call(str(ctl), "status")["received"]
    assert [(r["proto"], r["port"], r["bytes"]) for r in received] == [("udp", port, 5)]
    logged = [json.loads(line)["event"] for line in events.read_text().splitlines()]
    assert logged[:2] == ["ready", "udp"]


def test_errors_say_what_went_wrong(sink, tmp_path):
    ctl, _, _ = sink
    assert call(str(ctl), "ping") == "pong"
    with pytest.raises(ControlError, match="unknown command 'fly'"):
        call(str(ctl), "fly")
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(ctl))
        s.sendall(b"not json\n")
        assert "not a JSON line" in json.loads(s.recv(4096))["error"]
    with pytest.raises(ControlError, match="is the daemon running"):
        call(str(tmp_path / "nobody.ctl"), "status")
