"""IKE SA rekeying (RFC 7296 1.3.2, 2.18), both roles: CREATE_CHILD_SA with an IKE proposal, the
INVALID_KE_PAYLOAD retry of the initiator, and the successor SA that takes over the child SAs, the
peer's state and the requests still queued (RFC 7296 2.8). The rekey's initiator deletes the old SA.

Not done: the simultaneous IKE SA rekey collision of RFC 7296 2.8.1 (ike_child handles the
child SA's)."""
from __future__ import annotations

from nodes.ipsec import ike_crypto as kc
from nodes.ipsec import ike_proposals as props
from nodes.ipsec.ike_actions import Action, IkeSaRekeyed
from nodes.ipsec.ike_context import IkeContext
from nodes.ipsec.ike_proposals import Suite
from nodes.ipsec.ike_state import DeleteIke, IkeSa, RekeyIke, SaState
from nodes.ipsec.ike_window import RequestWindow
from nodes.wire import ikev2 as w

TAKEN_OVER = ("my_id", "peer_id_payload", "peer_id", "user", "virtual_ip", "netmask", "dns", "subnets",
              "nat_local", "nat_remote")


class IkeRekey:
    def __init__(self, ctx: IkeContext, window: RequestWindow):
        self.ctx, self.window = ctx, window

    def build(self, sa: IkeSa, now: float, request: RekeyIke):
        group = request.group or sa.suite.dh
        request.group, request.spi, request.nonce_i = group, props.new_spi(8, self.ctx.random), self.ctx.random(32)
        request.tried.append(group)
        request.dh, public = kc.DH_GROUPS[group].generate(self.ctx.random)
        # the proposals with the group of our KE first (RFC 7296 1.3.2), so a responder that picks
        # the first acceptable proposal needs no INVALID_KE_PAYLOAD round trip
        request.suites = sorted(self.ctx.ike_suites, key=lambda s: s.dh != group)
        payloads = [props.sa_payload(request.suites, w.PROTO_IKE, request.spi), w.Nonce(request.nonce_i),
                    w.KeyExchange(group, public)]
        return w.CREATE_CHILD_SA, payloads, []

    def on_response(self, sa: IkeSa, now: float, msg: w.Message, request: RekeyIke) -> list[Action]:
        invalid_ke = msg.notify(w.N_INVALID_KE_PAYLOAD)
        if invalid_ke is not None and len(invalid_ke.data) == 2:
            group = int.from_bytes(invalid_ke.data, "big")
            if group in {s.dh for s in self.ctx.ike_suites} and group not in request.tried:
                self.ctx.log(sa, f"IKE rekey: INVALID_KE_PAYLOAD, retrying with group {group}")
                return self.window.request(sa, now, RekeyIke(group, list(request.tried)))
        sel = None
        if not msg.errors() and msg.get(w.SecurityAssociation):
            sel = props.accept_reply(request.suites, msg.get(w.SecurityAssociation), w.PROTO_IKE)
        ke, nonce = msg.get(w.KeyExchange), msg.get(w.Nonce)
        if sel is None or ke is None or nonce is None or ke.group != request.group or len(sel.peer_spi) != 8:
            sa.last_error = "IKE rekey refused or malformed"
            self.ctx.log(sa, sa.last_error)
            self.ctx.arm_rekey(sa, now)
            return []
        try:
            g_ir = kc.DH_GROUPS[ke.group].shared(request.dh, ke.data)
        except kc.DhError:
            return []
        new = self.successor(sa, now, True, request.spi, sel.peer_spi, sel.suite, g_ir, request.nonce_i, nonce.data)
        actions: list[Action] = [IkeSaRekeyed(sa.name, new.name)] + self.window.move_queue(sa, new, now)
        actions += self.window.request(sa, now, DeleteIke())
        sa.state = SaState.REKEYED
        return actions

    def on_request(self, sa: IkeSa, now: float, msg: w.Message, sa_p: w.SecurityAssociation) -> list[Action]:
        ke, nonce = msg.get(w.KeyExchange), msg.get(w.Nonce)
        if ke is None or nonce is None:
            return self.ctx.respond(sa, msg, [w.Notify(w.N_INVALID_SYNTAX)])
        spi = props.new_spi(8, self.ctx.random)
        sel, wanted = props.select_for_ke(self.ctx.ike_suites, sa_p, ke.group, spi)
        if sel is None:
            if wanted is None:
                return self.ctx.respond(sa, msg, [w.Notify(w.N_NO_PROPOSAL_CHOSEN)])
            return self.ctx.respond(sa, msg, [w.Notify(w.N_INVALID_KE_PAYLOAD, wanted.to_bytes(2, "big"))])
        if len(sel.peer_spi) != 8:
            return self.ctx.respond(sa, msg, [w.Notify(w.N_INVALID_SYNTAX)])
        try:
            private, public = kc.DH_GROUPS[ke.group].generate(self.ctx.random)
            g_ir = kc.DH_GROUPS[ke.group].shared(private, ke.data)
        except kc.DhError:
            return self.ctx.respond(sa, msg, [w.Notify(w.N_INVALID_SYNTAX)])
        nonce_r = self.ctx.random(32)
        actions = self.ctx.respond(sa, msg, [w.SecurityAssociation([sel.proposal]), w.Nonce(nonce_r),
                                             w.KeyExchange(ke.group, public)])
        new = self.successor(sa, now, False, sel.peer_spi, spi, sel.suite, g_ir, nonce.data, nonce_r)
        sa.state = SaState.REKEYED  # the initiator of the rekey deletes it
        return actions + [IkeSaRekeyed(sa.name, new.name)] + self.window.move_queue(sa, new, now)

    def successor(self, sa: IkeSa, now: float, initiator: bool, spi_i: bytes, spi_r: bytes, suite: Suite,
                  g_ir: bytes, nonce_i: bytes, nonce_r: bytes) -> IkeSa:
        """The new IKE SA of an IKE rekey (RFC 7296 2.18): it takes over the children and the peer state."""
        new = IkeSa(initiator, spi_i, spi_r, (sa.local_addr, sa.local_port), (sa.peer_addr, sa.peer_port), now)
        skeyseed = kc.skeyseed_rekey(sa.suite.prf, sa.keys.sk_d, g_ir, nonce_i, nonce_r)
        new.install_keys(suite, self.ctx.random, kc.derive_ike_keys(suite.prf, suite.encr, suite.key_bits,
                                                                    suite.integ, skeyseed, nonce_i, nonce_r,
                                                                    spi_i, spi_r))
        new.nonce_i, new.nonce_r, new.state, new.encap = nonce_i, nonce_r, SaState.ESTABLISHED, sa.encap
        for attr in TAKEN_OVER:
            setattr(new, attr, getattr(sa, attr))
        new.children, sa.children, sa.rekeyed = sa.children, {}, True
        self.ctx.arm_rekey(new, now)
        self.ctx.table.add(new)
        self.ctx.log(sa, f"IKE SA rekeyed to {new.name}")
        return new
