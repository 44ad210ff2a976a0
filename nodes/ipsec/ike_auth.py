"""IKE_AUTH (RFC 7296 1.2, 2.15), both roles, with EAP-MD5 (RFC 7296 2.16): identities, AUTH
payloads (PSK; after EAP-MD5, which derives no MSK, keyed with SK_p as strongSwan does), the
configuration payload, the first child SA, and the responder's unique=replace."""
from __future__ import annotations

import hmac
from ipaddress import IPv4Address, IPv4Network

from nodes.ipsec import eap_md5
from nodes.ipsec import ike_crypto as kc
from nodes.ipsec import ike_proposals as props
from nodes.ipsec import traffic_selectors as tsel
from nodes.ipsec.ike_actions import Action, Established, Failed, notify_name
from nodes.ipsec.ike_config import id_text, make_id
from nodes.ipsec.ike_context import IkeContext
from nodes.ipsec.ike_state import (AuthRequest, ChildError, ChildOffer, DeleteIke, EapChallenge, IkeSa, SaState,
                                   child_action)
from nodes.ipsec.ike_window import RequestWindow
from nodes.wire import ikev2 as w
from nodes.wire.errors import DecodeError


class Authentication:
    def __init__(self, ctx: IkeContext, window: RequestWindow, children, info):
        self.ctx, self.window, self.children, self.info = ctx, window, children, info

    def send_auth(self, sa: IkeSa, now: float) -> list[Action]:
        cfg = self.ctx.config
        sa.my_id = make_id(cfg.local_id, w.IDi)
        spi_in = props.new_spi(4, self.ctx.random)
        ts_i = [tsel.ANY] if cfg.request_address else [tsel.from_subnet(s) for s in cfg.local_ts]
        ts_r = [tsel.from_subnet(s) for s in cfg.remote_ts]
        sa.pending_child = ChildOffer(spi_in, self.ctx.esp_suites_auth, ts_i, ts_r, sa.nonce_i, sa.nonce_r)
        payloads: list = [sa.my_id, w.Notify(w.N_INITIAL_CONTACT)]
        if cfg.remote_id:
            payloads.append(make_id(cfg.remote_id, w.IDr))
        if cfg.eap_password is None:
            payloads.append(w.Authentication(w.AUTH_SHARED_KEY, self.auth_data(sa, cfg.psk or b"", own=True)))
        if cfg.request_address:
            payloads.append(w.Configuration(w.CFG_REQUEST, [w.ConfigAttribute(w.INTERNAL_IP4_ADDRESS),
                                                            w.ConfigAttribute(w.INTERNAL_IP4_DNS)]))
        payloads += [props.sa_payload(self.ctx.esp_suites_auth, w.PROTO_ESP, spi_in), w.TSi(ts_i), w.TSr(ts_r)]
        sa.state = SaState.AUTH_SENT
        stage = "eap_start" if cfg.eap_password is not None else "psk"
        return self.window.send_request(sa, now, w.IKE_AUTH, payloads, AuthRequest(stage))

    def on_response(self, sa: IkeSa, now: float, msg: w.Message, request: AuthRequest) -> list[Action]:
        def fail(reason: str, notify: int | None = None, tell_peer: bool = False) -> list[Action]:
            self.ctx.log(sa, f"IKE_AUTH failed: {reason}")
            self.ctx.table.forget(sa)
            actions: list[Action] = [Failed(reason, notify, sa.peer_id, sa.peer_addr)]
            if tell_peer:  # RFC 7296 2.21.2: the initiator reports a bad responder AUTH in INFORMATIONAL
                data = self.ctx.message(sa, w.INFORMATIONAL, sa.next_mid,
                                     [w.Notify(w.N_AUTHENTICATION_FAILED)], False).encode(sa.cipher_out)
                actions.insert(0, self.ctx.send(sa, data))
            return actions

        if msg.notify(w.N_AUTHENTICATION_FAILED) is not None:
            return fail("AUTHENTICATION_FAILED", w.N_AUTHENTICATION_FAILED)
        stage = request.stage
        if stage in ("psk", "eap_start"):
            idr, auth = msg.get(w.IDr), msg.get(w.Authentication)
            if idr is None or auth is None:
                errors = msg.errors()
                if errors:
                    return fail(notify_name(errors[0].type), errors[0].type)
                return fail("IKE_AUTH response lacks IDr or AUTH")
            sa.peer_id_payload, sa.peer_id = idr, idr.text()
            if self.ctx.config.remote_id and sa.peer_id != id_text(self.ctx.config.remote_id):
                return fail(f"responder identity {sa.peer_id!r} is not {self.ctx.config.remote_id!r}",
                            w.N_AUTHENTICATION_FAILED, tell_peer=True)
            if self.ctx.config.psk is None or not self.auth_ok(sa, msg, self.ctx.config.psk):
                return fail("responder AUTH does not verify", w.N_AUTHENTICATION_FAILED, tell_peer=True)
            if stage == "psk":
                return self.auth_complete(sa, now, msg)
        if stage in ("eap_start", "eap"):
            eap = msg.get(w.EAP)
            if eap is None:
                return fail("EAP payload missing")
            try:
                packet = eap_md5.EapPacket.decode(eap.message)
            except DecodeError as exc:
                return fail(f"bad EAP packet: {exc}")
            if packet.code == eap_md5.CODE_SUCCESS:
                auth = w.Authentication(w.AUTH_SHARED_KEY, self.auth_data(sa, None, own=True))
                return self.window.send_request(sa, now, w.IKE_AUTH, [auth], AuthRequest("eap_auth"))
            if packet.code != eap_md5.CODE_REQUEST:
                return fail("EAP failure", w.N_AUTHENTICATION_FAILED)
            try:
                cfg = self.ctx.config
                identity = (cfg.eap_identity or id_text(cfg.local_id)).encode()
                answer = eap_md5.peer_respond(packet, identity, cfg.eap_password or b"")
            except DecodeError as exc:
                return fail(f"bad EAP request: {exc}")
            return self.window.send_request(sa, now, w.IKE_AUTH, [w.EAP(answer.encode())], AuthRequest("eap"))
        # stage eap_auth: the responder's AUTH keyed with SK_pr (EAP-MD5 has no MSK)
        if not self.auth_ok(sa, msg, None):
            return fail("responder EAP AUTH does not verify", w.N_AUTHENTICATION_FAILED, tell_peer=True)
        return self.auth_complete(sa, now, msg)

    def auth_complete(self, sa: IkeSa, now: float, msg: w.Message) -> list[Action]:
        """Final IKE_AUTH response, both peers authenticated: configuration and the first child SA."""
        sa.state, sa.expire_at = SaState.ESTABLISHED, None
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
            if self.ctx.config.request_address and sa.virtual_ip is None:
                raise ChildError(w.N_INTERNAL_ADDRESS_FAILURE, detail="no virtual IP assigned")
            child = self.children.initiator_child(sa, now, msg, sa.pending_child)
        except ChildError as exc:
            self.ctx.log(sa, f"child SA failed: {exc}")
            actions.append(Failed(str(exc), exc.notify, sa.peer_id, sa.peer_addr))
            return actions + self.window.request(sa, now, DeleteIke())
        self.ctx.arm_rekey(sa, now)
        self.ctx.log(sa, f"established with {sa.peer_id}, virtual IP {sa.virtual_ip}")
        return [child_action(sa, child), self.established_event(sa)]

    def on_request(self, sa: IkeSa, now: float, msg: w.Message) -> list[Action]:
        def fail(reason: str, extra: list | None = None) -> list[Action]:
            self.ctx.log(sa, f"IKE_AUTH from {sa.peer_id or '?'} failed: {reason}")
            actions = self.ctx.respond(sa, msg, (extra or []) + [w.Notify(w.N_AUTHENTICATION_FAILED)])
            sa.state = SaState.FAILED
            sa.expire_at = now + self.ctx.config.half_open_timeout  # keep answering retransmissions
            return actions + [Failed(reason, w.N_AUTHENTICATION_FAILED, sa.peer_id, sa.peer_addr)]

        if sa.state is SaState.INIT_DONE:
            idi = msg.get(w.IDi)
            if idi is None:
                return fail("IKE_AUTH without IDi")
            sa.peer_id_payload, sa.peer_id = idi, idi.text()
            sa.user = self.ctx.config.users.get(sa.peer_id)
            if sa.user is None:
                return fail(f"unknown identity {sa.peer_id!r}")
            sa.my_id = make_id(self.ctx.config.local_id, w.IDr)
            if msg.get(w.Authentication) is not None:
                if sa.user.psk is None or not self.auth_ok(sa, msg, sa.user.psk):
                    return fail("pre-shared key AUTH does not verify")
                auth = w.Authentication(w.AUTH_SHARED_KEY, self.auth_data(sa, sa.user.psk, own=True))
                return self.finish_auth(sa, now, msg, msg, [sa.my_id, auth])
            gateway_psk = sa.user.gateway_psk or self.ctx.config.gateway_psk
            if sa.user.password is None or gateway_psk is None:
                return fail("no AUTH and no EAP password configured for this identity")
            sa.auth_request = msg
            identifier = self.ctx.random(1)[0]
            packet, challenge = eap_md5.md5_challenge(identifier, self.ctx.random)
            sa.eap = EapChallenge(identifier, challenge)
            sa.state = SaState.EAP
            auth = w.Authentication(w.AUTH_SHARED_KEY, self.auth_data(sa, gateway_psk, own=True))
            return self.ctx.respond(sa, msg, [sa.my_id, auth, w.EAP(packet.encode())])
        if sa.state is SaState.EAP:
            eap = msg.get(w.EAP)
            try:
                packet = eap_md5.EapPacket.decode(eap.message) if eap else None
            except DecodeError:
                packet = None
            if packet is None or not eap_md5.server_verify(packet, sa.eap.identifier, sa.eap.challenge,
                                                           sa.user.password):
                failure = eap_md5.EapPacket(eap_md5.CODE_FAILURE, sa.eap.identifier)
                return fail("EAP-MD5 response does not verify", [w.EAP(failure.encode())])
            sa.state = SaState.EAP_DONE
            success = eap_md5.EapPacket(eap_md5.CODE_SUCCESS, sa.eap.identifier)
            return self.ctx.respond(sa, msg, [w.EAP(success.encode())])
        # eap_done: the initiator's AUTH keyed with SK_pi
        if not self.auth_ok(sa, msg, None):
            return fail("AUTH after EAP does not verify")
        auth = w.Authentication(w.AUTH_SHARED_KEY, self.auth_data(sa, None, own=True))
        return self.finish_auth(sa, now, msg, sa.auth_request, [auth])

    def finish_auth(self, sa: IkeSa, now: float, current: w.Message, request: w.Message,
                    head: list) -> list[Action]:
        """Responder: the peer is authenticated; answer (`current`) the CP, SA and TS of its first
        IKE_AUTH request (`request`, the same message unless EAP came in between)."""
        sa.state, sa.expire_at = SaState.ESTABLISHED, None
        self.ctx.table.settle(sa)
        child, body = None, []
        try:
            body, child = self.children.responder_child(sa, now, request, ike_auth=True)
        except ChildError as exc:
            self.ctx.refused_child(sa, exc)
            body = body + [w.Notify(exc.notify, exc.data)]
            if sa.virtual_ip:
                body.insert(0, self.children.cp_reply(sa))
        actions = self.ctx.respond(sa, current, head + body)
        if sa.virtual_ip:
            sa.dns = list(self.ctx.config.dns)
        sa.subnets = list(sa.user.subnets) if sa.user else []
        if child is not None:
            actions.append(child_action(sa, child))
        self.ctx.arm_rekey(sa, now)
        self.ctx.log(sa, f"established with {sa.peer_id}, virtual IP {sa.virtual_ip}")
        return actions + [self.established_event(sa)] + self.replace_older(sa, now)

    def replace_older(self, sa: IkeSa, now: float) -> list[Action]:
        """unique=replace: the peer identity's other established IKE SAs go (after `sa`'s Established,
        so a runtime sees the new tunnel first and the old one's IkeSaClosed after)."""
        self.ctx.table.index_peer(sa)
        if self.ctx.config.unique != "replace" or not sa.peer_id:
            return []
        actions: list[Action] = []
        for other in self.ctx.table.with_peer(sa.peer_id):
            if other is not sa and other.established:
                self.ctx.log(other, f"replaced by {sa.name} (unique=replace)")
                actions += self.info.close_ike_sa(other.name, "replaced by a new IKE SA of the same identity", True)
        return actions

    def established_event(self, sa: IkeSa) -> Established:
        return Established(sa.name, sa.role, sa.peer_id or "", sa.peer_addr, sa.peer_port, sa.encap,
                           sa.virtual_ip, sa.netmask, list(sa.dns), list(sa.subnets))

    def auth_data(self, sa: IkeSa, secret: bytes | None, own: bool) -> bytes:
        """AUTH of our side (own) or the one expected from the peer; secret None means EAP without MSK."""
        if secret is None:
            secret = sa.sk_p(own)
        id_payload = sa.my_id if own else sa.peer_id_payload
        signer_is_initiator = own == sa.original_initiator
        message = sa.init_request if signer_is_initiator else sa.init_response
        nonce = sa.nonce_r if signer_is_initiator else sa.nonce_i
        return kc.psk_auth(sa.suite.prf, secret, message, nonce, sa.sk_p(own), id_payload.id_prime())

    def auth_ok(self, sa: IkeSa, msg: w.Message, secret: bytes | None) -> bool:
        auth = msg.get(w.Authentication)
        return (auth is not None and auth.method == w.AUTH_SHARED_KEY
                and hmac.compare_digest(auth.data, self.auth_data(sa, secret, own=False)))
