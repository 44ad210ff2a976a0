"""A process inside a node with a pseudo-terminal as its controlling terminal, driven the way a person
at a keyboard drives it: wait for a prompt, type a line (draft-gupta section 4: "the user must type
the password").

    term = start_on_terminal(world, "r", "client", argv)
    term.expect(r"password for alice: ")
    term.type_line(secret)                # not echoed by a getpass prompt, never logged here
    term.expect(r"^READY$")

What the terminal shows is appended to <logs>/<node>.<name>.terminal.log (typed lines are not
written there, only what the program printed). The process is tracked in the run registry like every
process the harness starts, dies with the harness (PR_SET_PDEATHSIG) and is stopped at teardown.
"""
from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import subprocess
import termios
import time
from typing import Sequence

from testbed.processes import _die_with_parent, in_node, patience


class TerminalError(AssertionError):
    pass


class TerminalProcess:
    def __init__(self, world, node: str, name: str, argv: Sequence[str], env: dict | None = None):
        self.world, self.node, self.name = world, node, name
        self.log_path = world.log_dir / f"{node}.{name}.terminal.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.screen = ""  # everything printed so far
        self._seen = 0    # how much of `screen` earlier expect() calls consumed
        master, slave = pty.openpty()

        def child_setup():  # after setsid (start_new_session): take the pty as controlling terminal
            _die_with_parent()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.popen = subprocess.Popen(in_node(world.pid(node), argv), stdin=slave, stdout=slave, stderr=slave,
                                      env=dict(os.environ, **(env or {})), start_new_session=True,
                                      preexec_fn=child_setup, close_fds=True)
        os.close(slave)
        self.master = master
        world.run.track(self.popen.pid, f"{name}@{node}")
        world.processes.append(self)

    # -- what a person does -------------------------------------------------------------------
    def expect(self, pattern: str, timeout: float = 10.0) -> re.Match:
        """Wait until the terminal shows text matching `pattern` (multiline) after what the previous
        expect() matched; the match. TerminalError with the screen if it does not come in time."""
        regex = re.compile(pattern, re.MULTILINE)
        timeout = patience(timeout)
        deadline = time.monotonic() + timeout
        while True:
            m = regex.search(self.screen, self._seen)
            if m:
                self._seen = m.end()
                return m
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise TerminalError(f"{self.name} on {self.node}: no {pattern!r} on its terminal within "
                                    f"{timeout:.0f} s; it shows:\n{self.screen[-2000:]}")

    def type_line(self, text: str) -> None:
        os.write(self.master, text.encode() + b"\r")

    def wait(self, timeout: float = 10.0) -> int:
        """Read the terminal until the program exits; its exit status."""
        deadline = time.monotonic() + timeout
        while self.popen.poll() is None and time.monotonic() < deadline:
            self._read(0.2)
        self._read(0.05)
        return self.popen.wait(max(0.0, deadline - time.monotonic()) or 0.1)

    # -- plumbing ------------------------------------------------------------------------------
    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return self.popen.poll() is None
        try:
            data = os.read(self.master, 4096)
        except OSError:  # EIO: the program closed the terminal (exited)
            return False
        if not data:
            return False
        text = data.decode(errors="replace").replace("\r\n", "\n")
        self.screen += text
        with open(self.log_path, "a") as log:
            log.write(text)
        return True

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 3.0) -> int | None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self.world.run.untrack(self.popen.pid)
        try:
            os.close(self.master)
        except OSError:
            pass
        return self.popen.returncode


def start_on_terminal(world, node: str, name: str, argv: Sequence[str], env: dict | None = None) -> TerminalProcess:
    return TerminalProcess(world, node, name, argv, env)
