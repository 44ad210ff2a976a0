"""The security association database (inbound SAs by SPI) and a simple security policy database.

`SPD` holds ordered policies: local and remote IPv4 subnets and an action (protect with an
outbound SA, bypass, discard); the first policy whose selectors match wins (RFC 4301 4.4.1: the SPD
is ordered). `SAD` holds the inbound SAs by SPI, each optionally bound to the policy it was
negotiated for, so that a decrypted packet outside the SA's traffic selectors is dropped.

Both directions count every drop by reason in one `collections.Counter` (`SAD.drops`,
`SAD.drop_counters()` for status): the ESPDrop and DecodeError reasons, plus unknown-spi,
outside-selectors, bad-inner-packet, no-policy, policy-discard and no-sa.

Only the unit tests use it (tests/test_esp_sa.py): the daemons' ESP data path keeps its own SA
tables (nodes/runtime/ipsec_dataplane.py: inbound by SPI, outbound by tunnel, selectors checked
both ways), where with NAPT (several remote hosts may share one inner address) the outbound SA is
found by the peer that NAPT returns rather than through an SPD.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field
from enum import Enum
from ipaddress import IPv4Address, IPv4Network

from nodes.ipsec.esp_sa import Buffer, ESPDrop, InboundSA, OutboundSA
from nodes.wire.errors import DecodeError
from nodes.wire.esp import peek_spi


class Action(Enum):
    PROTECT = "protect"
    BYPASS = "bypass"
    DISCARD = "discard"


def _addr_int(packet: Buffer, offset: int) -> int:
    return int.from_bytes(packet[offset : offset + 4], "big")


def _inner_addresses(packet: Buffer) -> tuple[int, int]:
    """(source, destination) of an IPv4 packet as ints; DecodeError if it is not one."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        raise DecodeError("bad-inner-packet", "not an IPv4 packet")
    return _addr_int(packet, 12), _addr_int(packet, 16)


