"""Daemon logs never block the packet path: a stderr nobody reads costs a dropped (counted) human
line, never a stalled caller; the JSON file keeps every line."""
import json
import os
import threading

from nodes.runtime.logs import EventLog


def test_a_full_stderr_pipe_does_not_block_the_caller(tmp_path):
    r, w = os.pipe()
    os.set_blocking(w, True)
    stream = os.fdopen(w, "w")
    log = EventLog("ha", str(tmp_path / "ha.json"), stream=stream, queue_size=16)

    def flood():
        for n in range(5000):  # far more than the 64 KiB pipe and the queue hold
            log("registration", home=f"10.1.1.{n % 250}", n=n, padding="x" * 60)

    caller = threading.Thread(target=flood, daemon=True)
    caller.start()
    caller.join(60)  # a blocking log would wait for a reader forever; a loaded machine only slows it
    assert not caller.is_alive(), "logging waited for a reader"
    assert log.dropped > 0
    lines = (tmp_path / "ha.json").read_text().splitlines()
    assert len(lines) == 5000 and json.loads(lines[-1])["n"] == 4999
    # the reader comes back: the writer thread's blocked write goes on, and close() returns (the read
    # end is never closed under a writer: a worker without SIGPIPE ignored would die of it)
    reader = threading.Thread(target=lambda: [None for _ in iter(lambda: os.read(r, 65536), b"")], daemon=True)
    reader.start()
    log.close()
    stream.close()
    reader.join(10)
    os.close(r)
    assert not reader.is_alive()


def test_lines_reach_stderr_in_order_and_a_drop_is_reported(tmp_path):
    out = tmp_path / "stderr.txt"
    with open(out, "w") as stream:
        log = EventLog("fa", None, stream=stream)
        log("ready", control="/x")
        log("relay", mn="10.1.1.100")
        log.close()
    text = out.read_text().splitlines()
    assert [line.split()[1:3] for line in text] == [["fa", "ready"], ["fa", "relay"]]
    assert text[1].endswith("mn=10.1.1.100")


def test_a_command_ended_by_a_signal_is_an_interruption_not_an_error():
    """A daemon being stopped: SIGTERM reaches its `ip` child too; that is no failure of ours (the
    sentinel fails a case on the daemons' error events, not on this)."""
    import pytest
    from nodes.runtime.host.commands import CommandError, CommandInterrupted, run
    with pytest.raises(CommandInterrupted):
        run(["sh", "-c", "kill -TERM $$"])
    with pytest.raises(CommandError) as err:
        run(["sh", "-c", "exit 3"])
    assert not isinstance(err.value, CommandInterrupted)
