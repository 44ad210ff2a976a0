"""Structured logs: one JSON object per line to a file, and a human line to stderr.

Logging never blocks the packet path. The JSON file (a regular file, line-buffered) gets every
line. The human line goes to stderr through a bounded queue that a writer thread drains: when the
reader of stderr (a pipe to the harness) falls behind and the queue is full, the line is dropped
from stderr only and counted (`dropped`), and the next line that gets through says how many went.
"""
from __future__ import annotations

import atexit
import json
import queue
import sys
import threading
import time
from typing import IO

from nodes.runtime.clock import SYSTEM, Clock

# the events our daemons log for an exception they caught to keep serving: each is a bug of ours, and
# the harness's sentinel (testbed/sentinel.py) fails the case that saw one
SWALLOWED_ERRORS = frozenset({"action-error", "core-error", "reader-error", "layering-error", "client-error",
                              "net_error", "keepalive-error"})
STDERR_QUEUE = 4096  # human lines waiting for stderr before they are dropped (counted)


class EventLog:
    def __init__(self, daemon: str, path: str | None = None, stream: IO[str] | None = None,
                 queue_size: int = STDERR_QUEUE, clock: Clock = SYSTEM):
        self.daemon = daemon
        self.clock = clock  # a line's "t" is wall time: people and the world's timeline line it up
        self._file: IO[str] | None = open(path, "a", buffering=1) if path else None
        self._stream = stream if stream is not None else sys.stderr
        self._lines: queue.Queue[str | None] = queue.Queue(maxsize=queue_size)
        self.dropped = 0  # human lines dropped from stderr (the JSON file has them)
        self._writer = threading.Thread(target=self._write, name=f"log-{daemon}", daemon=True)
        self._writer.start()
        atexit.register(self.flush)  # a daemon that exits early still says what it logged

    def __call__(self, event: str, **fields) -> None:
        entry = {"t": round(self.clock.wall(), 6), "daemon": self.daemon, "event": event, **fields}
        if self._file:
            self._file.write(json.dumps(entry, default=str) + "\n")
        details = " ".join(f"{k}={v}" for k, v in fields.items())
        try:
            self._lines.put_nowait(f"{entry['t']:.6f} {self.daemon} {event} {details}".rstrip())
        except queue.Full:
            self.dropped += 1

    def _write(self) -> None:
        reported = 0
        while (line := self._lines.get()) is not None:
            if self.dropped > reported:
                line = f"{line}\n({self.dropped - reported} log lines dropped from stderr: its reader fell behind)"
                reported = self.dropped
            try:
                self._stream.write(line + "\n")  # one write: another thread's line (READY) never lands inside it
                self._stream.flush()
            except (OSError, ValueError):  # stderr closed: the JSON file still has everything
                return

    def flush(self, timeout: float = 2.0) -> None:
        """Wait (at most `timeout`) until the queued human lines are written."""
        end = self.clock.now() + timeout
        while not self._lines.empty() and self._writer.is_alive() and self.clock.now() < end:
            time.sleep(0.005)

    def close(self) -> None:
        try:
            self._lines.put(None, timeout=2.0)
        except queue.Full:
            pass
        self._writer.join(timeout=2.0)
        if self._file:
            self._file.close()
            self._file = None
