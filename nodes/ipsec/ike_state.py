"""The IKE core's state: an IKE SA with its explicit state (`SaState`), its child SAs, and the typed
context of each exchange it initiates (one dataclass per kind of request)."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from nodes.ipsec import ike_crypto as kc
from nodes.ipsec.ike_actions import DeleteChildSa, InstallChildSa, notify_name
from nodes.ipsec.ike_config import UserPolicy
from nodes.ipsec.ike_proposals import Suite
from nodes.wire import ikev2 as w


class SaState(Enum):
    """An IKE SA's life. Initiator: NEW -> INIT_SENT -> AUTH_SENT -> ESTABLISHED; responder:
    INIT_DONE -> (EAP -> EAP_DONE ->) ESTABLISHED, or FAILED (kept to answer retransmissions).
    Then REKEYED (a successor took over; the rekey's initiator deletes it) or CLOSED."""
    NEW = "new"
    INIT_SENT = "init_sent"
    INIT_DONE = "init_done"
    AUTH_SENT = "auth_sent"
    EAP = "eap"
    EAP_DONE = "eap_done"
    ESTABLISHED = "established"
    REKEYED = "rekeyed"
    CLOSED = "closed"
    FAILED = "failed"


# --------------------------------------------------------------------------- exchange contexts


@dataclass
class ChildOffer:
    """A child SA we proposed (initiator side), kept until the answer: our SPI, the suites and
    selectors offered, the nonces its keys derive from, and our PFS key exchange if any."""
    spi_in: bytes
    suites: list[Suite]
    ts_i: list[w.TrafficSelector]
    ts_r: list[w.TrafficSelector]
    nonce_i: bytes
    nonce_r: bytes = b""
    group: int = 0
    dh: object = None


@dataclass
class InitRequest:
    """IKE_SA_INIT (its material lives on the IKE SA: it is the SA's first exchange)."""


@dataclass
class AuthRequest:
    """An IKE_AUTH request of the initiator; `stage`: psk, eap_start, eap (an EAP answer) or
    eap_auth (the AUTH after EAP success)."""
    stage: str


@dataclass
class Dpd:
    """An empty INFORMATIONAL (liveness check)."""


@dataclass
class DeleteChild:
    """Delete the child SA with inbound SPI `spi_in`. Once the request is built the child no longer
    belongs to the IKE SA (`child`), but its inbound half keeps taking data until the peer answers
    (make before break: the peer may still send on it until it has processed the Delete)."""
    spi_in: bytes
    child: "ChildSa | None" = None


@dataclass
class InvalidSpiNotice:
    """An INFORMATIONAL with N(INVALID_SPI) naming the SPI of ESP that arrived for no child SA
    (RFC 7296 1.5, 2.21.4)."""
    spi: bytes


@dataclass
class DeleteIke:
    pass


@dataclass
class RekeyChild:
    old: bytes  # spi_in of the child SA to rekey
    offer: ChildOffer | None = None
    # RFC 7296 4: after NO_ADDITIONAL_SAS the old child SA is deleted and a new one created in its
    # place: a CREATE_CHILD_SA without REKEY_SA for these traffic selectors (local, remote)
    replacing: tuple[list, list] | None = None
    # a rekey collision (RFC 7296 2.8.1): the peer rekeyed the same child SA while this request was
    # in flight; the child SA its exchange made here (our SPI) and that exchange's Ni and Nr
    collision: tuple[bytes, bytes, bytes] | None = None


@dataclass
class RekeyIke:
    group: int = 0  # 0: the current IKE SA's group
    tried: list[int] = field(default_factory=list)
    spi: bytes = b""
    nonce_i: bytes = b""
    dh: object = None
    suites: list[Suite] = field(default_factory=list)


Request = InitRequest | AuthRequest | Dpd | DeleteChild | DeleteIke | RekeyChild | RekeyIke


@dataclass
class Outstanding:
    """The one request in flight (window size 1) and its retransmission state."""
    request: Request
    message_id: int
    data: bytes
    tries: int = 0
    next_at: float = 0.0


@dataclass
class EapChallenge:
    identifier: int
    challenge: bytes


# --------------------------------------------------------------------------- SAs


@dataclass
class ChildSa:
    spi_in: bytes
    spi_out: bytes
    suite: Suite
    encr_in: bytes
    integ_in: bytes
    encr_out: bytes
    integ_out: bytes
    ts_local: list[w.TrafficSelector]
    ts_remote: list[w.TrafficSelector]
    created: float
    rekey_at: float | None = None


class IkeSa:
    def __init__(self, original_initiator: bool, spi_i: bytes, spi_r: bytes, local: tuple[str, int],
                 peer: tuple[str, int], now: float):
        self.original_initiator = original_initiator
        self.spi_i, self.spi_r = spi_i, spi_r
        self.local_addr, self.local_port = local
        self.peer_addr, self.peer_port = peer
        self.encap = False
        self.state = SaState.NEW
        self.suite: Suite | None = None
        self.keys: kc.IkeKeys | None = None
        self.cipher_in: w.SkCipher | None = None
        self.cipher_out: w.SkCipher | None = None
        self.nonce_i = self.nonce_r = b""
        self.init_request = self.init_response = b""
        self.dh_group = 0
        self.dh_private = None
        self.dh_public = b""
        self.dh_public_group = 0  # the group dh_private/dh_public belong to
        self.tried_groups: set[int] = set()
        self.cookie: bytes | None = None
        self.my_id: w.Identification | None = None
        self.peer_id_payload: w.Identification | None = None
        self.peer_id: str | None = None
        self.user: UserPolicy | None = None
        self.virtual_ip: str | None = None
        self.netmask: str | None = None
        self.dns: list[str] = []
        self.subnets: list[str] = []
        self.next_mid = 0
        self.expected_mid = 0
        self.outstanding: Outstanding | None = None
        self.queue: deque[Request] = deque()
        self.last_response: tuple[int, bytes] | None = None
        self.request_from: tuple[str, int, int] | None = None  # the peer's last request: address, port, our port
        self.children: dict[bytes, ChildSa] = {}
        self.created = self.last_heard = now
        self.expire_at: float | None = None
        self.rekey_at: float | None = None
        self.rekeyed = False
        self.auth_request: w.Message | None = None  # responder: first IKE_AUTH request, kept during EAP
        self.eap: EapChallenge | None = None
        self.pending_child: ChildOffer | None = None
        self.last_error: str | None = None
        # RFC 7296 2.23, from IKE_SA_INIT's NAT_DETECTION notifies: a NAT in front of us (then we do
        # not follow the peer's address and port), a NAT in front of the peer
        self.nat_local = self.nat_remote = False
        self.invalid_spi_noticed: float | None = None  # when we last sent N(INVALID_SPI) on it (rate limit)
        self.scheduled: float | None = None  # the deadline the SA table's heap holds for it

    @property
    def local_spi(self) -> bytes:
        return self.spi_i if self.original_initiator else self.spi_r

    @property
    def name(self) -> str:
        return self.local_spi.hex()

    @property
    def role(self) -> str:
        return "initiator" if self.original_initiator else "responder"

    @property
    def established(self) -> bool:
        return self.state is SaState.ESTABLISHED

    def install_keys(self, suite: Suite, random, keys: kc.IkeKeys) -> None:
        self.suite, self.keys = suite, keys
        ci = w.SkCipher(suite.encr, keys.sk_ei, suite.integ, keys.sk_ai, random)
        cr = w.SkCipher(suite.encr, keys.sk_er, suite.integ, keys.sk_ar, random)
        self.cipher_out, self.cipher_in = (ci, cr) if self.original_initiator else (cr, ci)

    def sk_p(self, own: bool) -> bytes:
        return self.keys.sk_pi if own == self.original_initiator else self.keys.sk_pr

    def deadline(self, dpd_interval: float | None) -> float | None:
        """When this SA's timers next need the core: retransmission, expiry, DPD, rekeys."""
        times = []
        if self.outstanding is not None:
            times.append(self.outstanding.next_at)
        if self.expire_at is not None:
            times.append(self.expire_at)
        if self.established:
            if dpd_interval and self.outstanding is None:
                times.append(self.last_heard + dpd_interval)
            if self.rekey_at is not None:
                times.append(self.rekey_at)
            times += [c.rekey_at for c in self.children.values() if c.rekey_at is not None]
        return min(times) if times else None


def child_action(sa: IkeSa, child: ChildSa, replaces: bytes | None = None) -> InstallChildSa:
    return InstallChildSa(
        sa.name, int.from_bytes(child.spi_in, "big"), int.from_bytes(child.spi_out, "big"), child.suite.name(),
        child.suite.encr, child.suite.key_bits, child.suite.integ, child.encr_in, child.integ_in, child.encr_out,
        child.integ_out, child.ts_local, child.ts_remote, sa.local_addr, sa.local_port, sa.peer_addr,
        sa.peer_port, sa.encap, int.from_bytes(replaces, "big") if replaces else None,
        nat_local=sa.nat_local, nat_remote=sa.nat_remote)


def delete_action(child: ChildSa, reason: str) -> DeleteChildSa:
    return DeleteChildSa(int.from_bytes(child.spi_in, "big"), int.from_bytes(child.spi_out, "big"), reason)


class ChildError(Exception):
    """Child SA negotiation failed: `notify` goes to the peer (responder) or is the reason (initiator)."""

    def __init__(self, notify: int, data: bytes = b"", detail: str = ""):
        super().__init__(detail or notify_name(notify))
        self.notify, self.data = notify, data
