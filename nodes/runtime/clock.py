"""A node's one clock: the runtime reads time here and nowhere else, and hands it to the cores
(nodes/core.py: a core never reads a clock, it is given `now`).

    clock = Clock()          # or Clock(monotonic=fake, wall=fake) in a test
    clock.now()              # monotonic seconds: timers, intervals, timeouts, the IPsec cores
    clock.wall()             # Unix seconds: only where wall time is what is asked for

`now()` is CLOCK_MONOTONIC, which no clock step moves and every process on the machine shares.
`wall()` is read only where wall time itself is the point:

- Mobile IPv4 identifications are NTP-format timestamps and a home agent checks them against its
  own time (RFC 5944 5.7.1 and 5.7); the Mobile IP cores therefore run on wall time (`wall`), and
  what their status reports (a binding's `registered_at` and `expires`, the node's
  `registered_until`) is Unix time that a reader compares with its own;
- timestamps meant to be lined up with other processes' records by a person or the harness: log
  lines (nodes/runtime/logs.py), a probe's send time, a move's time, which the world's timeline
  (testbed/world.py) also keeps in Unix time.
"""
from __future__ import annotations

import time
from typing import Callable

Reading = Callable[[], float]


class Clock:
    """Monotonic time for everything that measures or waits, wall time where it is asked for."""

    __slots__ = ("now", "wall")

    def __init__(self, monotonic: Reading = time.monotonic, wall: Reading = time.time):
        self.now: Reading = monotonic
        self.wall: Reading = wall


SYSTEM = Clock()
"""The machine's clocks; a daemon passes it down, a test builds its own Clock."""
