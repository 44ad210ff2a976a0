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

The parts, one module each: ike_table (SA table, demultiplexing, deadline heap), ike_window
(request window and retransmission, the dispatch table), ike_init (IKE_SA_INIT, with ike_cookie:
the responder's stateless cookies under load, RFC 7296 2.6), ike_auth (IKE_AUTH and EAP), ike_child
(child SAs and their rekeying, with the simultaneous-rekey collision of RFC 7296 2.8.1), ike_rekey
(IKE SA rekeying), ike_info (INFORMATIONAL: DPD, deletes), ike_status (the snapshot); ike_state
holds the SA state and the typed exchange contexts, ike_actions the actions, ike_config the
configuration, ike_proposals the cipher suites and their selection, ike_crypto the key material,
ike_context what the parts share. This module wires them and dispatches received messages by a
table (exchange type -> states -> handler).

Not done: IKE fragmentation (RFC 7383), a simultaneous IKE SA rekey collision (RFC 7296 2.8.1;
the child SA collision is handled), MOBIKE (RFC 4555), transport mode, IPv6.
"""
from __future__ import annotations

from nodes.core import Addr, RandomSource, system_random
from nodes.ipsec.ike_actions import (Action, DeleteChildSa, Established, Failed, IkeSaClosed, IkeSaRekeyed,
                                     InstallChildSa, SendIke, exchange_name, notify_name)
from nodes.ipsec.ike_auth import Authentication
from nodes.ipsec.ike_child import ChildSas
from nodes.ipsec.ike_config import AddressAllocator, IkeConfig, UserPolicy, id_text, make_id
from nodes.ipsec.ike_context import IkeContext
from nodes.ipsec.ike_info import Informational
from nodes.ipsec.ike_init import InitialExchange
from nodes.ipsec.ike_rekey import IkeRekey
from nodes.ipsec.ike_state import (AuthRequest, DeleteChild, DeleteIke, Dpd, IkeSa, InvalidSpiNotice, RekeyChild,
                                   RekeyIke, SaState)
from nodes.ipsec.ike_status import IkeStatus, snapshot
from nodes.ipsec.ike_window import RequestWindow
from nodes.wire import ikev2 as w
from nodes.wire.errors import DecodeError, UnsupportedCriticalPayload

__all__ = ["Action", "AddressAllocator", "DeleteChildSa", "Established", "Failed", "IkeConfig", "IkeCore",
           "IkeSaClosed", "IkeSaRekeyed", "IkeStatus", "InstallChildSa", "SendIke", "UserPolicy", "id_text",
           "make_id", "notify_name"]

INVALID_SPI_INTERVAL = 1.0   # seconds between two N(INVALID_SPI) notices on one IKE SA
INVALID_SPI_SCAN = 0.1       # seconds between two looks for the IKE SA of an unknown SPI's sender


class IkeCore:
    def __init__(self, config: IkeConfig, random: RandomSource = system_random):
        self.ctx = ctx = IkeContext(config, random)
        self.config = config
        self.info = Informational(ctx)
        self.window = RequestWindow(ctx, self.info.close)
        self.rekey = IkeRekey(ctx, self.window)
        self.children = ChildSas(ctx, self.window, self.rekey)
        self.auth = Authentication(ctx, self.window, self.children, self.info)
        self.init = InitialExchange(ctx, self.window, self.auth)
        # what answers a request we sent: by the type of its context
        self.window.exchanges = {
            AuthRequest: (None, self.auth.on_response),
            Dpd: (self.info.build_dpd, self.info.on_empty_response),
            DeleteChild: (self.info.build_delete_child, self.info.on_delete_child_response),
            DeleteIke: (self.info.build_delete_ike, self.info.on_delete_ike_response),
            InvalidSpiNotice: (self.info.build_invalid_spi, self.info.on_empty_response),
            RekeyChild: (self.children.build_rekey, self.children.on_rekey_response),
            RekeyIke: (self.rekey.build, self.rekey.on_response),
        }
        # who handles a request of the peer: by exchange type, in which states of the IKE SA
        self.requests = {
            w.IKE_AUTH: ({SaState.INIT_DONE, SaState.EAP, SaState.EAP_DONE}, self.auth.on_request),
            w.INFORMATIONAL: ({SaState.ESTABLISHED, SaState.REKEYED}, self.info.on_request),
            # REKEYED: the peer's CREATE_CHILD_SA gets TEMPORARY_FAILURE (ChildSas.on_request)
            w.CREATE_CHILD_SA: ({SaState.ESTABLISHED, SaState.REKEYED}, self.children.on_request),
        }
        self._actions: list[Action] = []
        self._invalid_spi_scan: float | None = None  # when an unknown-SPI report last looked for an IKE SA

    @property
    def sas(self) -> dict[bytes, IkeSa]:
        """The IKE SAs by our SPI (read-only use: status, tests)."""
        return self.ctx.table.sas

    @property
    def drops(self):
        return self.ctx.drops

    # ----------------------------------------------------------------- the contract

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """A UDP payload from port 500 or 4500, exactly as received."""
        self._emit(self._receive(data, addr, now))

    def handle_timer(self, now: float) -> None:
        actions: list[Action] = []
        for sa in self.ctx.table.due(now):
            actions += self._timers(sa, now)
        self._emit(actions)

    def next_deadline(self) -> float | None:
        return self.ctx.table.next_deadline()

    def drain_actions(self) -> list[Action]:
        actions, self._actions = self._actions, []
        return actions

    def status(self, now: float) -> IkeStatus:
        return snapshot(self.ctx)

    # ----------------------------------------------------------------- role-specific inputs

    def connect(self, peer_addr: str, local_addr: str, now: float, *, peer_port: int = w.IKE_PORT,
                local_port: int = w.IKE_PORT) -> None:
        """Start an IKE SA as initiator."""
        self._emit(self.init.connect(now, (peer_addr, peer_port), (local_addr, local_port)))

    def rekey_child(self, now: float, *, spi_in: int | None = None) -> None:
        """Rekey the child SA with inbound SPI `spi_in` (every child SA when None)."""
        for sa in self._established():
            for child in list(sa.children.values()):
                if spi_in is None or int.from_bytes(child.spi_in, "big") == spi_in:
                    self._actions += self.window.request(sa, now, RekeyChild(child.spi_in))
        self._emit([])

    def rekey_ike(self, now: float) -> None:
        for sa in self._established():
            self._actions += self.window.request(sa, now, RekeyIke())
        self._emit([])

    def delete_child(self, spi_in: int, now: float) -> None:
        for sa in self._established():
            for child in list(sa.children.values()):
                if int.from_bytes(child.spi_in, "big") == spi_in:
                    self._actions += self.window.request(sa, now, DeleteChild(child.spi_in))
        self._emit([])

    def close(self, now: float) -> None:
        """Delete every established IKE SA (INFORMATIONAL Delete), and forget the others."""
        for sa in self.ctx.table:
            if sa.established:
                self.ctx.table.touch(sa)
                self._actions += self.window.request(sa, now, DeleteIke())
            else:
                self.ctx.table.forget(sa)
        self._emit([])

    def close_ike_sa(self, name: str, now: float, *, reason: str = "closed", notify_peer: bool = True) -> None:
        """Close one IKE SA (by its name, our SPI in hex) at once: a Delete toward the peer when it is
        established and nothing else is in flight (no retransmission: the SA is gone right away),
        then DeleteChildSa for its children and IkeSaClosed. Unknown names give no actions."""
        self._emit(self.info.close_ike_sa(name, reason, notify_peer))

    def reset(self, now: float) -> None:
        """Back to a clean state (a conformance tester's step between test parts): every IKE SA,
        established or half-open, closed at once without a word to its peer, with its children."""
        for sa in list(self.ctx.table):
            if sa.established:
                self._actions += self.info.close_ike_sa(sa.name, "reset", notify_peer=False)
            else:
                self.ctx.table.forget(sa)
        self._emit([])

    def invalid_spi(self, peer_addr: str, spi: int, now: float) -> None:
        """ESP from `peer_addr` on SPI `spi`, which no child SA has: an INFORMATIONAL with
        N(INVALID_SPI) naming it over an IKE SA with that peer (RFC 7296 1.5, 2.21.4), if there is one.
        Rate-limited (2.21.4): one notice per IKE SA per INVALID_SPI_INTERVAL, and one look for an IKE
        SA per INVALID_SPI_SCAN of any source, so a flood of bogus ESP costs neither CPU nor messages."""
        if self._invalid_spi_scan is not None and now - self._invalid_spi_scan < INVALID_SPI_SCAN:
            return
        self._invalid_spi_scan = now
        sa = next((x for x in self.ctx.table.established() if x.peer_addr == peer_addr), None)
        if sa is None or (sa.invalid_spi_noticed is not None and now - sa.invalid_spi_noticed < INVALID_SPI_INTERVAL):
            return
        sa.invalid_spi_noticed = now
        self.ctx.log(sa, f"ESP on unknown SPI {spi:08x} from {peer_addr}: N(INVALID_SPI)")
        self._emit(self.window.request(sa, now, InvalidSpiNotice(spi.to_bytes(4, "big"))))

    def check_liveness(self, now: float) -> None:
        for sa in self._established():
            self._actions += self.window.request(sa, now, Dpd())
        self._emit([])

    # ----------------------------------------------------------------- plumbing

    def _emit(self, actions: list[Action]) -> None:
        self._actions += actions
        self.ctx.table.reschedule()

    def _established(self) -> list[IkeSa]:
        sas = self.ctx.table.established()
        for sa in sas:
            self.ctx.table.touch(sa)
        return sas

    def _timers(self, sa: IkeSa, now: float) -> list[Action]:
        """What falls due on one IKE SA: retransmission, half-open expiry, DPD, IKE and child rekeys."""
        actions: list[Action] = []
        table, out = self.ctx.table, sa.outstanding
        if out is not None and now >= out.next_at:
            actions += self.window.retransmit(sa, now)
            if sa not in table:
                return actions
        if sa.expire_at is not None and now >= sa.expire_at:
            table.forget(sa)
            return actions
        if not sa.established:
            return actions
        if (self.config.dpd_interval and out is None and not sa.queue
                and now >= sa.last_heard + self.config.dpd_interval):
            actions += self.window.request(sa, now, Dpd())
        if sa.rekey_at is not None and now >= sa.rekey_at:
            sa.rekey_at = None
            actions += self.window.request(sa, now, RekeyIke())
        for child in list(sa.children.values()):
            if child.rekey_at is not None and now >= child.rekey_at:
                child.rekey_at = None
                actions += self.window.request(sa, now, RekeyChild(child.spi_in))
        return actions

    def _receive(self, data: bytes, addr: Addr, now: float) -> list[Action]:
        try:
            if addr.dport == w.NAT_T_PORT:
                kind, data = w.classify_udp4500(data)
                if kind != w.KIND_IKE:
                    return self.ctx.drop("not_ike")
            hdr = w.decode_header(data)
        except DecodeError as exc:
            if exc.reason == "bad_version" and data[17] >> 4 > 2:  # RFC 7296 2.5
                return self._outside_sa_answer(data, addr, w.N_INVALID_MAJOR_VERSION) + self.ctx.drop(exc.reason)
            return self.ctx.drop(exc.reason)
        self.ctx.messages_received[exchange_name(hdr.exchange)] += 1
        if hdr.exchange == w.IKE_SA_INIT and not hdr.is_response:
            return self.init.on_request(now, data, hdr, addr.src, addr.sport, addr.dst, addr.dport)
        sa = self.ctx.table.get(hdr.spi_r if hdr.from_initiator else hdr.spi_i)
        if sa is None or sa.original_initiator == hdr.from_initiator:
            if hdr.next_payload == w.PT_SK and hdr.exchange != w.IKE_SA_INIT:  # RFC 7296 1.5, 2.21.4
                return self._outside_sa_answer(data, addr, w.N_INVALID_IKE_SPI) + self.ctx.drop("unknown_spi")
            return self.ctx.drop("unknown_spi")
        self.ctx.table.touch(sa)
        if hdr.exchange == w.IKE_SA_INIT:
            return self._init_response(sa, now, data, hdr, addr)
        return self._on_message(sa, now, data, addr)

    def _reject(self, sa: IkeSa, data: bytes, exc: DecodeError) -> list[Action]:
        """RFC 7296 2.21.3: after the IKE SA is authenticated, a request with errors is answered with
        a notify of the error, never dropped in silence: UNSUPPORTED_CRITICAL_PAYLOAD naming the type
        (2.5, 3.2), else INVALID_SYNTAX. Only where the integrity check passed (an unauthenticated
        sender is not answered), and it uses up its Message ID like any answered request."""
        hdr = w.decode_header(data)
        if not exc.authenticated or hdr.is_response or hdr.message_id != sa.expected_mid:
            return []
        sa.expected_mid += 1
        request = w.Message(hdr.spi_i, hdr.spi_r, hdr.exchange, hdr.message_id)
        if isinstance(exc, UnsupportedCriticalPayload):
            return self.ctx.respond(sa, request, [w.Notify(w.N_UNSUPPORTED_CRITICAL_PAYLOAD, bytes([exc.payload_type]))])
        return self.ctx.respond(sa, request, [w.Notify(w.N_INVALID_SYNTAX)])

    def _outside_sa_answer(self, data: bytes, addr: Addr, ntype: int) -> list[Action]:
        """RFC 7296 1.5: to a request we cannot process (a higher major version, an unknown IKE SPI),
        a response without cryptographic protection, to where it came from, with its SPIs, Message
        ID and exchange type copied and one notify without data. Never to a response (2.21.4: no
        answer to a response, so no message loop)."""
        if len(data) < w.HEADER_LEN or data[19] & w.FLAG_RESPONSE:
            return []
        spi_i, spi_r, exchange, mid = data[0:8], data[8:16], data[18], int.from_bytes(data[20:24], "big")
        reply = w.Message(spi_i, spi_r, exchange, mid, [w.Notify(ntype)], response=True)
        return [self.ctx.send_to(addr.src, addr.sport, addr.dport, reply.encode())]

    def _init_response(self, sa: IkeSa, now: float, data: bytes, hdr: w.Header, addr: Addr) -> list[Action]:
        if sa.state is not SaState.INIT_SENT or hdr.message_id != 0 or sa.outstanding is None:
            return self.ctx.drop("unexpected_response")
        try:
            msg = w.decode_message(data)
        except DecodeError as exc:
            return self.ctx.drop(exc.reason)
        sa.outstanding = None
        return self.init.on_response(sa, now, msg, data, addr.src, addr.sport, addr.dport)

    def _on_message(self, sa: IkeSa, now: float, data: bytes, addr: Addr) -> list[Action]:
        if sa.cipher_in is None:
            return self.ctx.drop("no_keys")
        try:
            msg = w.decode_message(data, sa.cipher_in)
        except DecodeError as exc:
            return self._reject(sa, data, exc) + self.ctx.drop(exc.reason)
        if not msg.encrypted:
            return self.ctx.drop("not_encrypted")
        sa.last_heard = now
        if msg.response:
            return self.window.on_response(sa, now, msg)
        sa.request_from = (addr.src, addr.sport, addr.dport)
        if sa.last_response and msg.message_id == sa.last_response[0] and msg.message_id == sa.expected_mid - 1:
            self.ctx.drops["retransmitted_request"] += 1
            return [self.ctx.reply(sa, sa.last_response[1])]
        if msg.message_id != sa.expected_mid:
            return self.ctx.drop("bad_message_id")
        sa.expected_mid += 1
        if addr.dport == w.NAT_T_PORT and (not sa.nat_local or sa.local_port != w.NAT_T_PORT):
            # the move to port 4500, then the peer's NAT mapping; a host behind a NAT does not follow
            # a mapping once on 4500 (RFC 7296 2.23). IKE's port does not decide ESP's encapsulation:
            # that follows the NAT detection (sa.encap, from IKE_SA_INIT). Without a NAT either side
            # may choose (2.23), and a peer that floats to 4500 anyway (strongSwan does, for MOBIKE)
            # with the kernel's XFRM drops UDP-encapsulated ESP on an SA it set up without a NAT
            sa.local_port, sa.peer_addr, sa.peer_port = w.NAT_T_PORT, addr.src, addr.sport
        states, handler = self.requests.get(msg.exchange, ((), None))
        if sa.state in states:
            return handler(sa, now, msg)
        return self.ctx.drop("not_established" if not sa.established else "unexpected_exchange")
