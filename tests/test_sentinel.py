"""The sentinel reads what our programs logged while a case ran: a swallowed exception or a
traceback is an error of ours, reported with its excerpt; a third party's lines are not."""
import json
from types import SimpleNamespace

from testbed import sentinel


def world_with_logs(tmp_path):
    w = SimpleNamespace(log_dir=tmp_path, net=object())
    sentinel.register(w)
    return w


def test_a_swallowed_action_error_is_found_from_where_the_case_started(tmp_path):
    w = world_with_logs(tmp_path)
    events = tmp_path / "iha.ha.events.jsonl"
    events.write_text(json.dumps({"t": 1, "daemon": "ha", "event": "action-error", "action": "ProxyArp"}) + "\n")
    watch = sentinel.Watch()  # the earlier case's error is not this case's
    assert watch.errors() == []
    with events.open("a") as f:
        f.write(json.dumps({"t": 2, "daemon": "ha", "event": "registration"}) + "\n")
        f.write(json.dumps({"t": 3, "daemon": "ha", "event": "core-error", "method": "on_udp",
                            "error": "TypeError: x", "trace": "Traceback ..."}) + "\n")
    found = watch.errors()
    assert [e.what for e in found] == ["core-error"] and "TypeError: x" in found[0].excerpt
    assert "core-error" in sentinel.report(found)
    w.net = None
    sentinel.forget_stopped()
    assert w not in sentinel._worlds


def test_a_traceback_in_a_process_log_is_found_with_its_exception_line(tmp_path):
    w = world_with_logs(tmp_path)
    watch = sentinel.Watch()
    (tmp_path / "g.gw.log").write_text(
        "READY\nTask exception was never retrieved\nTraceback (most recent call last):\n"
        "  File \"x.py\", line 1, in f\n    g()\nZeroDivisionError: division by zero\n1.0 gw tunnel up\n")
    (tmp_path / "g.charon.log").write_text("00[IKE] received AUTHENTICATION_FAILED notify error\n")
    found = watch.errors()
    assert len(found) == 1 and found[0].path.name == "g.gw.log"
    assert found[0].excerpt.splitlines()[-1] == "ZeroDivisionError: division by zero"
    w.net = None
    sentinel.forget_stopped()
