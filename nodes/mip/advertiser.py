"""Agent advertisements on one link (RFC 5944 2.1-2.4), for the mobility agent core that owns an
`Advertiser`: the Foreign Agent on its visitor link, the Home Agent on its home network (H bit).

Periodic advertisements go out every `adv_interval` from `start()`; a solicitation is answered
with an advertisement to the same destination, 224.0.0.1 or 255.255.255.255 (RFC 5944 2.1: the
destination of every Agent Advertisement; RFC 1256 would let a router unicast its answer, 5944
narrows that). As an answer reaches every node on the link, its rate is limited (2.4): a
solicitation that comes within `solicited_min_interval` of the last answer is answered once, at
the end of that interval. The sequence number starts at 0 after every boot and wraps to 256
(2.3.2). The timers live in the owner's `Deadlines` under the keys ("advert",) and ("solicited",).
"""
from __future__ import annotations

from ipaddress import IPv4Address
from typing import Callable

from nodes.mip.actions import SendIcmp
from nodes.mip.common import addr
from nodes.wire.errors import DecodeError
from nodes.wire.mip import ICMP_ROUTER_SOLICITATION, AgentAdvertisement, AgentSolicitation, next_advertisement_sequence

KEYS = (("advert",), ("solicited",))
ALL_SYSTEMS = IPv4Address("224.0.0.1")
BROADCAST = IPv4Address("255.255.255.255")


def advertisement_destination(value) -> IPv4Address:
    """The configured destination of every advertisement, solicited or not: 224.0.0.1 or
    255.255.255.255 (RFC 5944 2.1); anything else is refused with what to choose."""
    value = addr(value)
    if value not in (ALL_SYSTEMS, BROADCAST):
        raise ValueError(f"adv_destination {value}: an agent advertisement goes to 224.0.0.1 "
                         "or 255.255.255.255 (RFC 5944 2.1); choose one of them")
    return value


class Advertiser:
    def __init__(self, config, counters, deadlines, advertisement: Callable[[int], AgentAdvertisement],
                 iface: str | None = None):
        """`config` has address, adv_destination, adv_interval and solicited_min_interval; `iface` is
        the link advertised on; `advertisement(sequence)` is the owner's advertisement with that
        sequence number."""
        self.config, self.counters, self.deadlines = config, counters, deadlines
        self.advertisement, self.iface = advertisement, iface
        self.sequence = 0
        self._last_answer = float("-inf")

    def start(self, now: float) -> list:
        return self._advertise(now, periodic=True)

    def solicited(self, payload: bytes, now: float) -> list:
        """An ICMP message on the link: an agent solicitation is answered, anything else dropped."""
        if not payload or payload[0] != ICMP_ROUTER_SOLICITATION:
            self.counters.drop("icmp-not-solicitation")
            return []
        try:
            AgentSolicitation.decode(payload)
        except DecodeError as e:
            self.counters.drop(f"solicitation:{e.reason}")
            return []
        self.counters["solicitations"] += 1
        if ("solicited",) in self.deadlines:
            self.counters["solicitations-deferred"] += 1
            return []
        due = self._last_answer + self.config.solicited_min_interval
        if now < due:
            self.counters["solicitations-deferred"] += 1
            self.deadlines.set(("solicited",), due)
            return []
        return self._answer(now)

    def due(self, key: tuple, now: float) -> list:
        """The timer `key` (one of KEYS) fell due."""
        return self._advertise(now, periodic=True) if key == ("advert",) else self._answer(now)

    def _answer(self, now: float) -> list:
        self._last_answer = now
        return self._advertise(now, periodic=False)

    def _advertise(self, now: float, periodic: bool) -> list:
        cfg = self.config
        data = self.advertisement(self.sequence).encode()
        self.sequence = next_advertisement_sequence(self.sequence)
        self.counters["advertisements"] += 1
        if periodic:
            self.deadlines.set(("advert",), now + cfg.adv_interval)
        return [SendIcmp(cfg.adv_destination, data, src=cfg.address, ttl=1, iface=self.iface)]
