"""IKEv2 (RFC 7296) initiator and responder, sans-I/O.

`IkeCore(config, random)` runs any number of IKE SAs and follows nodes/core.py's contract. The
runtime feeds it

    receive_datagram(data, addr, now)        a UDP payload from port 500 or 4500, exactly as received
    connect(peer_addr, local_addr, now)      start an IKE SA as initiator (the client)
    handle_timer(now)                        at next_deadline(): retransmission, DPD, rekeying, expiry
    rekey_child / rekey_ike / delete_child / close / close_ike_sa / check_liveness   operator requests

and collects the actions with drain_actions(): SendIke, InstallChildSa, DeleteChildSa,
Established, Failed, IkeSaClosed, IkeSaRekeyed (frozen dataclasses). `status(now)` is an
`IkeStatus` snapshot: the IKE and child SAs with their SPIs and keys (so captures can be
decrypted), drop counters, IKE messages sent and received by exchange type, and the last lines of
the core's log. A responder accepts the identities in `config.users`; the same core is initiator
and responder (both rekey, delete and check liveness). Nonces, SPIs, DH private values, EAP
challenges and the SK payloads' IVs come from `random` (os.urandom by default).

Authentication: PSK (AUTH method 2) both ways, or the initiator by EAP-MD5 with the responder by
PSK (the user's `UserPolicy.gateway_psk`, else `config.gateway_psk`); after EAP-MD5, which derives no
MSK, both AUTH payloads use SK_p as the key, exactly as strongSwan's eap_authenticator/keymat_v2 do.

Uniqueness: with `config.unique = "replace"` (strongSwan's unique=replace) a responder that
establishes a new IKE SA for a peer identity closes that identity's older IKE SAs (a Delete toward
the old peer, then IkeSaClosed at once): a remote user who restarts or moves keeps one tunnel.

Not done: IKE fragmentation, cookies sent by a responder, simultaneous-rekey collision handling,
MOBIKE, transport mode, IPv6.
"""
from __future__ import annotations

import hmac
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

from nodes.core import ActionQueue, Addr, RandomSource, system_random
from nodes.ipsec import eap_md5
from nodes.ipsec import ike_crypto as kc
from nodes.ipsec import ike_proposals as props
from nodes.ipsec import traffic_selectors as tsel
from nodes.ipsec.ike_proposals import Suite
from nodes.wire import ikev2 as w
from nodes.wire.errors import DecodeError

NOTIFY_NAMES = {v: k[2:] for k, v in vars(w).items() if k.startswith("N_") and isinstance(v, int)}


def notify_name(ntype: int) -> str:
    return NOTIFY_NAMES.get(ntype, f"NOTIFY_{ntype}")


# --------------------------------------------------------------------------- actions


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


# --------------------------------------------------------------------------- configuration


class AddressAllocator(Protocol):
    def allocate(self, peer_id: str) -> IPv4Address | str | None: ...

    def release(self, peer_id: str, address: str) -> None: ...


@dataclass
class UserPolicy:
    """A remote user the responder admits: a PSK, or an EAP-MD5 password, and the subnets it may reach."""
    psk: bytes | None = None
    password: bytes | None = None
    subnets: list[str] = field(default_factory=lambda: ["0.0.0.0/0"])
    remote_ts: list[str] | None = None  # allowed TSi without a virtual IP; None: config.remote_ts
    gateway_psk: bytes | None = None  # responder's AUTH toward this user when it uses EAP; None: config's


@dataclass
class IkeConfig:
    local_id: str
    ike_proposals: list[str] = field(default_factory=lambda: ["aes128gcm16-prfsha256-ecp256-modp2048-curve25519"])
    esp_proposals: list[str] = field(default_factory=lambda: ["aes128gcm16", "aes128-sha256"])
    # initiator
    remote_id: str | None = None  # expected responder identity (also sent as IDr)
    psk: bytes | None = None  # own AUTH (without EAP) and check of the responder's AUTH
    eap_password: bytes | None = None  # authenticate by EAP-MD5 instead of PSK
    eap_identity: str | None = None
    request_address: bool = True  # CP CFG_REQUEST for INTERNAL_IP4_ADDRESS and DNS
    local_ts: list[str] = field(default_factory=lambda: ["0.0.0.0/0"])
    remote_ts: list[str] = field(default_factory=lambda: ["0.0.0.0/0"])
    # responder
    users: dict[str, UserPolicy] = field(default_factory=dict)
    gateway_psk: bytes | None = None  # responder's AUTH toward EAP users without their own gateway_psk
    unique: str = "no"  # "replace": a new IKE SA of a peer identity closes the older ones (responder)
    allocator: AddressAllocator | None = None
    dns: list[str] = field(default_factory=list)
    netmask: str | None = None
    # both
    force_encap: bool = False  # fake a NAT (as strongSwan's encap=yes / kernel-libipsec)
    retransmit_timeout: float = 2.0
    retransmit_backoff: float = 2.0
    retransmit_tries: int = 5  # retransmissions before giving up
    dpd_interval: float | None = None
    child_rekey_after: float | None = None
    ike_rekey_after: float | None = None
    half_open_timeout: float = 30.0


def make_id(text: str, payload_cls: type) -> w.Identification:
    """strongSwan's identity syntax: an IPv4 address, 'user@realm' (RFC822), '@fqdn' or 'fqdn'."""
    try:
        return payload_cls(w.ID_IPV4_ADDR, IPv4Address(text).packed)
    except ValueError:
        pass
    if text.startswith("@"):
        return payload_cls(w.ID_FQDN, text[1:].encode())
    if "@" in text:
        return payload_cls(w.ID_RFC822_ADDR, text.encode())
    return payload_cls(w.ID_FQDN, text.encode())


def id_text(text: str) -> str:
    return text[1:] if text.startswith("@") else text


# --------------------------------------------------------------------------- state


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


@dataclass
class Outstanding:
    kind: str
    message_id: int
    data: bytes
    ctx: dict
    tries: int = 0
    next_at: float = 0.0


class IkeSa:
    def __init__(self, original_initiator: bool, spi_i: bytes, spi_r: bytes, local: tuple[str, int],
                 peer: tuple[str, int], now: float):
        self.original_initiator = original_initiator
        self.spi_i, self.spi_r = spi_i, spi_r
        self.local_addr, self.local_port = local
        self.peer_addr, self.peer_port = peer
        self.encap = False
        self.state = "new"
        self.suite: Suite | None = None
        self.keys: kc.IkeKeys | None = None
        self.cipher_in: w.SkCipher | None = None
        self.cipher_out: w.SkCipher | None = None
        self.nonce_i = self.nonce_r = b""
        self.init_request = self.init_response = b""
        self.dh_group = 0
        self.dh_private = None
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
        self.queue: list[tuple[str, dict]] = []
        self.last_response: tuple[int, bytes] | None = None
        self.children: dict[bytes, ChildSa] = {}
        self.created = self.last_heard = now
        self.expire_at: float | None = None
        self.rekey_at: float | None = None
        self.rekeyed = False
        self.auth_request: w.Message | None = None  # responder: first IKE_AUTH request, kept during EAP
        self.eap: dict = {}
        self.pending_child: dict = {}
        self.last_error: str | None = None

    @property
    def local_spi(self) -> bytes:
        return self.spi_i if self.original_initiator else self.spi_r

    @property
    def name(self) -> str:
        return self.local_spi.hex()

    @property
    def role(self) -> str:
        return "initiator" if self.original_initiator else "responder"

    def install_keys(self, suite: Suite, random: RandomSource, keys: kc.IkeKeys) -> None:
        self.suite, self.keys = suite, keys
        ci = w.SkCipher(suite.encr, keys.sk_ei, suite.integ, keys.sk_ai, random)
        cr = w.SkCipher(suite.encr, keys.sk_er, suite.integ, keys.sk_ar, random)
        self.cipher_out, self.cipher_in = (ci, cr) if self.original_initiator else (cr, ci)

    def sk_p(self, own: bool) -> bytes:
        return self.keys.sk_pi if own == self.original_initiator else self.keys.sk_pr


