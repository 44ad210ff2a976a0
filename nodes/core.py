"""The one contract every sans-I/O protocol core follows (IKE, ESP SA, NAPT, HA, FA, MN).

A core holds protocol state and nothing else: no sockets, no clocks, no sleeps, no global
randomness. Its runtime (nodes/runtime, nodes/daemons) does all I/O and feeds it:

    core.receive_datagram(data, addr, now)   bytes exactly as received, where from/to (`Addr`)
    core.<role-specific input>(..., now, *, options)   e.g. connect(), link_up(), an operator request
    core.handle_timer(now)                   called at (or after) next_deadline()
    core.next_deadline() -> float | None     the earliest time handle_timer must run

and collects what the core wants done with one call:

    core.drain_actions() -> list[Action]     frozen dataclasses, in the order they must happen;
                                             the list is emptied (each action is returned once)
    core.status(now) -> snapshot             a frozen dataclass with `as_dict()` (JSON-able), drop
                                             counters by reason included: no side channels

Every method that takes `now` takes it in one place: after its positional inputs, with only
keyword-only options after it (`delete_child(spi_in, now)`, `rekey_child(now, *, spi_in=None)`,
`link_up(now, *, care_of_address=None)`); tests/core_contract.py checks it. `now` is the time base
the runtime gives the core (nodes/runtime/clock.py).

Inputs return None; everything a core decides is an action. Malformed input never raises: it is
dropped and counted by reason in the status. Randomness (nonces, SPIs, identifications) comes
from the `random: RandomSource` the core was built with (os.urandom by default), so a test can
replay an exchange byte for byte with `seeded_random(seed)`.
"""
from __future__ import annotations

import os
import random as _random
from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

RandomSource = Callable[[int], bytes]
"""n -> n random bytes, shaped like os.urandom."""

system_random: RandomSource = os.urandom


def seeded_random(seed: int) -> RandomSource:
    """A deterministic RandomSource for tests and replays (never for keys on a real wire)."""
    rng = _random.Random(seed)
    return lambda n: rng.randbytes(n)


@dataclass(frozen=True)
class Addr:
    """Where a datagram came from and went to, as the socket or the packet told the runtime."""

    src: str
    sport: int
    dst: str
    dport: int
    ttl: int | None = None
    lladdr: str | None = None
    iface: str | None = None


@runtime_checkable
class Core(Protocol):
    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None: ...

    def handle_timer(self, now: float) -> None: ...

    def next_deadline(self) -> float | None: ...

    def drain_actions(self) -> list[Any]: ...

    def status(self, now: float) -> Any: ...


class ActionQueue:
    """The outbox a core appends its actions to; `drain()` hands them over once, in order."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: list[Any] = []

    def add(self, action: Any) -> None:
        self._items.append(action)

    def extend(self, actions) -> None:
        self._items.extend(actions)

    def drain(self) -> list[Any]:
        items, self._items = self._items, []
        return items

    def __len__(self) -> int:
        return len(self._items)
