"""What to do when a child SA's ESP lifetime runs out (nodes/ipsec/esp_sa.py's SAEvents), sans-I/O:
the decisions of the IPsec daemons, separate from their I/O.

Soft expiry (time, bytes or sequence numbers): rekey the child (CREATE_CHILD_SA) once, after a delay
drawn from `soft_rekey_delay` = (lo, hi) seconds ((0, 0): at once, the client's default; the gateway
waits a few seconds so that the client, which usually crosses the same limit at the same moment,
rekeys first and the two never collide; None: never). Hard expiry (the SA has left the data plane):
a side that rekeys at once asks for a replacement if none was asked for yet; the other deletes the
child toward the peer (INFORMATIONAL Delete).

    policy.soft_expired(spi_in, now) / policy.hard_expired(spi_in, now) / policy.child_gone(spi_in)
    policy.handle_timer(now) at next_deadline()       delayed rekeys
    policy.drain_actions() -> [RekeyChild(spi_in), DeleteChild(spi_in)]

A delayed rekey is not asked for when the child is gone by then (the peer rekeyed or deleted it:
`child_gone`). The delay's randomness comes from the injected `random`.
"""
from __future__ import annotations

from dataclasses import dataclass

from nodes.core import Addr, RandomSource, system_random


@dataclass(frozen=True)
class RekeyChild:
    spi_in: int


@dataclass(frozen=True)
class DeleteChild:
    spi_in: int


@dataclass(frozen=True)
class LifetimePolicyStatus:
    asked: int  # children whose rekey was asked for (until they go)
    pending: tuple[tuple[int, float], ...]  # (spi_in, when) of delayed rekeys
    drops: tuple[tuple[str, int], ...]

    def as_dict(self) -> dict:
        return {"asked": self.asked, "pending": [{"spi_in": f"{spi:08x}", "at": at} for spi, at in self.pending],
                "drops": dict(self.drops)}


class LifetimePolicy:
    def __init__(self, soft_rekey_delay: tuple[float, float] | None, random: RandomSource = system_random):
        self.soft_rekey_delay = soft_rekey_delay
        self.random = random
        self.asked: set[int] = set()  # children (inbound SPI) whose lifetime rekey was asked for
        self.pending: dict[int, float] = {}  # delayed rekeys: spi_in -> when
        self.datagrams = 0
        self._actions: list[RekeyChild | DeleteChild] = []

    @property
    def immediate(self) -> bool:
        return self.soft_rekey_delay is not None and self.soft_rekey_delay[1] <= 0

    # -- the contract ---------------------------------------------------------------------------
    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        self.datagrams += 1  # a policy receives no datagrams: counted as drops

    def handle_timer(self, now: float) -> None:
        for spi, at in sorted(self.pending.items(), key=lambda kv: kv[1]):
            if at <= now:
                del self.pending[spi]
                self._rekey(spi)

    def next_deadline(self) -> float | None:
        return min(self.pending.values(), default=None)

    def drain_actions(self) -> list[RekeyChild | DeleteChild]:
        actions, self._actions = self._actions, []
        return actions

    def status(self, now: float) -> LifetimePolicyStatus:
        drops = (("not-a-datagram-core", self.datagrams),) if self.datagrams else ()
        return LifetimePolicyStatus(len(self.asked), tuple(sorted(self.pending.items())), drops)

    # -- inputs ---------------------------------------------------------------------------------
    def soft_expired(self, spi_in: int, now: float) -> None:
        if self.soft_rekey_delay is None or spi_in in self.asked or spi_in in self.pending:
            return
        lo, hi = self.soft_rekey_delay
        delay = lo + (hi - lo) * int.from_bytes(self.random(4), "big") / 2 ** 32 if hi > 0 else 0.0
        if delay <= 0:
            self._rekey(spi_in)
        else:
            self.pending[spi_in] = now + delay

    def hard_expired(self, spi_in: int, now: float) -> None:
        """The child's SA left the data plane."""
        if self.immediate:
            if spi_in not in self.asked:
                self.child_gone(spi_in)
                self._rekey(spi_in)  # a replacement; the old one goes with it
        else:
            self.child_gone(spi_in)
            self._actions.append(DeleteChild(spi_in))

    def child_gone(self, spi_in: int) -> None:
        self.asked.discard(spi_in)
        self.pending.pop(spi_in, None)

    def _rekey(self, spi_in: int) -> None:
        if spi_in in self.asked:
            return
        self.asked.add(spi_in)
        self._actions.append(RekeyChild(spi_in))
