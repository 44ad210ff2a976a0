"""Waiting on what a tester received: one inbox for everything its sockets read (frames from taps,
datagrams at a peer's sockets), with waits that take what they want and leave the rest for later
waits. A tester class mixes it in and provides `inbox` (a list) and `_pump(timeout)`, which reads
what arrives within `timeout` into the inbox.

Silence windows ended by a marker (`quiet_until_marker`, used by every tester): a part that judges
that the implementation under test does NOT answer or forward a probe waits a window for the
unwanted answer. It may send, after the probe, a marker: a message to the same implementation that
a conforming one answers or forwards (a valid request of another node, a datagram for another bound
address). Once the marker's answer has arrived, the implementation has handled what came before it,
and the window ends MARKER_GRACE later. The probe's unwanted answer ends the wait at once (the
part then FAILs as before); an implementation that never answers the marker is waited for the whole
window, and judged exactly as without a marker. A window that an RFC timer defines is never
shortened this way (no marker is sent there).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

# After the marker's answer: an implementation that handles what arrives in order has handled the
# probe before the marker; the grace leaves room for one that works on its peers' messages in
# parallel (a thread or queue per peer) and for the probe's answer still on its way. 50 ms is about
# ten times what a relay or a reply takes on this testbed's links with the machine loaded (5-10 ms
# in the parts' ladders), and far below the windows it ends (0.3-1 s).
MARKER_GRACE = 0.05


@dataclass
class Quiet:
    """What a silence window saw: the unwanted item (None: silence), the marker's answer (None:
    none came, the whole window was waited) and how long the window lasted."""
    item: object
    marker: object
    waited: float

    @property
    def silent(self) -> bool:
        return self.item is None


def quiet_until_marker(recv, unwanted, marker, window: float, grace: float = MARKER_GRACE) -> Quiet:
    """Wait up to `window` seconds for an item that is `unwanted` (returned at once), ending
    `grace` seconds after an item that is the `marker`'s answer (see the module docstring).
    `recv(timeout)` gives what arrives within `timeout` (a list, returning as soon as something
    came); a `marker` of None waits the whole window."""
    start = time.monotonic()
    end, seen = start + window, None
    while True:
        left = end - time.monotonic()
        for item in recv(max(left, 0.0)):
            if unwanted(item):
                return Quiet(item, seen, time.monotonic() - start)
            if seen is None and marker is not None and marker(item):
                seen = item
                end = min(end, time.monotonic() + grace)
        if left <= 0:
            return Quiet(None, seen, time.monotonic() - start)


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

    def quiet_until_marker(self, unwanted, marker, window: float, grace: float = MARKER_GRACE) -> Quiet:
        """The inbox's silence window ended by a marker (module docstring); items that are neither
        unwanted nor the marker's answer stay for later waits."""
        def take() -> list:
            took, keep = [], []
            for item in self.inbox:
                (took if unwanted(item) or (marker is not None and marker(item)) else keep).append(item)
            self.inbox = keep
            return took

        def recv(timeout: float) -> list:
            took = take()  # what came before (left by earlier waits), then what comes
            if not took:
                self._pump(timeout)
                took = take()
            return took
        return quiet_until_marker(recv, unwanted, marker, window, grace)

    def drain(self) -> None:
        """Forget what came so far (e.g. the advertisements before a part's own exchange)."""
        self._pump(0.0)
        self.inbox.clear()
