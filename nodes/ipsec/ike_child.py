"""Child SAs (RFC 7296 1.3, 2.9, 2.17): negotiated in IKE_AUTH and CREATE_CHILD_SA, both roles, with
traffic selector narrowing and PFS, and rekeyed (RFC 7296 1.3.3, the old child deleted after)."""
from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from nodes.ipsec import ike_crypto as kc
from nodes.ipsec import ike_proposals as props
from nodes.ipsec import traffic_selectors as tsel
from nodes.ipsec.ike_actions import Action
from nodes.ipsec.ike_config import UserPolicy
from nodes.ipsec.ike_context import IkeContext
from nodes.ipsec.ike_state import ChildError, ChildOffer, ChildSa, DeleteChild, IkeSa, RekeyChild, SaState, child_action
from nodes.ipsec.ike_window import RequestWindow
from nodes.wire import ikev2 as w


class ChildSas:
    def __init__(self, ctx: IkeContext, window: RequestWindow, rekey):
        self.ctx, self.window, self.rekey = ctx, window, rekey

    def on_request(self, sa: IkeSa, now: float, msg: w.Message) -> list[Action]:
        if sa.state is SaState.REKEYED:
            # RFC 7296 2.25, 2.25.2: a successor took this IKE SA's place and its Delete is awaited,
            # a temporary condition; nothing is created or rekeyed on it any more
            self.ctx.log(sa, "CREATE_CHILD_SA on a rekeyed IKE SA: TEMPORARY_FAILURE")
            return self.ctx.respond(sa, msg, [w.Notify(w.N_TEMPORARY_FAILURE)])
        sa_p = msg.get(w.SecurityAssociation)
        if sa_p is not None and sa_p.proposals and sa_p.proposals[0].protocol == w.PROTO_IKE:
            return self.rekey.on_request(sa, now, msg, sa_p)
        rekey = msg.notify(w.N_REKEY_SA)
        old = None
        if rekey is not None:
            old = next((c for c in sa.children.values() if c.spi_out == rekey.spi), None)
            if old is None:
                return self.ctx.respond(sa, msg, [w.Notify(w.N_CHILD_SA_NOT_FOUND, b"", w.PROTO_ESP, rekey.spi)])
        if msg.get(w.Nonce) is None:
            return self.ctx.respond(sa, msg, [w.Notify(w.N_INVALID_SYNTAX)])
        try:
            body, child = self.responder_child(sa, now, msg, ike_auth=False, rekey_of=old)
        except ChildError as exc:
            self.ctx.refused_child(sa, exc)
            return self.ctx.respond(sa, msg, [w.Notify(exc.notify, exc.data)])
        self.ctx.log(sa, f"child SA {child.spi_in.hex()} created" + (f" rekeying {old.spi_in.hex()}" if old else ""))
        mine = sa.outstanding.request if sa.outstanding is not None else None
        if old is not None and isinstance(mine, RekeyChild) and mine.old == old.spi_in:
            nonce_r = next(p.data for p in body if isinstance(p, w.Nonce))
            mine.collision = (child.spi_in, msg.get(w.Nonce).data, nonce_r)
            self.ctx.log(sa, f"rekey collision on child SA {old.spi_in.hex()}: the peer rekeys it too")
        return self.ctx.respond(sa, msg, body) + [child_action(sa, child, replaces=old.spi_in if old else None)]

    def responder_child(self, sa: IkeSa, now: float, request: w.Message, ike_auth: bool,
                        rekey_of: ChildSa | None = None) -> tuple[list, ChildSa | None]:
        """Negotiate a child SA from the peer's SA/TSi/TSr (and CP in IKE_AUTH); payloads for the reply."""
        out: list = []
        cp = request.get(w.Configuration)
        if ike_auth and cp is not None and cp.cfg_type == w.CFG_REQUEST and self.ctx.config.allocator:
            if sa.virtual_ip is None:
                addr = self.ctx.config.allocator.allocate(sa.peer_id)
                if addr is None:
                    raise ChildError(w.N_INTERNAL_ADDRESS_FAILURE, detail="address pool exhausted")
                sa.virtual_ip = str(addr)
            out.append(self.cp_reply(sa))
        sa_p, tsi, tsr = request.get(w.SecurityAssociation), request.get(w.TSi), request.get(w.TSr)
        if ike_auth and sa_p is None and tsi is None and tsr is None:
            return out, None  # childless IKE SA
        if sa_p is None or tsi is None or tsr is None:
            raise ChildError(w.N_INVALID_SYNTAX, detail="SA, TSi or TSr missing")
        ke = request.get(w.KeyExchange)
        spi_in = props.new_spi(4, self.ctx.random)
        suites = self.ctx.esp_suites_auth if ike_auth else self.ctx.esp_suites
        if ke is not None and not ike_auth:
            suites = props.with_pfs(suites, ke.group)
        sel = props.select(suites, sa_p, w.PROTO_ESP, spi_in, dh_required=ke is not None, ignore_dh=ike_auth)
        if sel is None:
            raise ChildError(w.N_NO_PROPOSAL_CHOSEN, detail=(
                f"offered {props.describe_offer(sa_p)}; configured {', '.join(self.ctx.config.esp_proposals)}"))
        g_ir, ke_reply = b"", None
        if ke is not None and not ike_auth:
            if ke.group != sel.suite.dh:
                raise ChildError(w.N_INVALID_KE_PAYLOAD, sel.suite.dh.to_bytes(2, "big"))
            try:
                private, public = kc.DH_GROUPS[ke.group].generate(self.ctx.random)
                g_ir = kc.DH_GROUPS[ke.group].shared(private, ke.data)
            except kc.DhError as exc:
                raise ChildError(w.N_INVALID_SYNTAX, detail=str(exc)) from exc
            ke_reply = w.KeyExchange(ke.group, public)
        if rekey_of is not None:
            allowed_remote, allowed_local = rekey_of.ts_remote, rekey_of.ts_local
        else:
            user = sa.user or UserPolicy()
            remote = user.remote_ts if user.remote_ts is not None else self.ctx.config.remote_ts
            allowed_remote = ([tsel.host(sa.virtual_ip)] if sa.virtual_ip
                              else [tsel.from_subnet(s) for s in remote])
            allowed_local = [tsel.from_subnet(s) for s in user.subnets]
        ts_i, ts_r = tsel.narrow(tsi.selectors, allowed_remote), tsel.narrow(tsr.selectors, allowed_local)
        if not ts_i or not ts_r:
            raise ChildError(w.N_TS_UNACCEPTABLE)
        nonce_i, nonce_r = (sa.nonce_i, sa.nonce_r) if ike_auth else (request.get(w.Nonce).data, self.ctx.random(32))
        keys = kc.derive_child_keys(sa.suite.prf, sa.keys.sk_d, sel.suite.encr, sel.suite.key_bits,
                                    sel.suite.integ, nonce_i, nonce_r, g_ir)
        child = ChildSa(spi_in, sel.peer_spi, sel.suite, keys.encr_i, keys.integ_i, keys.encr_r, keys.integ_r,
                        ts_r, ts_i, now, self.ctx.child_rekey_at(now))
        sa.children[spi_in] = child
        out.append(w.SecurityAssociation([sel.proposal]))
        if not ike_auth:
            out.append(w.Nonce(nonce_r))
        if ke_reply is not None:
            out.append(ke_reply)
        out += [w.TSi(ts_i), w.TSr(ts_r)]
        return out, child

    def cp_reply(self, sa: IkeSa) -> w.Configuration:
        attrs = [w.ConfigAttribute(w.INTERNAL_IP4_ADDRESS, IPv4Address(sa.virtual_ip).packed)]
        if self.ctx.config.netmask:
            attrs.append(w.ConfigAttribute(w.INTERNAL_IP4_NETMASK, IPv4Address(self.ctx.config.netmask).packed))
        attrs += [w.ConfigAttribute(w.INTERNAL_IP4_DNS, IPv4Address(d).packed) for d in self.ctx.config.dns]
        for subnet in (sa.user.subnets if sa.user else []):
            net = IPv4Network(subnet, strict=False)
            if net.prefixlen:
                attrs.append(w.ConfigAttribute(w.INTERNAL_IP4_SUBNET,
                                               net.network_address.packed + net.netmask.packed))
        return w.Configuration(w.CFG_REPLY, attrs)

    def initiator_child(self, sa: IkeSa, now: float, msg: w.Message, offer: ChildOffer,
                        g_ir: bytes = b"") -> ChildSa:
        sa_p = msg.get(w.SecurityAssociation)
        sel = props.accept_reply(offer.suites, sa_p, w.PROTO_ESP) if sa_p is not None else None
        if sel is None or len(sel.peer_spi) != 4:
            raise ChildError(w.N_NO_PROPOSAL_CHOSEN, detail="responder chose no ESP proposal we offered")
        tsi, tsr = msg.get(w.TSi), msg.get(w.TSr)
        if (tsi is None or tsr is None or not tsel.is_subset(tsi.selectors, offer.ts_i)
                or not tsel.is_subset(tsr.selectors, offer.ts_r)):
            raise ChildError(w.N_TS_UNACCEPTABLE, detail="responder's traffic selectors are not a narrowing")
        keys = kc.derive_child_keys(sa.suite.prf, sa.keys.sk_d, sel.suite.encr, sel.suite.key_bits,
                                    sel.suite.integ, offer.nonce_i, offer.nonce_r, g_ir)
        child = ChildSa(offer.spi_in, sel.peer_spi, sel.suite, keys.encr_r, keys.integ_r, keys.encr_i,
                        keys.integ_i, tsi.selectors, tsr.selectors, now, self.ctx.child_rekey_at(now))
        sa.children[child.spi_in] = child
        return child

    def build_rekey(self, sa: IkeSa, now: float, request: RekeyChild):
        old = sa.children.get(request.old)
        if request.replacing is not None:
            ts_local, ts_remote = request.replacing
        elif old is None:
            return None
        else:
            ts_local, ts_remote = old.ts_local, old.ts_remote
        suites = self.ctx.esp_suites
        offer = request.offer = ChildOffer(props.new_spi(4, self.ctx.random), suites, ts_local, ts_remote,
                                           self.ctx.random(32))
        payloads: list = [] if request.replacing is not None else [w.Notify(w.N_REKEY_SA, b"", w.PROTO_ESP, old.spi_in)]
        payloads += [props.sa_payload(suites, w.PROTO_ESP, offer.spi_in), w.Nonce(offer.nonce_i)]
        group = suites[0].dh
        if group:  # PFS
            offer.dh, public = kc.DH_GROUPS[group].generate(self.ctx.random)
            offer.group = group
            payloads.append(w.KeyExchange(group, public))
        payloads += [w.TSi(ts_local), w.TSr(ts_remote)]
        return w.CREATE_CHILD_SA, payloads, []

    def on_rekey_response(self, sa: IkeSa, now: float, msg: w.Message, request: RekeyChild) -> list[Action]:
        old, offer = sa.children.get(request.old), request.offer
        try:
            errors = msg.errors()
            if errors:
                raise ChildError(errors[0].type)
            nonce, ke, g_ir = msg.get(w.Nonce), msg.get(w.KeyExchange), b""
            if nonce is None:
                raise ChildError(w.N_INVALID_SYNTAX, detail="no nonce")
            if offer.group:
                if ke is None or ke.group != offer.group:
                    raise ChildError(w.N_INVALID_KE_PAYLOAD, detail="PFS key exchange missing")
                try:
                    g_ir = kc.DH_GROUPS[ke.group].shared(offer.dh, ke.data)
                except kc.DhError as exc:
                    raise ChildError(w.N_INVALID_SYNTAX, detail=str(exc)) from exc
            offer.nonce_r = nonce.data
            child = self.initiator_child(sa, now, msg, offer, g_ir)
        except ChildError as exc:
            sa.last_error = f"child rekey failed: {exc}"
            self.ctx.log(sa, sa.last_error)
            if exc.notify == w.N_NO_ADDITIONAL_SAS and old is not None and request.replacing is None:
                # RFC 7296 4: the peer will not have one more child SA: delete the old one, then create
                # a new one for its traffic selectors (no second rekey of it)
                old.rekey_at = None
                self.ctx.log(sa, f"NO_ADDITIONAL_SAS: replacing child SA {old.spi_in.hex()} (delete, then create)")
                return (self.window.request(sa, now, DeleteChild(old.spi_in)) +
                        self.window.request(sa, now, RekeyChild(old.spi_in, replacing=(old.ts_local, old.ts_remote))))
            if old is not None:
                old.rekey_at = self.ctx.child_rekey_at(now)
            return []
        if request.replacing is not None:
            self.ctx.log(sa, f"child SA {child.spi_in.hex()} created in place of {request.old.hex()}")
            return [child_action(sa, child, replaces=None)]
        self.ctx.log(sa, f"child SA {request.old.hex()} rekeyed to {child.spi_in.hex()}")
        actions: list[Action] = [child_action(sa, child, replaces=request.old)]
        if request.collision is not None and self._lost_collision(offer, request.collision):
            # ours holds the lowest of the four nonces: our new SA is the redundant one, we delete
            # it; the peer, whose exchange won, deletes the old SA (RFC 7296 2.8.1)
            self.ctx.log(sa, f"rekey collision lost: deleting our redundant child SA {child.spi_in.hex()}")
            if old is not None:
                old.rekey_at = None
            return actions + self.window.request(sa, now, DeleteChild(child.spi_in))
        if old is not None:
            actions += self.window.request(sa, now, DeleteChild(old.spi_in))
        return actions

    @staticmethod
    def _lost_collision(offer: ChildOffer, collision: tuple[bytes, bytes, bytes]) -> bool:
        """Whether the lowest of the four nonces (octet by octet, RFC 7296 2.8.1) is one of our exchange's."""
        _, peer_ni, our_nr = collision
        return min(offer.nonce_i, offer.nonce_r) < min(peer_ni, our_nr)
