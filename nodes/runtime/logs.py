"""Structured logs: one JSON object per line to a file, and a human line to stderr."""
from __future__ import annotations

import json
import sys
import time
from typing import IO


class EventLog:
    def __init__(self, daemon: str, path: str | None = None):
        self.daemon = daemon
        self._file: IO[str] | None = open(path, "a", buffering=1) if path else None

    def __call__(self, event: str, **fields) -> None:
        entry = {"t": round(time.time(), 6), "daemon": self.daemon, "event": event, **fields}
        if self._file:
            self._file.write(json.dumps(entry, default=str) + "\n")
        details = " ".join(f"{k}={v}" for k, v in fields.items())
        print(f"{entry['t']:.6f} {self.daemon} {event} {details}".rstrip(), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None
