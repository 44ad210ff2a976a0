"""IKE_SA_INIT (RFC 7296 1.2), both roles: proposals and key exchange (with the INVALID_KE_PAYLOAD
and COOKIE retries of the initiator), the IKE SA keys, and NAT detection (RFC 7296 2.23). A responder
under a flood answers with stateless cookies (RFC 7296 2.6, ike_cookie.py) while `cookie_threshold`
IKE SAs are half-open, and refuses new ones beyond `half_open_max` (drops: half_open_cap)."""
from __future__ import annotations

from nodes.ipsec import ike_crypto as kc
from nodes.ipsec import ike_proposals as props
from nodes.ipsec.ike_actions import Action, Failed, notify_name
from nodes.ipsec.ike_context import IkeContext
from nodes.ipsec.ike_cookie import CookieJar
from nodes.ipsec.ike_proposals import Suite
from nodes.ipsec.ike_state import IkeSa, InitRequest, SaState
from nodes.ipsec.ike_window import RequestWindow
from nodes.wire import ikev2 as w
from nodes.wire.errors import DecodeError, UnsupportedCriticalPayload


class InitialExchange:
    def __init__(self, ctx: IkeContext, window: RequestWindow, auth):
        self.ctx, self.window, self.auth = ctx, window, auth
        self.cookies = CookieJar(ctx.random)

    def connect(self, now: float, peer: tuple[str, int], local: tuple[str, int]) -> list[Action]:
        """A new IKE SA as initiator: its IKE_SA_INIT request."""
        sa = IkeSa(True, props.new_spi(8, self.ctx.random), bytes(8), local, peer, now)
        sa.dh_group = self.ctx.ike_suites[0].dh
        sa.nonce_i = self.ctx.random(32)
        self.ctx.table.add(sa)
        return self.send_init(sa, now)

    def send_init(self, sa: IkeSa, now: float) -> list[Action]:
        if sa.dh_private is None or sa.dh_public_group != sa.dh_group:
            # a new key only for a new group: a retry with a COOKIE resends "all other payloads
            # unchanged" (RFC 7296 2.6), the same KEi included
            sa.dh_private, sa.dh_public = kc.DH_GROUPS[sa.dh_group].generate(self.ctx.random)
            sa.dh_public_group = sa.dh_group
        public = sa.dh_public
        sa.tried_groups.add(sa.dh_group)
        sa.state = SaState.INIT_SENT
        sa.next_mid = 0
        payloads = [w.Notify(w.N_COOKIE, sa.cookie)] if sa.cookie else []
        payloads += [props.sa_payload(self.ctx.ike_suites, w.PROTO_IKE, b""), w.KeyExchange(sa.dh_group, public),
                     w.Nonce(sa.nonce_i)]
        payloads += self._nat_notifies(sa.spi_i, bytes(8), (sa.local_addr, sa.local_port),
                                       (sa.peer_addr, sa.peer_port))
        return self.window.send_request(sa, now, w.IKE_SA_INIT, payloads, InitRequest())

    def on_response(self, sa: IkeSa, now: float, msg: w.Message, data: bytes, src: str, sport: int,
                    dport: int) -> list[Action]:
        def fail(reason: str, notify: int | None = None) -> list[Action]:
            self.ctx.log(sa, f"IKE_SA_INIT failed: {reason}")
            self.ctx.table.forget(sa)
            return [Failed(reason, notify, None, sa.peer_addr)]

        cookie = msg.notify(w.N_COOKIE)
        if cookie is not None and sa.cookie is None:
            sa.cookie = cookie.data
            return self.send_init(sa, now)
        invalid_ke = msg.notify(w.N_INVALID_KE_PAYLOAD)
        if invalid_ke is not None:
            group = int.from_bytes(invalid_ke.data[:2], "big")
            offered = {s.dh for s in self.ctx.ike_suites}
            if len(invalid_ke.data) != 2 or group not in offered or group in sa.tried_groups:
                return fail(f"INVALID_KE_PAYLOAD asks for group {group}", w.N_INVALID_KE_PAYLOAD)
            self.ctx.log(sa, f"INVALID_KE_PAYLOAD: retrying with group {group}")
            sa.dh_group = group
            return self.send_init(sa, now)
        errors = msg.errors()
        if errors:
            return fail(notify_name(errors[0].type), errors[0].type)
        sa_p, ke, nonce = msg.get(w.SecurityAssociation), msg.get(w.KeyExchange), msg.get(w.Nonce)
        if sa_p is None or ke is None or nonce is None or msg.spi_r == bytes(8):
            return fail("IKE_SA_INIT response lacks SA, KE or Nonce")
        sel = props.accept_reply(self.ctx.ike_suites, sa_p, w.PROTO_IKE)
        if sel is None or sel.suite.dh != sa.dh_group or ke.group != sa.dh_group:
            return fail("responder chose a proposal we did not offer")
        try:
            g_ir = kc.DH_GROUPS[sa.dh_group].shared(sa.dh_private, ke.data)
        except kc.DhError as exc:
            return fail(str(exc))
        sa.spi_r, sa.nonce_r, sa.init_response = msg.spi_r, nonce.data, data
        self._install_keys(sa, sel.suite, g_ir)
        nat = self._nat_detected(sa, msg, sa.spi_r, (src, sport), (sa.local_addr, dport))
        if nat:
            sa.encap = True
            sa.local_port = sa.peer_port = w.NAT_T_PORT
        sa.next_mid = 1
        self.ctx.log(sa, f"IKE_SA_INIT done ({sel.suite.name()}, group {sa.dh_group}, nat={bool(nat)})")
        return self.auth.send_auth(sa, now)

    def on_request(self, now: float, data: bytes, hdr: w.Header, src: str, sport: int, dst: str,
                   dport: int) -> list[Action]:
        key = (hdr.spi_i, src, sport)
        known = self.ctx.table.half_open.get(key)
        if known is not None:
            if data == known.init_request and known.last_response:  # RFC 7296 2.1: the cached response
                self.ctx.drops["retransmitted_request"] += 1
                return [self.ctx.send(known, known.last_response[1])]
            # the same SPIi with another message (new Ni, KEi): a new IKE_SA_INIT, not a retransmission
            # ("a robust responder will do the IKE SA lookup using the whole packet", 2.1)
            self.ctx.table.forget(known)
        elif self.ctx.table.authenticated_from(hdr.spi_i, src):
            # its IKE_AUTH was already received: a late retransmission is ignored, never answered by a
            # new SA (2.1: no new response constructed for a request whose response is forgotten)
            return self.ctx.drop("retransmitted_init_after_auth")
        if hdr.spi_r != bytes(8) or hdr.message_id != 0:
            return self.ctx.drop("bad_init_request")
        if not self.ctx.config.users:
            return self.ctx.drop("not_a_responder")

        def error(ntype: int, payload: bytes = b"") -> list[Action]:
            self.ctx.drops[notify_name(ntype).lower()] += 1
            reply = w.Message(hdr.spi_i, bytes(8), w.IKE_SA_INIT, 0, [w.Notify(ntype, payload)], response=True)
            return [self.ctx.send_to(src, sport, dport, reply.encode())]

        try:
            msg = w.decode_message(data)
        except UnsupportedCriticalPayload as exc:  # RFC 7296 3.2: the data names the payload type
            return error(w.N_UNSUPPORTED_CRITICAL_PAYLOAD, bytes([exc.payload_type]))
        except DecodeError as exc:
            return self.ctx.drop(exc.reason)
        sa_p, ke, nonce = msg.get(w.SecurityAssociation), msg.get(w.KeyExchange), msg.get(w.Nonce)
        if sa_p is None or ke is None or nonce is None:
            return error(w.N_INVALID_SYNTAX)
        half_open, threshold = len(self.ctx.table.half_open), self.ctx.config.cookie_threshold
        if threshold is not None and half_open >= threshold:
            cookie = msg.payloads[0] if msg.payloads and isinstance(msg.payloads[0], w.Notify) else None
            if cookie is None or cookie.type != w.N_COOKIE:
                return error(w.N_COOKIE, self.cookies.make(nonce.data, src, hdr.spi_i, now))
            if not self.cookies.valid(cookie.data, nonce.data, src, hdr.spi_i, now):
                # 2.6: a wrong cookie is ignored, the request handled as if it had none: a new cookie
                self.ctx.drops["invalid_cookie"] += 1
                return error(w.N_COOKIE, self.cookies.make(nonce.data, src, hdr.spi_i, now))
        if half_open >= self.ctx.config.half_open_max:
            return self.ctx.drop("half_open_cap")
        spi_r = props.new_spi(8, self.ctx.random)
        # the chosen proposal of an initial exchange carries no SPI (3.3.1: SPI Size zero)
        sel, wanted = props.select_for_ke(self.ctx.ike_suites, sa_p, ke.group, b"")
        if sel is None:
            if wanted is None:
                return error(w.N_NO_PROPOSAL_CHOSEN)
            return error(w.N_INVALID_KE_PAYLOAD, wanted.to_bytes(2, "big"))
        try:
            private, public = kc.DH_GROUPS[ke.group].generate(self.ctx.random)
            g_ir = kc.DH_GROUPS[ke.group].shared(private, ke.data)
        except kc.DhError:
            return error(w.N_INVALID_SYNTAX)
        sa = IkeSa(False, hdr.spi_i, spi_r, (dst, dport), (src, sport), now)
        sa.nonce_i, sa.nonce_r, sa.init_request, sa.dh_group = nonce.data, self.ctx.random(32), data, ke.group
        nat = self._nat_detected(sa, msg, bytes(8), (src, sport), (dst, dport))
        sa.encap = bool(nat)  # NAT detected (or faked): not the port IKE came on (see ike.py)
        payloads = [w.SecurityAssociation([sel.proposal]), w.KeyExchange(ke.group, public), w.Nonce(sa.nonce_r)]
        if nat is not None:
            payloads += self._nat_notifies(sa.spi_i, sa.spi_r, (dst, dport), (src, sport))
        reply = self.ctx.message(sa, w.IKE_SA_INIT, 0, payloads, response=True).encode()
        sa.init_response = reply
        self._install_keys(sa, sel.suite, g_ir)
        sa.state, sa.expected_mid = SaState.INIT_DONE, 1
        sa.expire_at = now + self.ctx.config.half_open_timeout
        sa.last_response = (0, reply)
        self.ctx.table.add(sa, key)
        self.ctx.log(sa, f"IKE_SA_INIT from {src}:{sport} ({sel.suite.name()}, group {ke.group}, nat={bool(nat)})")
        return [self.ctx.send(sa, reply)]

    def _install_keys(self, sa: IkeSa, suite: Suite, g_ir: bytes) -> None:
        """The IKE SA's keys from IKE_SA_INIT's nonces, SPIs and shared secret (RFC 7296 2.14)."""
        skeyseed = kc.skeyseed_initial(suite.prf, sa.nonce_i, sa.nonce_r, g_ir)
        keys = kc.derive_ike_keys(suite.prf, suite.encr, suite.key_bits, suite.integ, skeyseed, sa.nonce_i,
                                  sa.nonce_r, sa.spi_i, sa.spi_r)
        sa.install_keys(suite, self.ctx.random, keys)

    def _nat_notifies(self, spi_i: bytes, spi_r: bytes, local: tuple[str, int], peer: tuple[str, int]) -> list:
        src = kc.nat_detection_hash(spi_i, spi_r, *local)
        if self.ctx.config.force_encap:
            src = self.ctx.random(20)
        return [w.Notify(w.N_NAT_DETECTION_SOURCE_IP, src),
                w.Notify(w.N_NAT_DETECTION_DESTINATION_IP, kc.nat_detection_hash(spi_i, spi_r, *peer))]

    def _nat_detected(self, sa: IkeSa, msg: w.Message, spi_r: bytes, src: tuple[str, int],
                      dst: tuple[str, int]) -> bool | None:
        """True if a NAT sits between us (or the peer fakes one), None if the peer does no NAT-T; which
        side's NAT it is goes into sa.nat_local / sa.nat_remote (RFC 7296 2.23)."""
        srcs = [p.data for p in msg.payloads if isinstance(p, w.Notify) and p.type == w.N_NAT_DETECTION_SOURCE_IP]
        dsts = [p.data for p in msg.payloads
                if isinstance(p, w.Notify) and p.type == w.N_NAT_DETECTION_DESTINATION_IP]
        if not srcs or not dsts:
            return None
        sa.nat_remote = kc.nat_detection_hash(msg.spi_i, spi_r, *src) not in srcs
        sa.nat_local = kc.nat_detection_hash(msg.spi_i, spi_r, *dst) not in dsts
        return sa.nat_remote or sa.nat_local or self.ctx.config.force_encap
