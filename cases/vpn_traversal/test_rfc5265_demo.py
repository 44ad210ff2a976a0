"""The demonstration a customer sees (RFC 5265 section 4, problem statement 5.6): `testbed up
--scenario rfc5265-cvc`, then `move r fn2` at the Mininet CLI. The CLI prints the mobile VPN node's
IKE message counter before the move and after it settled: it stays still, because only the x-MIP
registration is redone outside; the SA is bound to the x-HoA.

The case drives the real `testbed up` (its own world, its own run) through its CLI on stdin/stdout,
as a person at the keyboard would, and reads only what the CLI prints."""
from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time

import pytest

from testbed import REPO_ROOT
from testbed.traversal_checks import all_rfc5265_layers_up

PROMPT = "testbed> "
UP_BOUND = 25.0  # world, roles, x-MIP, IKE and i-MIP on a loaded 2-core machine


class Cli:
    """`testbed up` with its CLI on pipes: type a command, read what it prints up to the next prompt."""

    def __init__(self, argv: list[str]):
        self.proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=0)
        self.chunks: queue.Queue[str] = queue.Queue()
        self.screen = ""
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        while True:
            data = os.read(self.proc.stdout.fileno(), 4096)
            if not data:
                self.chunks.put("")
                return
            self.chunks.put(data.decode(errors="replace"))

    def until_prompt(self, timeout: float) -> str:
        deadline, text = time.monotonic() + timeout, ""
        while not text.endswith(PROMPT):
            try:
                chunk = self.chunks.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                chunk = None
            if not chunk:
                raise AssertionError(f"testbed up printed no prompt within {timeout:.0f} s "
                                     f"(exit {self.proc.poll()}); it shows:\n{(self.screen + text)[-2000:]}")
            text += chunk
        self.screen += text
        return text[: -len(PROMPT)]

    def command(self, line: str, timeout: float = 10.0) -> str:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.until_prompt(timeout)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("exit\n")
                self.proc.stdin.flush()
                self.proc.wait(15)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.terminate()
                self.proc.wait(10)


@pytest.mark.req("ps-5.6-handoff-without-ike", "rfc5265-inside-outside-detection")
def test_testbed_up_shows_a_move_with_the_ike_counter_still(tmp_path):
    """`testbed up --scenario rfc5265-cvc`: once x-MIP, the VPN tunnel and i-MIP are up, `move r fn2`
    prints the mobile VPN node's IKE message counter before and 2 s after the move, unchanged (+0)."""
    cli = Cli([sys.executable, "-m", "testbed.cli", "--report-dir", str(tmp_path), "up", "--scenario", "rfc5265-cvc"])
    try:
        cli.until_prompt(UP_BOUND)
        deadline, status = time.monotonic() + UP_BOUND, {}
        while time.monotonic() < deadline:
            out = cli.command("status mn")
            status = json.loads(out[out.index("{"):]) if "{" in out else {}
            if status and all_rfc5265_layers_up(status):
                break
            time.sleep(0.3)
        assert status and all_rfc5265_layers_up(status), f"the RFC 5265 layers did not come up in testbed up: {status}"
        out = cli.command("move r fn2 2")
        m = re.search(r"^mn: IKE messages (\d+) before the move, (\d+) 2 s after \(\+(\d+)\)$", out, re.MULTILINE)
        assert m, f"the move printed no IKE counter for the mobile VPN node:\n{out}"
        before, after, delta = map(int, m.groups())
        assert before > 0, "the counter should have counted the IKE exchange that set the tunnel up"
        assert delta == 0 and after == before, f"an outside move cost {delta} IKE messages:\n{out}"
        status = json.loads((out := cli.command("status mn"))[out.index("{"):])
        assert all_rfc5265_layers_up(status), f"after the move the layers are not all up: {status}"
    finally:
        cli.close()
