"""Processes inside nodes: start with a readiness signal, log, track, stop.

A process runs in a node's network and mount namespaces (`mnexec -a <node pid>`, which execs, so
the PID we hold is the process itself). It gets PR_SET_PDEATHSIG=SIGKILL, so it dies with the
harness even when the harness is SIGKILLed, and its own session, so stop() can signal the
whole group. Its stdout and stderr go through a pipe to a log file; readiness is a line of
output matching a pattern (our daemons print `READY`; tcpdump says `listening on`), so no
fixed sleeps are needed.
"""
from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from typing import Sequence

# a slow machine (the Vagrant VM under TCG emulation: daemons take several times longer to start):
# every readiness wait is this many times its usual length
SLOWDOWN = float(os.environ.get("TESTBED_SLOWDOWN", "1") or 1)


def patience(seconds: float) -> float:
    """How long the harness waits for something to happen (a program ready, a control socket's
    answer, a status, a terminal prompt, a preamble's message): `seconds` on this machine, SLOWDOWN
    times that on a slow one. Never a protocol timer, and never a window in which something must
    NOT happen: those stay as the RFC or the part defines them."""
    return seconds * SLOWDOWN

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class ProcessError(RuntimeError):
    pass


def in_node(node_pid: int, argv: Sequence[str]) -> list[str]:
    """The argv that runs `argv` inside the namespaces of the node whose shell has `node_pid`."""
    return ["mnexec", "-a", str(node_pid), *argv]


class NodeProcess:
    """One process started inside a node."""

    def __init__(self, node: str, name: str, argv: Sequence[str], log_path: Path,
                 ready: str | None = None, env: dict | None = None, on_start=None, on_exit=None):
        self.node, self.name, self.argv = node, name, list(argv)
        self.log_path = Path(log_path)
        self.ready_re = re.compile(ready) if ready else None
        self.env = env
        self._ready = threading.Event()  # set on the ready line, or when the output ends
        self._saw_ready = False
        self._tail: deque[str] = deque(maxlen=20)
        self._on_start, self._on_exit = on_start, on_exit
        self.popen: subprocess.Popen | None = None
        self.started_at: float | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self, node_pid: int) -> "NodeProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, **(self.env or {}))
        try:
            self.popen = subprocess.Popen(
                in_node(node_pid, self.argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent, start_new_session=True,
            )
        except FileNotFoundError:
            raise ProcessError("mnexec is missing: install Debian's mininet package (scripts/setup does)") from None
        self.started_at = time.time()
        if self._on_start:
            self._on_start(self)
        threading.Thread(target=self._pump, name=f"log-{self.node}-{self.name}", daemon=True).start()
        return self

    def _pump(self) -> None:
        assert self.popen and self.popen.stdout
        with open(self.log_path, "ab", buffering=0) as log:
            for raw in self.popen.stdout:
                log.write(raw)
                line = raw.decode(errors="replace").rstrip("\n")
                self._tail.append(line)
                if self.ready_re and not self._ready.is_set() and self.ready_re.search(line):
                    self._saw_ready = True
                    self._ready.set()
        self.popen.stdout.close()
        self._ready.set()  # wake a waiter; wait_ready() then sees the exit

    def wait_ready(self, timeout: float = 10.0) -> "NodeProcess":
        if self.ready_re is None:
            return self
        timeout = patience(timeout)
        if not self._ready.wait(timeout):
            self.stop()
            raise ProcessError(
                f"{self.name} on node {self.node} did not say it was ready within {timeout:.0f} s "
                f"(expected a line matching {self.ready_re.pattern!r}); its log is {self.log_path}:\n"
                + "\n".join(self._tail) + ("\nOn a slow machine (a VM without KVM) set TESTBED_SLOWDOWN, e.g. 4, to "
                                            "give every program that much longer to start." if SLOWDOWN == 1 else ""))
        if not self._saw_ready:  # its output ended first: it is exiting or has exited
            rc = self.stop()
            raise ProcessError(
                f"{self.name} on node {self.node} exited with status {rc} before it was ready; "
                f"last lines of {self.log_path}:\n" + "\n".join(self._tail))
        return self

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 3.0) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit status."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.popen.wait()
        if self._on_exit:
            self._on_exit(self)
            self._on_exit = None
        return self.popen.returncode

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)  # its own session: the group id is its pid
        except ProcessLookupError:
            pass

    def tail(self) -> list[str]:
        return list(self._tail)
