"""The one way a daemon drives a sans-I/O core (nodes/core.py): feed it an input with the time,
carry out what it drains, keep its timer armed at `next_deadline()`.

    driver = CoreDriver(core, executor, log, now=clock.wall)
    driver.feed(core.receive_datagram, payload, where)   # core.receive_datagram(payload, where, now=...)
    driver.feed(core.link_up, care_of_address=coa)

The input is the core's own method (a typo fails where it is written, a type checker sees it), and
nothing has to be flushed by hand after it.
"""
from __future__ import annotations

import asyncio
import traceback
from collections import Counter
from typing import Callable, Protocol

from nodes.core import Core
from nodes.runtime.clock import SYSTEM, Reading


class Executor(Protocol):
    """What carries out a core's actions on the host."""

    def attach(self, loop: asyncio.AbstractEventLoop) -> None: ...

    def run(self, actions: list) -> None: ...

    def stop(self) -> None: ...


class CoreDriver:
    """Feeds a sans-I/O core (nodes/core.py), runs what it drains, and keeps one timer armed at
    `core.next_deadline()` that calls `core.handle_timer`.

    An input is the core's own method, called with the driver's `now` as its keyword `now`:

        driver.feed(core.receive_datagram, payload, where)   # core.receive_datagram(payload, where, now=...)

    `now` is the time base the core runs on (nodes/runtime/clock.py): the Mobile IP cores run on
    wall time (their identifications are timestamps, RFC 5944 5.7.1), the default, the IKE core on
    the monotonic clock; the `executor` carries out the drained actions
    (nodes/runtime/mip/actions.MipExecutor for the Mobile IP cores, nodes/runtime/ipsec/runtime.IkeActions
    for the IKE core).

    Ownership: whoever makes the driver stops it, once; `stop` cancels the timer and stops the
    executor. An executor never stops its driver (nor the object that owns the driver): an owner
    that is also its driver's executor would be stopped again from inside its own stop."""

    def __init__(self, core: Core, executor: Executor, log, now: Reading = SYSTEM.wall,
                 loop: asyncio.AbstractEventLoop | None = None):
        self.core, self.executor, self.log = core, executor, log
        self.now = now
        self._loop = loop or asyncio.get_running_loop()
        executor.attach(self._loop)
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = 0.0
        self.errors = Counter()

    def feed(self, core_input: Callable[..., None], *args, **kw) -> None:
        """Call `core_input(*args, now=self.now(), **kw)`, run the actions it drained and re-arm the
        timer; an exception is counted and logged, never raised (bad input is not a crash)."""
        try:
            core_input(*args, now=self.now(), **kw)
        except Exception as exc:  # bad input gets counted, never a crash
            method = getattr(core_input, "__name__", repr(core_input))
            self.errors[f"{method}:{type(exc).__name__}"] += 1
            self.log("core-error", method=method, error=f"{type(exc).__name__}: {exc}",
                     trace=traceback.format_exc(limit=4))
        self.executor.run(self.core.drain_actions())
        self.rearm()

    def rearm(self) -> None:
        deadline = self.core.next_deadline()
        if self._timer is not None:
            if deadline is not None and self._armed_at <= deadline:
                # keep it: firing before the deadline is harmless (handle_timer acts only on what
                # is due, and the call re-arms), and a home agent whose every registration pushes
                # the earliest expiry later saves a cancel and a new timer per request
                return
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            self._armed_at = deadline
            self._timer = self._loop.call_later(max(0.0, deadline - self.now()), self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.feed(self.core.handle_timer)

    def stop(self) -> None:
        """The timer cancelled and the executor stopped (see the class's note on ownership)."""
        if self._timer is not None:
            self._timer.cancel()
        self.executor.stop()
