"""Waiting on what a tester received: one inbox for everything its sockets read (frames from taps,
datagrams at a peer's sockets), with waits that take what they want and leave the rest for later
waits. A tester class mixes it in and provides `inbox` (a list) and `_pump(timeout)`, which reads
what arrives within `timeout` into the inbox."""
from __future__ import annotations

import time


class Inbox:
    inbox: list

    def _pump(self, timeout: float) -> None:  # pragma: no cover - provided by the tester
        raise NotImplementedError

    def take(self, match, timeout: float):
        """The first item that `match`es, waiting up to `timeout`; the others stay for later waits."""
        end = time.monotonic() + timeout
        while True:
            for i, item in enumerate(self.inbox):
                if match(item):
                    return self.inbox.pop(i)
            left = end - time.monotonic()
            if left <= 0:
                return None
            self._pump(left)

    def collect(self, duration: float, match) -> list:
        """Every item that `match`es within `duration` (all of it is waited for)."""
        end, got = time.monotonic() + duration, []
        while True:
            keep = []
            for item in self.inbox:
                (got if match(item) else keep).append(item)
            self.inbox = keep
            left = end - time.monotonic()
            if left <= 0:
                return got
            self._pump(left)

    def collect_until(self, match, timeout: float) -> list:
        """Everything that comes until (and including) the first item that `match`es, or until
        `timeout`."""
        end, got = time.monotonic() + timeout, []
        while True:
            while self.inbox:
                item = self.inbox.pop(0)
                got.append(item)
                if match(item):
                    return got
            left = end - time.monotonic()
            if left <= 0:
                return got
            self._pump(left)

    def drain(self) -> None:
        """Forget what came so far (e.g. the advertisements before a part's own exchange)."""
        self._pump(0.0)
        self.inbox.clear()