def _child_action(sa: IkeSa, child: ChildSa, replaces: bytes | None = None) -> InstallChildSa:
    return InstallChildSa(
        sa.name, int.from_bytes(child.spi_in, "big"), int.from_bytes(child.spi_out, "big"), child.suite.name(),
        child.suite.encr, child.suite.key_bits, child.suite.integ, child.encr_in, child.integ_in, child.encr_out,
        child.integ_out, child.ts_local, child.ts_remote, sa.local_addr, sa.local_port, sa.peer_addr,
        sa.peer_port, sa.encap, int.from_bytes(replaces, "big") if replaces else None)


def _delete_action(child: ChildSa, reason: str) -> DeleteChildSa:
    return DeleteChildSa(int.from_bytes(child.spi_in, "big"), int.from_bytes(child.spi_out, "big"), reason)


class ChildError(Exception):
    """Child SA negotiation failed: `notify` goes to the peer (responder) or is the reason (initiator)."""

    def __init__(self, notify: int, data: bytes = b"", detail: str = ""):
        super().__init__(detail or notify_name(notify))
        self.notify, self.data = notify, data


# --------------------------------------------------------------------------- the core


EXCHANGE_NAMES = {w.IKE_SA_INIT: "IKE_SA_INIT", w.IKE_AUTH: "IKE_AUTH", w.CREATE_CHILD_SA: "CREATE_CHILD_SA",
                  w.INFORMATIONAL: "INFORMATIONAL"}
LOG_LINES = 50  # the last lines of the core's log kept for the status


def exchange_name(exchange: int) -> str:
    return EXCHANGE_NAMES.get(exchange, f"EXCHANGE_{exchange}")


@dataclass(frozen=True)
class IkeStatus:
    """The core's snapshot: `ike_sas` as JSON-able dicts (see _sa_status), drops by reason, IKE
    messages sent and received (retransmissions included) by exchange type, the last log lines."""
    ike_sas: tuple[dict, ...]
    drops: tuple[tuple[str, int], ...]
    messages_sent: tuple[tuple[str, int], ...]
    messages_received: tuple[tuple[str, int], ...]
    events: tuple[str, ...]

    def as_dict(self) -> dict:
        sent, received = dict(self.messages_sent), dict(self.messages_received)
        return {"ike_sas": list(self.ike_sas), "drops": dict(self.drops),
                "messages": {"sent": {"total": sum(sent.values()), **sent},
                             "received": {"total": sum(received.values()), **received}},
                "events": list(self.events)}


