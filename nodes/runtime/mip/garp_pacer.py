"""When to send gratuitous ARPs: each announcement once as soon as the pace allows and once more
`repeat_after` seconds later (RFC 5944 section 4.6: broadcasts are unreliable, repeat them a few
times), at most `burst` per `tick` seconds, so a burst of new bindings neither delays the
registration replies nor floods the home link.

Sans-I/O: the caller passes a monotonic `now`, sends what `due(now)` returns and calls again at
`next_deadline()`. A newer announcement for the same key replaces the pending one; `cancel(key)`
(the node came home: the home agent stops proxying for it) drops what is pending for the key, so a
stale repeat never overrides the node's own announcement.
"""
from __future__ import annotations

from collections import deque
from typing import Hashable

REPEAT_AFTER = 0.1  # seconds before an announcement is sent again
BURST, TICK = 64, 0.005  # at most 64 per 5 ms: 12,800 a second
LIMIT = 100_000  # announcements waiting at most; beyond, new ones are dropped and counted


class GarpPacer:
    def __init__(self, repeat_after: float = REPEAT_AFTER, burst: int = BURST, tick: float = TICK,
                 limit: int = LIMIT):
        self.repeat_after, self.burst, self.tick, self.limit = repeat_after, burst, tick, limit
        self._token: dict[Hashable, int] = {}  # key -> its pending announcement's token
        self._next_token = 0
        self._fresh: deque = deque()  # (key, token): first sends, in order
        self._repeats: deque = deque()  # (due, key, token): repeats, due times in order
        self._window, self._sent_in_window = float("-inf"), 0
        self.dropped = self.cancelled = 0

    def __len__(self) -> int:
        return len(self._token)

    def announce(self, key: Hashable) -> bool:
        """Queue an announcement for `key` (replacing one pending); False when the queue is full."""
        if key not in self._token and len(self._fresh) + len(self._repeats) >= self.limit:
            self.dropped += 1
            return False
        self._next_token += 1
        self._token[key] = self._next_token
        self._fresh.append((key, self._next_token))
        return True

    def cancel(self, key: Hashable) -> bool:
        """Drop what is pending for `key` (first send or repeat); True when something was."""
        if self._token.pop(key, None) is None:
            return False
        self.cancelled += 1
        return True

    def due(self, now: float) -> list[tuple[Hashable, bool]]:
        """(key, is_repeat) to send now, at most what is left of this tick's burst; repeats first
        (they are older), then first sends, each scheduling its repeat."""
        if now >= self._window + self.tick:
            self._window, self._sent_in_window = now, 0
        out: list[tuple[Hashable, bool]] = []
        budget = self.burst - self._sent_in_window
        while budget > len(out) and self._repeats and self._repeats[0][0] <= now:
            _due, key, token = self._repeats.popleft()
            if self._token.get(key) == token:
                del self._token[key]
                out.append((key, True))
        while budget > len(out) and self._fresh:
            key, token = self._fresh.popleft()
            if self._token.get(key) == token:
                out.append((key, False))
                self._repeats.append((now + self.repeat_after, key, token))
        self._sent_in_window += len(out)
        return out

    def next_deadline(self) -> float | None:
        """When `due` has something to send again (None: nothing pending)."""
        self._prune()
        soonest = None
        if self._fresh:  # a time already past means at once
            soonest = self._window + self.tick if self._sent_in_window >= self.burst else max(self._window, 0.0)
        if self._repeats:
            at = max(self._repeats[0][0], self._window + self.tick if self._sent_in_window >= self.burst else 0.0)
            soonest = at if soonest is None else min(soonest, at)
        return soonest

    def _prune(self) -> None:
        """Forget cancelled or replaced entries at the heads of the queues."""
        while self._fresh and self._token.get(self._fresh[0][0]) != self._fresh[0][1]:
            self._fresh.popleft()
        while self._repeats and self._token.get(self._repeats[0][1]) != self._repeats[0][2]:
            self._repeats.popleft()