@dataclass
class Policy:
    """Traffic from `local` to `remote` (and back). A PROTECT policy carries its current outbound
    SA (replaced on rekey) and the peer it leads to."""

    name: str
    local: IPv4Network
    remote: IPv4Network
    action: Action = Action.PROTECT
    outbound: OutboundSA | None = None
    peer: Hashable | None = None
    _local: tuple[int, int] = field(init=False, repr=False)
    _remote: tuple[int, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.local, self.remote = IPv4Network(self.local), IPv4Network(self.remote)
        self._local = (int(self.local.network_address), int(self.local.netmask))
        self._remote = (int(self.remote.network_address), int(self.remote.netmask))

    def matches_outbound(self, src: int, dst: int) -> bool:
        return src & self._local[1] == self._local[0] and dst & self._remote[1] == self._remote[0]

    def matches_inbound(self, src: int, dst: int) -> bool:
        return src & self._remote[1] == self._remote[0] and dst & self._local[1] == self._local[0]

    def status(self) -> dict:
        return {"name": self.name, "local": str(self.local), "remote": str(self.remote),
                "action": self.action.value, "peer": None if self.peer is None else str(self.peer),
                "outbound_spi": None if self.outbound is None else f"0x{self.outbound.spi:08x}"}


class SPD:
    def __init__(self) -> None:
        self.policies: list[Policy] = []

    def add(self, policy: Policy, first: bool = False) -> Policy:
        if any(p.name == policy.name for p in self.policies):
            raise ValueError(f"policy {policy.name!r} exists already")
        self.policies.insert(0, policy) if first else self.policies.append(policy)
        return policy

    def remove(self, name: str) -> Policy | None:
        for i, p in enumerate(self.policies):
            if p.name == name:
                return self.policies.pop(i)
        return None

    def get(self, name: str) -> Policy | None:
        return next((p for p in self.policies if p.name == name), None)

    def lookup(self, src: IPv4Address | str | int, dst: IPv4Address | str | int) -> Policy | None:
        """The first policy for a packet from `src` to `dst` leaving through the tunnel."""
        return self._lookup(int(IPv4Address(src)), int(IPv4Address(dst)))

    def lookup_packet(self, packet: Buffer) -> Policy | None:
        src, dst = _inner_addresses(packet)
        return self._lookup(src, dst)

    def _lookup(self, src: int, dst: int) -> Policy | None:
        for p in self.policies:
            if p.matches_outbound(src, dst):
                return p
        return None


@dataclass
class Opened:
    """A packet that an inbound SA accepted."""

    sa: InboundSA
    policy: Policy | None
    inner: bytes


class SAD:
    def __init__(self, spd: SPD | None = None):
        self.spd = spd if spd is not None else SPD()
        self.drops: Counter[str] = Counter()
        self._inbound: dict[int, tuple[InboundSA, Policy | None]] = {}

    # -- the database ------------------------------------------------------------------------
    def add_inbound(self, sa: InboundSA, policy: Policy | None = None) -> None:
        """Install `sa`; with a policy, decrypted packets must match its selectors (reversed)."""
        if sa.spi in self._inbound:
            raise ValueError(f"inbound SPI 0x{sa.spi:08x} is in use")
        self._inbound[sa.spi] = (sa, policy)

    def remove_inbound(self, spi: int) -> InboundSA | None:
        entry = self._inbound.pop(spi, None)
        return entry[0] if entry else None

    def lookup_inbound(self, spi: int) -> InboundSA | None:
        entry = self._inbound.get(spi)
        return entry[0] if entry else None

    def lookup_outbound(self, src, dst) -> OutboundSA | None:
        """The outbound SA for a packet from `src` to `dst`, through the SPD."""
        policy = self.spd.lookup(src, dst)
        return policy.outbound if policy is not None and policy.action is Action.PROTECT else None

    def inbound_sas(self) -> list[InboundSA]:
        return [sa for sa, _ in self._inbound.values()]

    def is_free(self, spi: int) -> bool:
        """Whether `spi` may be handed out as a new inbound SPI."""
        return spi > 255 and spi not in self._inbound

    # -- the data path -----------------------------------------------------------------------
    def open(self, esp: Buffer, now: float) -> Opened | None:
        """Decrypt an ESP packet (header to ICV) received from the network, or count why not."""
        try:
            entry = self._inbound.get(peek_spi(esp))
            if entry is None:
                self.drops["unknown-spi"] += 1
                return None
            sa, policy = entry
            inner = sa.decrypt(esp, now)
            if policy is not None:
                src, dst = _inner_addresses(inner)
                if not policy.matches_inbound(src, dst):
                    self.drops["outside-selectors"] += 1
                    return None
        except DecodeError as err:  # ESPDrop included
            self.drops[err.reason] += 1
            return None
        return Opened(sa, policy, inner)

    def seal(self, packet: Buffer, now: float) -> tuple[Policy, bytes] | None:
        """Apply the SPD to a packet bound for the tunnel side: (policy, ESP bytes) when protected,
        (policy, packet) when bypassed, None (counted) when discarded or without policy/SA."""
        try:
            policy = self.spd.lookup_packet(packet)
        except DecodeError as err:
            self.drops[err.reason] += 1
            return None
        if policy is None:
            self.drops["no-policy"] += 1
            return None
        if policy.action is Action.BYPASS:
            return policy, bytes(packet)
        if policy.action is Action.DISCARD:
            self.drops["policy-discard"] += 1
            return None
        if policy.outbound is None:
            self.drops["no-sa"] += 1
            return None
        try:
            return policy, policy.outbound.encrypt(packet, now)
        except ESPDrop as err:
            self.drops[err.reason] += 1
            return None

    def count_drop(self, reason: str) -> None:
        """For drops the runtime decides (e.g. a malformed UDP/4500 payload)."""
        self.drops[reason] += 1

    # -- status --------------------------------------------------------------------------------
    def drop_counters(self) -> dict[str, int]:
        return dict(sorted(self.drops.items()))

    def status(self, now: float, include_keys: bool = False) -> dict:
        return {
            "inbound": [sa.status(now, include_keys=include_keys).as_dict() for sa in self.inbound_sas()],
            "policies": [p.status() for p in self.spd.policies],
            "drops": self.drop_counters(),
        }