class IkeCore:
    def __init__(self, config: IkeConfig, random: RandomSource = system_random):
        self.config = config
        self.random = random
        self.ike_suites = props.parse_suites(config.ike_proposals, w.PROTO_IKE)
        self.esp_suites = props.parse_suites(config.esp_proposals, w.PROTO_ESP)
        self.esp_suites_auth = list(dict.fromkeys(replace(s, dh=0) for s in self.esp_suites))
        self.sas: dict[bytes, IkeSa] = {}  # by our SPI
        self.half_open: dict[tuple[bytes, str, int], IkeSa] = {}  # responder: (SPIi, peer, port)
        self.drops: Counter[str] = Counter()
        self.messages_sent: Counter[str] = Counter()
        self.messages_received: Counter[str] = Counter()
        self.events: deque[str] = deque(maxlen=LOG_LINES)
        self._actions = ActionQueue()

    # ----------------------------------------------------------------- inputs

    def connect(self, peer_addr: str, local_addr: str, now: float, peer_port: int = w.IKE_PORT,
                local_port: int = w.IKE_PORT) -> None:
        sa = IkeSa(True, props.new_spi(8, self.random), bytes(8), (local_addr, local_port),
                   (peer_addr, peer_port), now)
        sa.dh_group = self.ike_suites[0].dh
        sa.nonce_i = self.random(32)
        self.sas[sa.spi_i] = sa
        self._actions.extend(self._send_init(sa, now))

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        self._actions.extend(self._receive(data, addr, now))

    def _receive(self, data: bytes, addr: Addr, now: float) -> list[Action]:
        src, sport, dst, dport = addr.src, addr.sport, addr.dst, addr.dport
        try:
            if dport == w.NAT_T_PORT:
                kind, data = w.classify_udp4500(data)
                if kind != w.KIND_IKE:
                    return self._drop("not_ike")
            hdr = w.decode_header(data)
        except DecodeError as exc:
            return self._drop(exc.reason)
        self.messages_received[exchange_name(hdr.exchange)] += 1
        if hdr.exchange == w.IKE_SA_INIT and not hdr.is_response:
            return self._on_init_request(now, data, hdr, src, sport, dst, dport)
        our_spi = hdr.spi_r if hdr.from_initiator else hdr.spi_i
        sa = self.sas.get(our_spi)
        if sa is None or sa.original_initiator == hdr.from_initiator:
            return self._drop("unknown_spi")
        return self._on_message(sa, now, data, hdr, src, sport, dport)

    def handle_timer(self, now: float) -> None:
        actions: list[Action] = []
        for sa in list(self.sas.values()):
            out = sa.outstanding
            if out is not None and now >= out.next_at:
                actions += self._retransmit(sa, now, out)
                if sa.local_spi not in self.sas:
                    continue
            if sa.expire_at is not None and now >= sa.expire_at:
                self._forget(sa)
                continue
            if sa.state != "established":
                continue
            if (self.config.dpd_interval and out is None and not sa.queue
                    and now >= sa.last_heard + self.config.dpd_interval):
                actions += self._request(sa, now, "dpd", {})
            if sa.rekey_at is not None and now >= sa.rekey_at:
                sa.rekey_at = None
                actions += self._request(sa, now, "rekey_ike", {})
            for child in list(sa.children.values()):
                if child.rekey_at is not None and now >= child.rekey_at:
                    child.rekey_at = None
                    actions += self._request(sa, now, "rekey_child", {"spi_in": child.spi_in})
        self._actions.extend(actions)

    def rekey_child(self, now: float, spi_in: int | None = None) -> None:
        """Rekey the child SA with inbound SPI `spi_in` (every child SA when None)."""
        for sa in self._established():
            for child in list(sa.children.values()):
                if spi_in is None or int.from_bytes(child.spi_in, "big") == spi_in:
                    self._actions.extend(self._request(sa, now, "rekey_child", {"spi_in": child.spi_in}))

    def rekey_ike(self, now: float) -> None:
        for sa in self._established():
            self._actions.extend(self._request(sa, now, "rekey_ike", {}))

    def delete_child(self, spi_in: int, now: float) -> None:
        for sa in self._established():
            for child in list(sa.children.values()):
                if int.from_bytes(child.spi_in, "big") == spi_in:
                    self._actions.extend(self._request(sa, now, "delete_child", {"spi_in": child.spi_in}))

    def close(self, now: float) -> None:
        """Delete every established IKE SA (INFORMATIONAL Delete), and forget the others."""
        for sa in list(self.sas.values()):
            if sa.state == "established":
                self._actions.extend(self._request(sa, now, "delete_ike", {}))
            else:
                self._forget(sa)

    def close_ike_sa(self, name: str, now: float, reason: str = "closed", notify_peer: bool = True) -> None:
        """Close one IKE SA (by its name, our SPI in hex) at once: a Delete toward the peer when it is
        established and nothing else is in flight (no retransmission: the SA is gone right away),
        then DeleteChildSa for its children and IkeSaClosed. Unknown names give no actions."""
        self._actions.extend(self._close_ike_sa(name, reason, notify_peer))

    def _close_ike_sa(self, name: str, reason: str, notify_peer: bool) -> list[Action]:
        sa = next((s for s in self.sas.values() if s.name == name), None)
        if sa is None:
            return []
        actions: list[Action] = []
        if notify_peer and sa.state == "established" and sa.outstanding is None:
            msg = self._message(sa, w.INFORMATIONAL, sa.next_mid, [w.Delete(w.PROTO_IKE)], response=False)
            sa.next_mid += 1
            actions.append(self._send(sa, msg.encode(sa.cipher_out)))
        return actions + self._close(sa, reason)

    def check_liveness(self, now: float) -> None:
        for sa in self._established():
            self._actions.extend(self._request(sa, now, "dpd", {}))

    def next_deadline(self) -> float | None:
        times = []
        for sa in self.sas.values():
            if sa.outstanding is not None:
                times.append(sa.outstanding.next_at)
            if sa.expire_at is not None:
                times.append(sa.expire_at)
            if sa.state == "established":
                if self.config.dpd_interval and sa.outstanding is None:
                    times.append(sa.last_heard + self.config.dpd_interval)
                if sa.rekey_at is not None:
                    times.append(sa.rekey_at)
                times += [c.rekey_at for c in sa.children.values() if c.rekey_at is not None]
        return min(times) if times else None

    def drain_actions(self) -> list[Action]:
        return self._actions.drain()

    def status(self, now: float) -> IkeStatus:
        return IkeStatus(tuple(self._sa_status(sa) for sa in self.sas.values()), tuple(sorted(self.drops.items())),
                         tuple(sorted(self.messages_sent.items())), tuple(sorted(self.messages_received.items())),
                         tuple(self.events))

    # ----------------------------------------------------------------- plumbing

    def _established(self) -> list[IkeSa]:
        return [sa for sa in self.sas.values() if sa.state == "established"]

    def _drop(self, reason: str) -> list[Action]:
        self.drops[reason] += 1
        return []

    def _log(self, sa: IkeSa | None, text: str) -> None:
        self.events.append(f"{sa.name if sa else '-'}: {text}")

    def _send_to(self, dst: str, dport: int, sport: int, data: bytes) -> SendIke:
        """The UDP payload of IKE message `data` (the non-ESP marker added on 4500), counted."""
        self.messages_sent[exchange_name(data[18])] += 1
        if sport == w.NAT_T_PORT:
            data = w.add_non_esp_marker(data)
        return SendIke(dst, dport, sport, data)

    def _send(self, sa: IkeSa, data: bytes) -> SendIke:
        return self._send_to(sa.peer_addr, sa.peer_port, sa.local_port, data)

    def _message(self, sa: IkeSa, exchange: int, mid: int, payloads: list, response: bool) -> w.Message:
        return w.Message(sa.spi_i, sa.spi_r, exchange, mid, payloads, response=response,
                         initiator=sa.original_initiator)

    def _send_request(self, sa: IkeSa, now: float, exchange: int, payloads: list, kind: str,
                      ctx: dict | None = None) -> list[Action]:
        msg = self._message(sa, exchange, sa.next_mid, payloads, response=False)
        data = msg.encode(None if exchange == w.IKE_SA_INIT else sa.cipher_out)
        if exchange == w.IKE_SA_INIT:
            sa.init_request = data
        sa.outstanding = Outstanding(kind, sa.next_mid, data, ctx or {}, 0,
                                     now + self.config.retransmit_timeout)
        sa.next_mid += 1
        return [self._send(sa, data)]

    def _respond(self, sa: IkeSa, request: w.Message, payloads: list) -> list[Action]:
        data = self._message(sa, request.exchange, request.message_id, payloads, response=True).encode(sa.cipher_out)
        sa.last_response = (request.message_id, data)
        return [self._send(sa, data)]

    def _request(self, sa: IkeSa, now: float, kind: str, ctx: dict) -> list[Action]:
        """Queue an exchange we initiate; window size 1, so it starts when the previous one is answered."""
        if sa.state != "established":
            return []
        sa.queue.append((kind, ctx))
        return self._pump(sa, now)

    def _pump(self, sa: IkeSa, now: float) -> list[Action]:
        actions: list[Action] = []
        while sa.outstanding is None and sa.queue and sa.state == "established":
            kind, ctx = sa.queue.pop(0)
            built = getattr(self, f"_build_{kind}")(sa, now, ctx)
            if built is None:
                continue
            exchange, payloads, extra = built
            actions += extra + self._send_request(sa, now, exchange, payloads, kind, ctx)
        return actions

    def _retransmit(self, sa: IkeSa, now: float, out: Outstanding) -> list[Action]:
        if out.tries >= self.config.retransmit_tries:
            self._log(sa, f"no answer to {out.kind} after {out.tries} retransmissions")
            if sa.state == "established" or sa.rekeyed:
                return self._close(sa, "peer unreachable")
            self._forget(sa)
            return [Failed("peer did not answer", None, sa.peer_id, sa.peer_addr)]
        out.tries += 1
        out.next_at = now + self.config.retransmit_timeout * self.config.retransmit_backoff ** out.tries
        return [self._send(sa, out.data)]

    def _forget(self, sa: IkeSa) -> None:
        self.sas.pop(sa.local_spi, None)
        for key, half in list(self.half_open.items()):
            if half is sa:
                del self.half_open[key]

    def _close(self, sa: IkeSa, reason: str) -> list[Action]:
        """The IKE SA is gone: its children too (unless a rekey moved them), and its virtual IP."""
        self._forget(sa)
        sa.state = "closed"
        if sa.rekeyed:
            return []
        actions: list[Action] = [_delete_action(c, reason) for c in sa.children.values()]
        sa.children.clear()
        if sa.virtual_ip and not sa.original_initiator and self.config.allocator:
            self.config.allocator.release(sa.peer_id, sa.virtual_ip)
        self._log(sa, f"closed: {reason}")
        actions.append(IkeSaClosed(sa.name, reason, sa.peer_id, sa.virtual_ip))
        return actions

    def _on_message(self, sa: IkeSa, now: float, data: bytes, hdr: w.Header, src: str, sport: int,
                    dport: int) -> list[Action]:
        if hdr.exchange == w.IKE_SA_INIT:
            if sa.state != "init_sent" or hdr.message_id != 0 or sa.outstanding is None:
                return self._drop("unexpected_response")
            try:
                msg = w.decode_message(data)
            except DecodeError as exc:
                return self._drop(exc.reason)
            sa.outstanding = None
            return self._on_init_response(sa, now, msg, data, src, sport, dport)
        if sa.cipher_in is None:
            return self._drop("no_keys")
        try:
            msg = w.decode_message(data, sa.cipher_in)
        except DecodeError as exc:
            return self._drop(exc.reason)
        if not msg.encrypted:
            return self._drop("not_encrypted")
        sa.last_heard = now
        if msg.response:
            out = sa.outstanding
            if out is None or msg.message_id != out.message_id:
                return self._drop("unexpected_response")
            sa.outstanding = None
            actions = getattr(self, f"_on_{out.kind}_response")(sa, now, msg, out.ctx)
            if sa.local_spi in self.sas:
                actions += self._pump(sa, now)
            return actions
        if sa.last_response and msg.message_id == sa.last_response[0] and msg.message_id == sa.expected_mid - 1:
            self.drops["retransmitted_request"] += 1
            return [self._send(sa, sa.last_response[1])]
        if msg.message_id != sa.expected_mid:
            return self._drop("bad_message_id")
        sa.expected_mid += 1
        if dport == w.NAT_T_PORT:  # follow the peer's NAT mapping (RFC 7296 2.23)
            sa.local_port, sa.peer_addr, sa.peer_port, sa.encap = w.NAT_T_PORT, src, sport, True
        if msg.exchange == w.IKE_AUTH and sa.state in ("init_done", "eap", "eap_done"):
            return self._on_auth_request(sa, now, msg)
        if msg.exchange == w.INFORMATIONAL and sa.state in ("established", "rekeyed"):
            return self._on_informational_request(sa, now, msg)
        if sa.state != "established":
            return self._drop("not_established")
        if msg.exchange == w.INFORMATIONAL:
            return self._on_informational_request(sa, now, msg)
        if msg.exchange == w.CREATE_CHILD_SA:
            return self._on_create_child_request(sa, now, msg)
        return self._drop("unexpected_exchange")

    # ----------------------------------------------------------------- IKE_SA_INIT

    def _nat_notifies(self, spi_i: bytes, spi_r: bytes, local: tuple[str, int], peer: tuple[str, int]) -> list:
        src = kc.nat_detection_hash(spi_i, spi_r, *local)
        if self.config.force_encap:
            src = self.random(20)
        return [w.Notify(w.N_NAT_DETECTION_SOURCE_IP, src),
                w.Notify(w.N_NAT_DETECTION_DESTINATION_IP, kc.nat_detection_hash(spi_i, spi_r, *peer))]

    def _nat_detected(self, msg: w.Message, spi_r: bytes, src: tuple[str, int], dst: tuple[str, int]) -> bool | None:
        """True if a NAT sits between us (or the peer fakes one), None if the peer does no NAT-T."""
        srcs = [p.data for p in msg.payloads if isinstance(p, w.Notify) and p.type == w.N_NAT_DETECTION_SOURCE_IP]
        dsts = [p.data for p in msg.payloads
                if isinstance(p, w.Notify) and p.type == w.N_NAT_DETECTION_DESTINATION_IP]
        if not srcs or not dsts:
            return None
        peer_nat = kc.nat_detection_hash(msg.spi_i, spi_r, *src) not in srcs
        local_nat = kc.nat_detection_hash(msg.spi_i, spi_r, *dst) not in dsts
        return peer_nat or local_nat or self.config.force_encap

    def _send_init(self, sa: IkeSa, now: float) -> list[Action]:
        group = kc.DH_GROUPS[sa.dh_group]
        sa.dh_private, public = group.generate(self.random)
        sa.tried_groups.add(sa.dh_group)
        sa.state = "init_sent"
        sa.next_mid = 0
        payloads = [w.Notify(w.N_COOKIE, sa.cookie)] if sa.cookie else []
        payloads += [props.sa_payload(self.ike_suites, w.PROTO_IKE, b""), w.KeyExchange(sa.dh_group, public),
                     w.Nonce(sa.nonce_i)]
        payloads += self._nat_notifies(sa.spi_i, bytes(8), (sa.local_addr, sa.local_port),
                                       (sa.peer_addr, sa.peer_port))
        return self._send_request(sa, now, w.IKE_SA_INIT, payloads, "init")

    def _on_init_response(self, sa: IkeSa, now: float, msg: w.Message, data: bytes, src: str, sport: int,
                          dport: int) -> list[Action]:
        def fail(reason: str, notify: int | None = None) -> list[Action]:
            self._log(sa, f"IKE_SA_INIT failed: {reason}")
            self._forget(sa)
            return [Failed(reason, notify, None, sa.peer_addr)]

        cookie = msg.notify(w.N_COOKIE)
        if cookie is not None and sa.cookie is None:
            sa.cookie = cookie.data
            return self._send_init(sa, now)
        invalid_ke = msg.notify(w.N_INVALID_KE_PAYLOAD)
        if invalid_ke is not None:
            group = int.from_bytes(invalid_ke.data[:2], "big")
            offered = {s.dh for s in self.ike_suites}
            if len(invalid_ke.data) != 2 or group not in offered or group in sa.tried_groups:
                return fail(f"INVALID_KE_PAYLOAD asks for group {group}", w.N_INVALID_KE_PAYLOAD)
            self._log(sa, f"INVALID_KE_PAYLOAD: retrying with group {group}")
            sa.dh_group = group
            return self._send_init(sa, now)
        errors = msg.errors()
        if errors:
            return fail(notify_name(errors[0].type), errors[0].type)
        sa_p, ke, nonce = msg.get(w.SecurityAssociation), msg.get(w.KeyExchange), msg.get(w.Nonce)
        if sa_p is None or ke is None or nonce is None or msg.spi_r == bytes(8):
            return fail("IKE_SA_INIT response lacks SA, KE or Nonce")
        sel = props.accept_reply(self.ike_suites, sa_p, w.PROTO_IKE)
        if sel is None or sel.suite.dh != sa.dh_group or ke.group != sa.dh_group:
            return fail("responder chose a proposal we did not offer")
        try:
            g_ir = kc.DH_GROUPS[sa.dh_group].shared(sa.dh_private, ke.data)
        except kc.DhError as exc:
            return fail(str(exc))
        sa.spi_r, sa.nonce_r, sa.init_response = msg.spi_r, nonce.data, data
        skeyseed = kc.skeyseed_initial(sel.suite.prf, sa.nonce_i, sa.nonce_r, g_ir)
        sa.install_keys(sel.suite, self.random, kc.derive_ike_keys(sel.suite.prf, sel.suite.encr, sel.suite.key_bits,
                                                      sel.suite.integ, skeyseed, sa.nonce_i, sa.nonce_r,
                                                      sa.spi_i, sa.spi_r))
        nat = self._nat_detected(msg, sa.spi_r, (src, sport), (sa.local_addr, dport))
        if nat:
            sa.encap = True
            sa.local_port = sa.peer_port = w.NAT_T_PORT
        sa.next_mid = 1
        self._log(sa, f"IKE_SA_INIT done ({sel.suite.name()}, group {sa.dh_group}, nat={bool(nat)})")
        return self._send_auth(sa, now)

    def _on_init_request(self, now: float, data: bytes, hdr: w.Header, src: str, sport: int, dst: str,
                         dport: int) -> list[Action]:
        key = (hdr.spi_i, src, sport)
        known = self.half_open.get(key)
        if known is not None:
            if hdr.message_id == 0 and known.last_response:
                self.drops["retransmitted_request"] += 1
                return [self._send(known, known.last_response[1])]
            return self._drop("duplicate_init")
        if hdr.spi_r != bytes(8) or hdr.message_id != 0:
            return self._drop("bad_init_request")
        if not self.config.users:
            return self._drop("not_a_responder")

        def error(ntype: int, payload: bytes = b"") -> list[Action]:
            self.drops[notify_name(ntype).lower()] += 1
            reply = w.Message(hdr.spi_i, bytes(8), w.IKE_SA_INIT, 0, [w.Notify(ntype, payload)], response=True)
            return [self._send_to(src, sport, dport, reply.encode())]

        try:
            msg = w.decode_message(data)
        except DecodeError as exc:
            if exc.reason == "unsupported_critical_payload":
                return error(w.N_UNSUPPORTED_CRITICAL_PAYLOAD)
            return self._drop(exc.reason)
        sa_p, ke, nonce = msg.get(w.SecurityAssociation), msg.get(w.KeyExchange), msg.get(w.Nonce)
        if sa_p is None or ke is None or nonce is None:
            return error(w.N_INVALID_SYNTAX)
        spi_r = props.new_spi(8, self.random)
        same_group = [s for s in self.ike_suites if s.dh == ke.group]
        sel = props.select(same_group, sa_p, w.PROTO_IKE, spi_r, dh_required=True) if same_group else None
        if sel is None:
            sel = props.select(self.ike_suites, sa_p, w.PROTO_IKE, spi_r, dh_required=True)
            if sel is None:
                return error(w.N_NO_PROPOSAL_CHOSEN)
            return error(w.N_INVALID_KE_PAYLOAD, sel.suite.dh.to_bytes(2, "big"))
        try:
            private, public = kc.DH_GROUPS[ke.group].generate(self.random)
            g_ir = kc.DH_GROUPS[ke.group].shared(private, ke.data)
        except kc.DhError:
            return error(w.N_INVALID_SYNTAX)
        sa = IkeSa(False, hdr.spi_i, spi_r, (dst, dport), (src, sport), now)
        sa.nonce_i, sa.nonce_r, sa.init_request, sa.dh_group = nonce.data, self.random(32), data, ke.group
        nat = self._nat_detected(msg, bytes(8), (src, sport), (dst, dport))
        sa.encap = bool(nat) or dport == w.NAT_T_PORT
        payloads = [w.SecurityAssociation([sel.proposal]), w.KeyExchange(ke.group, public), w.Nonce(sa.nonce_r)]
        if nat is not None:
            payloads += self._nat_notifies(sa.spi_i, sa.spi_r, (dst, dport), (src, sport))
        reply = self._message(sa, w.IKE_SA_INIT, 0, payloads, response=True).encode()
        sa.init_response = reply
        skeyseed = kc.skeyseed_initial(sel.suite.prf, sa.nonce_i, sa.nonce_r, g_ir)
        sa.install_keys(sel.suite, self.random, kc.derive_ike_keys(sel.suite.prf, sel.suite.encr, sel.suite.key_bits,
                                                      sel.suite.integ, skeyseed, sa.nonce_i, sa.nonce_r,
                                                      sa.spi_i, sa.spi_r))
        sa.state, sa.expected_mid = "init_done", 1
        sa.expire_at = now + self.config.half_open_timeout
        sa.last_response = (0, reply)
        self.sas[spi_r] = sa
        self.half_open[key] = sa
        self._log(sa, f"IKE_SA_INIT from {src}:{sport} ({sel.suite.name()}, group {ke.group}, nat={bool(nat)})")
        return [self._send(sa, reply)]

    # ----------------------------------------------------------------- IKE_AUTH

    def _auth_data(self, sa: IkeSa, secret: bytes | None, own: bool) -> bytes:
        """AUTH of our side (own) or the one expected from the peer; secret None means EAP without MSK."""
        if secret is None:
            secret = sa.sk_p(own)
        id_payload = sa.my_id if own else sa.peer_id_payload
        signer_is_initiator = own == sa.original_initiator
        message = sa.init_request if signer_is_initiator else sa.init_response
        nonce = sa.nonce_r if signer_is_initiator else sa.nonce_i
        return kc.psk_auth(sa.suite.prf, secret, message, nonce, sa.sk_p(own), id_payload.id_prime())

    def _auth_ok(self, sa: IkeSa, msg: w.Message, secret: bytes | None) -> bool:
        auth = msg.get(w.Authentication)
        return (auth is not None and auth.method == w.AUTH_SHARED_KEY
                and hmac.compare_digest(auth.data, self._auth_data(sa, secret, own=False)))

    def _send_auth(self, sa: IkeSa, now: float) -> list[Action]:
        cfg = self.config
        sa.my_id = make_id(cfg.local_id, w.IDi)
        spi_in = props.new_spi(4, self.random)
        ts_i = [tsel.ANY] if cfg.request_address else [tsel.from_subnet(s) for s in cfg.local_ts]
        ts_r = [tsel.from_subnet(s) for s in cfg.remote_ts]
        sa.pending_child = {"spi_in": spi_in, "suites": self.esp_suites_auth, "ts_i": ts_i, "ts_r": ts_r,
                            "nonce_i": sa.nonce_i, "nonce_r": sa.nonce_r}
        payloads: list = [sa.my_id, w.Notify(w.N_INITIAL_CONTACT)]
        if cfg.remote_id:
            payloads.append(make_id(cfg.remote_id, w.IDr))
        if cfg.eap_password is None:
            payloads.append(w.Authentication(w.AUTH_SHARED_KEY, self._auth_data(sa, cfg.psk or b"", own=True)))
        if cfg.request_address:
            payloads.append(w.Configuration(w.CFG_REQUEST, [w.ConfigAttribute(w.INTERNAL_IP4_ADDRESS),
                                                            w.ConfigAttribute(w.INTERNAL_IP4_DNS)]))
        payloads += [props.sa_payload(self.esp_suites_auth, w.PROTO_ESP, spi_in), w.TSi(ts_i), w.TSr(ts_r)]
        sa.state = "auth_sent"
        stage = "eap_start" if cfg.eap_password is not None else "psk"
        return self._send_request(sa, now, w.IKE_AUTH, payloads, "auth", {"stage": stage})

    def _on_auth_response(self, sa: IkeSa, now: float, msg: w.Message, ctx: dict) -> list[Action]:
        def fail(reason: str, notify: int | None = None, tell_peer: bool = False) -> list[Action]:
            self._log(sa, f"IKE_AUTH failed: {reason}")
            self._forget(sa)
            actions: list[Action] = [Failed(reason, notify, sa.peer_id, sa.peer_addr)]
            if tell_peer:  # RFC 7296 2.21.2: the initiator reports a bad responder AUTH in INFORMATIONAL
                data = self._message(sa, w.INFORMATIONAL, sa.next_mid,
                                     [w.Notify(w.N_AUTHENTICATION_FAILED)], False).encode(sa.cipher_out)
                actions.insert(0, self._send(sa, data))
            return actions

        if msg.notify(w.N_AUTHENTICATION_FAILED) is not None:
            return fail("AUTHENTICATION_FAILED", w.N_AUTHENTICATION_FAILED)
        stage = ctx["stage"]
        if stage in ("psk", "eap_start"):
            idr, auth = msg.get(w.IDr), msg.get(w.Authentication)
            if idr is None or auth is None:
                errors = msg.errors()
                if errors:
                    return fail(notify_name(errors[0].type), errors[0].type)
                return fail("IKE_AUTH response lacks IDr or AUTH")
            sa.peer_id_payload, sa.peer_id = idr, idr.text()
            if self.config.remote_id and sa.peer_id != id_text(self.config.remote_id):
                return fail(f"responder identity {sa.peer_id!r} is not {self.config.remote_id!r}",
                            w.N_AUTHENTICATION_FAILED, tell_peer=True)
            if self.config.psk is None or not self._auth_ok(sa, msg, self.config.psk):
                return fail("responder AUTH does not verify", w.N_AUTHENTICATION_FAILED, tell_peer=True)
            if stage == "psk":
                return self._auth_complete(sa, now, msg)
        if stage in ("eap_start", "eap"):
            eap = msg.get(w.EAP)
            if eap is None:
                return fail("EAP payload missing")
            try:
                packet = eap_md5.EapPacket.decode(eap.message)
            except DecodeError as exc:
                return fail(f"bad EAP packet: {exc}")
            if packet.code == eap_md5.CODE_SUCCESS:
                auth = w.Authentication(w.AUTH_SHARED_KEY, self._auth_data(sa, None, own=True))
                return self._send_request(sa, now, w.IKE_AUTH, [auth], "auth", {"stage": "eap_auth"})
            if packet.code != eap_md5.CODE_REQUEST:
                return fail("EAP failure", w.N_AUTHENTICATION_FAILED)
            try:
                answer = eap_md5.peer_respond(packet, (self.config.eap_identity or id_text(self.config.local_id))
                                              .encode(), self.config.eap_password or b"")
            except DecodeError as exc:
                return fail(f"bad EAP request: {exc}")
            return self._send_request(sa, now, w.IKE_AUTH, [w.EAP(answer.encode())], "auth", {"stage": "eap"})
        # stage eap_auth: the responder's AUTH keyed with SK_pr (EAP-MD5 has no MSK)
        if not self._auth_ok(sa, msg, None):
            return fail("responder EAP AUTH does not verify", w.N_AUTHENTICATION_FAILED, tell_peer=True)
        return self._auth_complete(sa, now, msg)

    def _auth_complete(self, sa: IkeSa, now: float, msg: w.Message) -> list[Action]:
        """Final IKE_AUTH response, both peers authenticated: configuration and the first child SA."""
        sa.state, sa.expire_at = "established", None
        cp = msg.get(w.Configuration)
        if cp is not None and cp.cfg_type == w.CFG_REPLY:
            addrs = [v for v in cp.values(w.INTERNAL_IP4_ADDRESS) if len(v) == 4]
            masks = [v for v in cp.values(w.INTERNAL_IP4_NETMASK) if len(v) == 4]
            sa.virtual_ip = str(IPv4Address(addrs[0])) if addrs else None
            sa.netmask = str(IPv4Address(masks[0])) if masks else None
            sa.dns = [str(IPv4Address(v)) for v in cp.values(w.INTERNAL_IP4_DNS) if len(v) == 4]
            sa.subnets = [str(IPv4Network((IPv4Address(v[:4]), str(IPv4Address(v[4:])))))
                          for v in cp.values(w.INTERNAL_IP4_SUBNET) if len(v) == 8]
        actions: list[Action] = []
        try:
            errors = msg.errors()
            if errors:
                raise ChildError(errors[0].type)
            if self.config.request_address and sa.virtual_ip is None:
                raise ChildError(w.N_INTERNAL_ADDRESS_FAILURE, detail="no virtual IP assigned")
            child = self._initiator_child(sa, now, msg, sa.pending_child)
        except ChildError as exc:
            self._log(sa, f"child SA failed: {exc}")
            actions.append(Failed(str(exc), exc.notify, sa.peer_id, sa.peer_addr))
            return actions + self._request(sa, now, "delete_ike", {})
        self._arm_rekey(sa, now)
        self._log(sa, f"established with {sa.peer_id}, virtual IP {sa.virtual_ip}")
        return [_child_action(sa, child), self._established_event(sa)]

    def _established_event(self, sa: IkeSa) -> Established:
        return Established(sa.name, sa.role, sa.peer_id or "", sa.peer_addr, sa.peer_port, sa.encap,
                           sa.virtual_ip, sa.netmask, list(sa.dns), list(sa.subnets))

    def _arm_rekey(self, sa: IkeSa, now: float) -> None:
        if self.config.ike_rekey_after:
            sa.rekey_at = now + self.config.ike_rekey_after

    def _on_auth_request(self, sa: IkeSa, now: float, msg: w.Message) -> list[Action]:
        def fail(reason: str, extra: list | None = None) -> list[Action]:
            self._log(sa, f"IKE_AUTH from {sa.peer_id or '?'} failed: {reason}")
            actions = self._respond(sa, msg, (extra or []) + [w.Notify(w.N_AUTHENTICATION_FAILED)])
            sa.state = "failed"
            sa.expire_at = now + self.config.half_open_timeout  # keep answering retransmissions
            return actions + [Failed(reason, w.N_AUTHENTICATION_FAILED, sa.peer_id, sa.peer_addr)]

        if sa.state == "init_done":
            idi = msg.get(w.IDi)
            if idi is None:
                return fail("IKE_AUTH without IDi")
            sa.peer_id_payload, sa.peer_id = idi, idi.text()
            sa.user = self.config.users.get(sa.peer_id)
            if sa.user is None:
                return fail(f"unknown identity {sa.peer_id!r}")
            sa.my_id = make_id(self.config.local_id, w.IDr)
            if msg.get(w.Authentication) is not None:
                if sa.user.psk is None or not self._auth_ok(sa, msg, sa.user.psk):
                    return fail("pre-shared key AUTH does not verify")
                auth = w.Authentication(w.AUTH_SHARED_KEY, self._auth_data(sa, sa.user.psk, own=True))
                return self._finish_auth(sa, now, msg, msg, [sa.my_id, auth])
            gateway_psk = sa.user.gateway_psk or self.config.gateway_psk
            if sa.user.password is None or gateway_psk is None:
                return fail("no AUTH and no EAP password configured for this identity")
            sa.auth_request = msg
            identifier = self.random(1)[0]
            packet, challenge = eap_md5.md5_challenge(identifier, self.random)
            sa.eap = {"identifier": identifier, "challenge": challenge}
            sa.state = "eap"
            auth = w.Authentication(w.AUTH_SHARED_KEY, self._auth_data(sa, gateway_psk, own=True))
            return self._respond(sa, msg, [sa.my_id, auth, w.EAP(packet.encode())])
        if sa.state == "eap":
            eap = msg.get(w.EAP)
            try:
                packet = eap_md5.EapPacket.decode(eap.message) if eap else None
            except DecodeError:
                packet = None
            if packet is None or not eap_md5.server_verify(packet, sa.eap["identifier"], sa.eap["challenge"],
                                                           sa.user.password):
                failure = eap_md5.EapPacket(eap_md5.CODE_FAILURE, sa.eap["identifier"])
                return fail("EAP-MD5 response does not verify", [w.EAP(failure.encode())])
            sa.state = "eap_done"
            success = eap_md5.EapPacket(eap_md5.CODE_SUCCESS, sa.eap["identifier"])
            return self._respond(sa, msg, [w.EAP(success.encode())])
        # eap_done: the initiator's AUTH keyed with SK_pi
        if not self._auth_ok(sa, msg, None):
            return fail("AUTH after EAP does not verify")
        auth = w.Authentication(w.AUTH_SHARED_KEY, self._auth_data(sa, None, own=True))
        return self._finish_auth(sa, now, msg, sa.auth_request, [auth])

    def _finish_auth(self, sa: IkeSa, now: float, current: w.Message, request: w.Message,
                     head: list) -> list[Action]:
        """Responder: the peer is authenticated; answer (`current`) the CP, SA and TS of its first
        IKE_AUTH request (`request`, the same message unless EAP came in between)."""
        sa.state, sa.expire_at = "established", None
        self.half_open = {k: v for k, v in self.half_open.items() if v is not sa}
        child, body = None, []
        try:
            body, child = self._responder_child(sa, now, request, ike_auth=True)
        except ChildError as exc:
            self._log(sa, f"child SA refused: {exc}")
            body = body + [w.Notify(exc.notify, exc.data)]
            if sa.virtual_ip:
                body.insert(0, self._cp_reply(sa))
        actions = self._respond(sa, current, head + body)
        if sa.virtual_ip:
            sa.dns = list(self.config.dns)
        sa.subnets = list(sa.user.subnets) if sa.user else []
        if child is not None:
            actions.append(_child_action(sa, child))
        self._arm_rekey(sa, now)
        self._log(sa, f"established with {sa.peer_id}, virtual IP {sa.virtual_ip}")
        return actions + [self._established_event(sa)] + self._replace_older(sa, now)

    def _replace_older(self, sa: IkeSa, now: float) -> list[Action]:
        """unique=replace: the peer identity's other established IKE SAs go (after `sa`'s Established,
        so a runtime sees the new tunnel first and the old one's IkeSaClosed after)."""
        if self.config.unique != "replace" or not sa.peer_id:
            return []
        actions: list[Action] = []
        for other in list(self.sas.values()):
            if other is not sa and other.peer_id == sa.peer_id and other.state == "established":
                self._log(other, f"replaced by {sa.name} (unique=replace)")
                actions += self._close_ike_sa(other.name, "replaced by a new IKE SA of the same identity", True)
        return actions

    # ----------------------------------------------------------------- child SAs

    def _cp_reply(self, sa: IkeSa) -> w.Configuration:
        attrs = [w.ConfigAttribute(w.INTERNAL_IP4_ADDRESS, IPv4Address(sa.virtual_ip).packed)]
        if self.config.netmask:
            attrs.append(w.ConfigAttribute(w.INTERNAL_IP4_NETMASK, IPv4Address(self.config.netmask).packed))
        attrs += [w.ConfigAttribute(w.INTERNAL_IP4_DNS, IPv4Address(d).packed) for d in self.config.dns]
        for subnet in (sa.user.subnets if sa.user else []):
            net = IPv4Network(subnet, strict=False)
            if net.prefixlen:
                attrs.append(w.ConfigAttribute(w.INTERNAL_IP4_SUBNET,
                                               net.network_address.packed + net.netmask.packed))
        return w.Configuration(w.CFG_REPLY, attrs)

    def _responder_child(self, sa: IkeSa, now: float, request: w.Message, ike_auth: bool,
                         rekey_of: ChildSa | None = None) -> tuple[list, ChildSa | None]:
        """Negotiate a child SA from the peer's SA/TSi/TSr (and CP in IKE_AUTH); payloads for the reply."""
        out: list = []
        cp = request.get(w.Configuration)
        if ike_auth and cp is not None and cp.cfg_type == w.CFG_REQUEST and self.config.allocator:
            if sa.virtual_ip is None:
                addr = self.config.allocator.allocate(sa.peer_id)
                if addr is None:
                    raise ChildError(w.N_INTERNAL_ADDRESS_FAILURE, detail="address pool exhausted")
                sa.virtual_ip = str(addr)
            out.append(self._cp_reply(sa))
        sa_p, tsi, tsr = request.get(w.SecurityAssociation), request.get(w.TSi), request.get(w.TSr)
        if ike_auth and sa_p is None and tsi is None and tsr is None:
            return out, None  # childless IKE SA
        if sa_p is None or tsi is None or tsr is None:
            raise ChildError(w.N_INVALID_SYNTAX, detail="SA, TSi or TSr missing")
        ke = request.get(w.KeyExchange)
        spi_in = props.new_spi(4, self.random)
        suites = self.esp_suites_auth if ike_auth else self.esp_suites
        sel = props.select(suites, sa_p, w.PROTO_ESP, spi_in, dh_required=ke is not None, ignore_dh=ike_auth)
        if sel is None:
            raise ChildError(w.N_NO_PROPOSAL_CHOSEN)
        g_ir, ke_reply = b"", None
        if ke is not None and not ike_auth:
            if ke.group != sel.suite.dh:
                raise ChildError(w.N_INVALID_KE_PAYLOAD, sel.suite.dh.to_bytes(2, "big"))
            try:
                private, public = kc.DH_GROUPS[ke.group].generate(self.random)
                g_ir = kc.DH_GROUPS[ke.group].shared(private, ke.data)
            except kc.DhError as exc:
                raise ChildError(w.N_INVALID_SYNTAX, detail=str(exc)) from exc
            ke_reply = w.KeyExchange(ke.group, public)
        if rekey_of is not None:
            allowed_remote, allowed_local = rekey_of.ts_remote, rekey_of.ts_local
        else:
            user = sa.user or UserPolicy()
            remote = user.remote_ts if user.remote_ts is not None else self.config.remote_ts
            allowed_remote = ([tsel.host(sa.virtual_ip)] if sa.virtual_ip
                              else [tsel.from_subnet(s) for s in remote])
            allowed_local = [tsel.from_subnet(s) for s in user.subnets]
        ts_i, ts_r = tsel.narrow(tsi.selectors, allowed_remote), tsel.narrow(tsr.selectors, allowed_local)
        if not ts_i or not ts_r:
            raise ChildError(w.N_TS_UNACCEPTABLE)
        nonce_i, nonce_r = (sa.nonce_i, sa.nonce_r) if ike_auth else (request.get(w.Nonce).data, self.random(32))
        keys = kc.derive_child_keys(sa.suite.prf, sa.keys.sk_d, sel.suite.encr, sel.suite.key_bits,
                                    sel.suite.integ, nonce_i, nonce_r, g_ir)
        child = ChildSa(spi_in, sel.peer_spi, sel.suite, keys.encr_i, keys.integ_i, keys.encr_r, keys.integ_r,
                        ts_r, ts_i, now, self._child_rekey_at(now))
        sa.children[spi_in] = child
        out.append(w.SecurityAssociation([sel.proposal]))
        if not ike_auth:
            out.append(w.Nonce(nonce_r))
        if ke_reply is not None:
            out.append(ke_reply)
        out += [w.TSi(ts_i), w.TSr(ts_r)]
        return out, child

    def _child_rekey_at(self, now: float) -> float | None:
        return now + self.config.child_rekey_after if self.config.child_rekey_after else None

    def _initiator_child(self, sa: IkeSa, now: float, msg: w.Message, ctx: dict, g_ir: bytes = b"") -> ChildSa:
        sa_p = msg.get(w.SecurityAssociation)
        sel = props.accept_reply(ctx["suites"], sa_p, w.PROTO_ESP) if sa_p is not None else None
        if sel is None or len(sel.peer_spi) != 4:
            raise ChildError(w.N_NO_PROPOSAL_CHOSEN, detail="responder chose no ESP proposal we offered")
        tsi, tsr = msg.get(w.TSi), msg.get(w.TSr)
        if (tsi is None or tsr is None or not tsel.is_subset(tsi.selectors, ctx["ts_i"])
                or not tsel.is_subset(tsr.selectors, ctx["ts_r"])):
            raise ChildError(w.N_TS_UNACCEPTABLE, detail="responder's traffic selectors are not a narrowing")
        keys = kc.derive_child_keys(sa.suite.prf, sa.keys.sk_d, sel.suite.encr, sel.suite.key_bits,
                                    sel.suite.integ, ctx["nonce_i"], ctx["nonce_r"], g_ir)
        child = ChildSa(ctx["spi_in"], sel.peer_spi, sel.suite, keys.encr_r, keys.integ_r, keys.encr_i,
                        keys.integ_i, tsi.selectors, tsr.selectors, now, self._child_rekey_at(now))
        sa.children[child.spi_in] = child
        return child

    # ----------------------------------------------------------------- CREATE_CHILD_SA

    def _build_rekey_child(self, sa: IkeSa, now: float, ctx: dict):
        old = sa.children.get(ctx["spi_in"])
        if old is None:
            return None
        ctx.update(spi_in=props.new_spi(4, self.random), nonce_i=self.random(32), suites=self.esp_suites, old=old.spi_in,
                   ts_i=old.ts_local, ts_r=old.ts_remote)
        payloads: list = [w.Notify(w.N_REKEY_SA, b"", w.PROTO_ESP, old.spi_in),
                          props.sa_payload(self.esp_suites, w.PROTO_ESP, ctx["spi_in"]), w.Nonce(ctx["nonce_i"])]
        group = self.esp_suites[0].dh
        if group:  # PFS
            ctx["dh"], public = kc.DH_GROUPS[group].generate(self.random)
            ctx["group"] = group
            payloads.append(w.KeyExchange(group, public))
        payloads += [w.TSi(old.ts_local), w.TSr(old.ts_remote)]
        return w.CREATE_CHILD_SA, payloads, []

    def _on_rekey_child_response(self, sa: IkeSa, now: float, msg: w.Message, ctx: dict) -> list[Action]:
        old = sa.children.get(ctx["old"])
        try:
            errors = msg.errors()
            if errors:
                raise ChildError(errors[0].type)
            nonce, ke, g_ir = msg.get(w.Nonce), msg.get(w.KeyExchange), b""
            if nonce is None:
                raise ChildError(w.N_INVALID_SYNTAX, detail="no nonce")
            if "group" in ctx:
                if ke is None or ke.group != ctx["group"]:
                    raise ChildError(w.N_INVALID_KE_PAYLOAD, detail="PFS key exchange missing")
                try:
                    g_ir = kc.DH_GROUPS[ke.group].shared(ctx["dh"], ke.data)
                except kc.DhError as exc:
                    raise ChildError(w.N_INVALID_SYNTAX, detail=str(exc)) from exc
            ctx["nonce_r"] = nonce.data
            child = self._initiator_child(sa, now, msg, ctx, g_ir)
        except ChildError as exc:
            sa.last_error = f"child rekey failed: {exc}"
            self._log(sa, sa.last_error)
            if old is not None:
                old.rekey_at = self._child_rekey_at(now)
            return []
        self._log(sa, f"child SA {ctx['old'].hex()} rekeyed to {child.spi_in.hex()}")
        actions: list[Action] = [_child_action(sa, child, replaces=ctx["old"])]
        if old is not None:
            actions += self._request(sa, now, "delete_child", {"spi_in": old.spi_in})
        return actions

    def _build_rekey_ike(self, sa: IkeSa, now: float, ctx: dict):
        group = ctx.get("group") or sa.suite.dh
        ctx.update(spi=props.new_spi(8, self.random), nonce_i=self.random(32), group=group)
        ctx.setdefault("tried", []).append(group)
        ctx["dh"], public = kc.DH_GROUPS[group].generate(self.random)
        # the proposals with the group of our KE first (RFC 7296 1.3.2), so a responder that picks
        # the first acceptable proposal needs no INVALID_KE_PAYLOAD round trip
        suites = ctx["suites"] = sorted(self.ike_suites, key=lambda s: s.dh != group)
        payloads = [props.sa_payload(suites, w.PROTO_IKE, ctx["spi"]), w.Nonce(ctx["nonce_i"]),
                    w.KeyExchange(group, public)]
        return w.CREATE_CHILD_SA, payloads, []

    def _successor(self, sa: IkeSa, now: float, initiator: bool, spi_i: bytes, spi_r: bytes, suite: Suite,
                   g_ir: bytes, nonce_i: bytes, nonce_r: bytes) -> IkeSa:
        """The new IKE SA of an IKE rekey (RFC 7296 2.18): it takes over the children and the peer state."""
        new = IkeSa(initiator, spi_i, spi_r, (sa.local_addr, sa.local_port), (sa.peer_addr, sa.peer_port), now)
        skeyseed = kc.skeyseed_rekey(sa.suite.prf, sa.keys.sk_d, g_ir, nonce_i, nonce_r)
        new.install_keys(suite, self.random, kc.derive_ike_keys(suite.prf, suite.encr, suite.key_bits, suite.integ, skeyseed,
                                                   nonce_i, nonce_r, spi_i, spi_r))
        new.nonce_i, new.nonce_r, new.state, new.encap = nonce_i, nonce_r, "established", sa.encap
        for attr in ("my_id", "peer_id_payload", "peer_id", "user", "virtual_ip", "netmask", "dns", "subnets"):
            setattr(new, attr, getattr(sa, attr))
        new.children, sa.children, sa.rekeyed = sa.children, {}, True
        self._arm_rekey(new, now)
        self.sas[new.local_spi] = new
        self._log(sa, f"IKE SA rekeyed to {new.name}")
        return new

    def _on_rekey_ike_response(self, sa: IkeSa, now: float, msg: w.Message, ctx: dict) -> list[Action]:
        invalid_ke = msg.notify(w.N_INVALID_KE_PAYLOAD)
        if invalid_ke is not None and len(invalid_ke.data) == 2:
            group = int.from_bytes(invalid_ke.data, "big")
            if group in {s.dh for s in self.ike_suites} and group not in ctx.get("tried", []):
                self._log(sa, f"IKE rekey: INVALID_KE_PAYLOAD, retrying with group {group}")
                return self._request(sa, now, "rekey_ike", {"group": group, "tried": list(ctx.get("tried", []))})
        sel = None
        if not msg.errors() and msg.get(w.SecurityAssociation):
            sel = props.accept_reply(ctx.get("suites", self.ike_suites), msg.get(w.SecurityAssociation), w.PROTO_IKE)
        ke, nonce = msg.get(w.KeyExchange), msg.get(w.Nonce)
        if sel is None or ke is None or nonce is None or ke.group != ctx["group"] or len(sel.peer_spi) != 8:
            sa.last_error = "IKE rekey refused or malformed"
            self._log(sa, sa.last_error)
            self._arm_rekey(sa, now)
            return []
        try:
            g_ir = kc.DH_GROUPS[ke.group].shared(ctx["dh"], ke.data)
        except kc.DhError:
            return []
        new = self._successor(sa, now, True, ctx["spi"], sel.peer_spi, sel.suite, g_ir, ctx["nonce_i"], nonce.data)
        sa.queue.clear()
        actions: list[Action] = [IkeSaRekeyed(sa.name, new.name)] + self._request(sa, now, "delete_ike", {})
        sa.state = "rekeyed"
        return actions

    def _on_create_child_request(self, sa: IkeSa, now: float, msg: w.Message) -> list[Action]:
        sa_p = msg.get(w.SecurityAssociation)
        if sa_p is not None and sa_p.proposals and sa_p.proposals[0].protocol == w.PROTO_IKE:
            return self._on_rekey_ike_request(sa, now, msg, sa_p)
        rekey = msg.notify(w.N_REKEY_SA)
        old = None
        if rekey is not None:
            old = next((c for c in sa.children.values() if c.spi_out == rekey.spi), None)
            if old is None:
                return self._respond(sa, msg, [w.Notify(w.N_CHILD_SA_NOT_FOUND, b"", w.PROTO_ESP, rekey.spi)])
        if msg.get(w.Nonce) is None:
            return self._respond(sa, msg, [w.Notify(w.N_INVALID_SYNTAX)])
        try:
            body, child = self._responder_child(sa, now, msg, ike_auth=False, rekey_of=old)
        except ChildError as exc:
            return self._respond(sa, msg, [w.Notify(exc.notify, exc.data)])
        self._log(sa, f"child SA {child.spi_in.hex()} created" + (f" rekeying {old.spi_in.hex()}" if old else ""))
        return self._respond(sa, msg, body) + [_child_action(sa, child, replaces=old.spi_in if old else None)]

    def _on_rekey_ike_request(self, sa: IkeSa, now: float, msg: w.Message, sa_p: w.SecurityAssociation):
        ke, nonce = msg.get(w.KeyExchange), msg.get(w.Nonce)
        if ke is None or nonce is None:
            return self._respond(sa, msg, [w.Notify(w.N_INVALID_SYNTAX)])
        spi = props.new_spi(8, self.random)
        same = [s for s in self.ike_suites if s.dh == ke.group]
        sel = props.select(same, sa_p, w.PROTO_IKE, spi, dh_required=True) if same else None
        if sel is None:
            other = props.select(self.ike_suites, sa_p, w.PROTO_IKE, spi, dh_required=True)
            if other is None:
                return self._respond(sa, msg, [w.Notify(w.N_NO_PROPOSAL_CHOSEN)])
            return self._respond(sa, msg, [w.Notify(w.N_INVALID_KE_PAYLOAD, other.suite.dh.to_bytes(2, "big"))])
        if len(sel.peer_spi) != 8:
            return self._respond(sa, msg, [w.Notify(w.N_INVALID_SYNTAX)])
        try:
            private, public = kc.DH_GROUPS[ke.group].generate(self.random)
            g_ir = kc.DH_GROUPS[ke.group].shared(private, ke.data)
        except kc.DhError:
            return self._respond(sa, msg, [w.Notify(w.N_INVALID_SYNTAX)])
        nonce_r = self.random(32)
        actions = self._respond(sa, msg, [w.SecurityAssociation([sel.proposal]), w.Nonce(nonce_r),
                                          w.KeyExchange(ke.group, public)])
        new = self._successor(sa, now, False, sel.peer_spi, spi, sel.suite, g_ir, nonce.data, nonce_r)
        sa.state = "rekeyed"  # the initiator of the rekey deletes it
        return actions + [IkeSaRekeyed(sa.name, new.name)]

    # ----------------------------------------------------------------- INFORMATIONAL

    def _build_dpd(self, sa: IkeSa, now: float, ctx: dict):
        return w.INFORMATIONAL, [], []

    def _on_dpd_response(self, sa: IkeSa, now: float, msg: w.Message, ctx: dict) -> list[Action]:
        return []

    def _build_delete_child(self, sa: IkeSa, now: float, ctx: dict):
        child = sa.children.pop(ctx["spi_in"], None)
        if child is None:
            return None
        return w.INFORMATIONAL, [w.Delete(w.PROTO_ESP, [child.spi_in])], [_delete_action(child, "deleted")]

    def _on_delete_child_response(self, sa: IkeSa, now: float, msg: w.Message, ctx: dict) -> list[Action]:
        return []

    def _build_delete_ike(self, sa: IkeSa, now: float, ctx: dict):
        return w.INFORMATIONAL, [w.Delete(w.PROTO_IKE)], []

    def _on_delete_ike_response(self, sa: IkeSa, now: float, msg: w.Message, ctx: dict) -> list[Action]:
        return self._close(sa, "deleted")

    def _on_informational_request(self, sa: IkeSa, now: float, msg: w.Message) -> list[Action]:
        deletes = [p for p in msg.payloads if isinstance(p, w.Delete)]
        if any(d.protocol == w.PROTO_IKE for d in deletes):
            return self._respond(sa, msg, []) + self._close(sa, "deleted by peer")
        ours: list[bytes] = []
        actions: list[Action] = []
        for d in deletes:
            for spi in d.spis:
                child = next((c for c in sa.children.values() if c.spi_out == spi), None)
                if child is not None:
                    del sa.children[child.spi_in]
                    ours.append(child.spi_in)
                    actions.append(_delete_action(child, "deleted by peer"))
        payloads = [w.Delete(w.PROTO_ESP, ours)] if ours else []
        return self._respond(sa, msg, payloads) + actions

    # ----------------------------------------------------------------- status

    def _sa_status(self, sa: IkeSa) -> dict:
        return {
            "name": sa.name,
            "role": sa.role,
            "state": sa.state,
            "spi_i": sa.spi_i.hex(),
            "spi_r": sa.spi_r.hex(),
            "local": f"{sa.local_addr}:{sa.local_port}",
            "peer": f"{sa.peer_addr}:{sa.peer_port}",
            "encap": sa.encap,
            "peer_id": sa.peer_id,
            "virtual_ip": sa.virtual_ip,
            "dns": sa.dns,
            "suite": sa.suite.name() if sa.suite else None,
            "dh_group": sa.dh_group or (sa.suite.dh if sa.suite else None),
            "keys": sa.keys.as_dict() if sa.keys else None,
            "last_error": sa.last_error,
            "children": [{
                "spi_in": c.spi_in.hex(),
                "spi_out": c.spi_out.hex(),
                "alg": c.suite.name(),
                "encr_key_in": c.encr_in.hex(),
                "integ_key_in": c.integ_in.hex(),
                "encr_key_out": c.encr_out.hex(),
                "integ_key_out": c.integ_out.hex(),
                "ts_local": tsel.describe(c.ts_local),
                "ts_remote": tsel.describe(c.ts_remote),
            } for c in sa.children.values()],
        }

