"""The address pool for remote hosts' internal addresses (draft-gupta Appendix B).

Addresses come from a CIDR range without its network and broadcast addresses (a /31 or /32
uses all) and without configured reserved addresses (G_i, routers, ...). An identity gets the
address it had before if that is still free (stickiness); otherwise the free address released
longest ago (never-used addresses first), so that sticky addresses stay free for their owners as
long as possible. When nothing is free `allocate` raises `PoolExhausted`, which IKE answers with
INTERNAL_ADDRESS_FAILURE. The pool holds no clock; `now` only stamps leases for status.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network


class PoolExhausted(Exception):
    """No address is free (IKE: INTERNAL_ADDRESS_FAILURE)."""


@dataclass
class Lease:
    identity: str
    address: IPv4Address
    since: float

    def as_dict(self) -> dict:
        return {"identity": self.identity, "address": str(self.address), "since": self.since}


class AddressPool:
    def __init__(self, network: IPv4Network | str, reserved: Iterable[IPv4Address | str] = ()):
        self.network = IPv4Network(network)
        self.reserved = {IPv4Address(a) for a in reserved}
        outside = [a for a in self.reserved if a not in self.network]
        if outside:
            raise ValueError(f"reserved address {outside[0]} is not in the pool {self.network}")
        hosts = self.network.hosts() if self.network.prefixlen < 31 else iter(self.network)
        # free addresses, least recently released first (never-used ones in address order)
        self._free: OrderedDict[IPv4Address, None] = OrderedDict.fromkeys(a for a in hosts if a not in self.reserved)
        self.size = len(self._free)
        if not self.size:
            raise ValueError(f"pool {self.network} has no usable address")
        self._leases: dict[str, Lease] = {}
        self._by_address: dict[IPv4Address, Lease] = {}
        self._last: dict[str, IPv4Address] = {}  # identity -> its most recent address

    @property
    def netmask(self) -> IPv4Address:
        """For the INTERNAL_IP4_NETMASK attribute."""
        return self.network.netmask

    def allocate(self, identity: str, now: float, requested: IPv4Address | str | None = None) -> IPv4Address:
        """The address for `identity`: its current lease if it has one (a reconnect), else the
        address it asks for if free, else its previous one if free, else the least recently
        used free one. PoolExhausted when none is free."""
        lease = self._leases.get(identity)
        if lease is not None:
            return lease.address
        for wish in (requested, self._last.get(identity)):
            if wish is not None and IPv4Address(wish) in self._free:
                return self._lease(identity, IPv4Address(wish), now)
        if not self._free:
            raise PoolExhausted(f"all {self.size} addresses of {self.network} are leased")
        return self._lease(identity, next(iter(self._free)), now)

    def _lease(self, identity: str, address: IPv4Address, now: float) -> IPv4Address:
        del self._free[address]
        lease = self._leases[identity] = self._by_address[address] = Lease(identity, address, now)
        self._last[identity] = address
        return lease.address

    def release(self, identity: str) -> IPv4Address | None:
        """End `identity`'s lease; its address stays remembered for stickiness."""
        lease = self._leases.pop(identity, None)
        if lease is None:
            return None
        del self._by_address[lease.address]
        self._free[lease.address] = None  # to the end: reused last
        return lease.address

    def release_address(self, address: IPv4Address | str) -> str | None:
        lease = self._by_address.get(IPv4Address(address))
        if lease is None:
            return None
        self.release(lease.identity)
        return lease.identity

    def owner(self, address: IPv4Address | str) -> str | None:
        lease = self._by_address.get(IPv4Address(address))
        return lease.identity if lease else None

    def address_of(self, identity: str) -> IPv4Address | None:
        lease = self._leases.get(identity)
        return lease.address if lease else None

    @property
    def free(self) -> int:
        return len(self._free)

    def leases(self) -> list[dict]:
        """JSON-able, for status."""
        return [lease.as_dict() for lease in sorted(self._leases.values(), key=lambda l: l.address)]

    def status(self) -> dict:
        return {"network": str(self.network), "size": self.size, "free": self.free, "leases": self.leases()}
