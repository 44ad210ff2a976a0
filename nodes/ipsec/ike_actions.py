"""The actions of the IKE core (nodes/ipsec/ike.py): frozen dataclasses a runtime carries out, in order."""
from __future__ import annotations

from dataclasses import dataclass, field

from nodes.wire import ikev2 as w

NOTIFY_NAMES = {v: k[2:] for k, v in vars(w).items() if k.startswith("N_") and isinstance(v, int)}
EXCHANGE_NAMES = {w.IKE_SA_INIT: "IKE_SA_INIT", w.IKE_AUTH: "IKE_AUTH", w.CREATE_CHILD_SA: "CREATE_CHILD_SA",
                  w.INFORMATIONAL: "INFORMATIONAL"}


def notify_name(ntype: int) -> str:
    return NOTIFY_NAMES.get(ntype, f"NOTIFY_{ntype}")


def exchange_name(exchange: int) -> str:
    return EXCHANGE_NAMES.get(exchange, f"EXCHANGE_{exchange}")


@dataclass(frozen=True)
class SendIke:
    """Send `data` (the exact UDP payload, non-ESP marker included on 4500) from `sport` to dst:dport."""
    dst: str
    dport: int
    sport: int
    data: bytes


@dataclass(frozen=True)
class InstallChildSa:
    ike_sa: str
    spi_in: int
    spi_out: int
    alg: str  # e.g. "aes-gcm-16-128" or "aes-cbc-256+hmac-sha256-128"
    encr_id: int
    key_bits: int
    integ_id: int
    encr_key_in: bytes  # AES-GCM: key + 4-byte salt
    integ_key_in: bytes
    encr_key_out: bytes
    integ_key_out: bytes
    ts_local: list[w.TrafficSelector]
    ts_remote: list[w.TrafficSelector]
    local_addr: str
    local_port: int
    peer_addr: str
    peer_port: int
    encap: bool  # UDP encapsulation on 4500 (RFC 3948)
    replaces: int | None = None  # spi_in of the child SA this one rekeys
    mode: str = "tunnel"
    # the IKE SA's NAT detection (RFC 7296 2.23): this end behind a NAT (it keeps its peer's address
    # and port: 2.23's SHOULD NOT follow), the peer behind one
    nat_local: bool = False
    nat_remote: bool = False


@dataclass(frozen=True)
class DeleteChildSa:
    spi_in: int
    spi_out: int
    reason: str


@dataclass(frozen=True)
class Established:
    ike_sa: str
    role: str  # "initiator" or "responder"
    peer_id: str
    peer_addr: str
    peer_port: int
    encap: bool
    virtual_ip: str | None = None
    netmask: str | None = None
    dns: list[str] = field(default_factory=list)
    subnets: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Failed:
    reason: str
    notify: int | None = None
    peer_id: str | None = None
    peer_addr: str | None = None


@dataclass(frozen=True)
class IkeSaClosed:
    ike_sa: str
    reason: str
    peer_id: str | None = None
    virtual_ip: str | None = None


@dataclass(frozen=True)
class IkeSaRekeyed:
    old: str
    new: str


Action = SendIke | InstallChildSa | DeleteChildSa | Established | Failed | IkeSaClosed | IkeSaRekeyed
