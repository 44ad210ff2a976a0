"""INFORMATIONAL exchanges (RFC 7296 1.4, 2.4), both roles: liveness checks (DPD), deleting child
SAs and IKE SAs, and closing an IKE SA at once."""
from __future__ import annotations

from nodes.ipsec.ike_actions import Action, IkeSaClosed
from nodes.ipsec.ike_context import IkeContext
from nodes.ipsec.ike_state import DeleteChild, DeleteIke, Dpd, IkeSa, InvalidSpiNotice, SaState, delete_action
from nodes.wire import ikev2 as w


class Informational:
    def __init__(self, ctx: IkeContext):
        self.ctx = ctx

    # -- requests we send (built when the request window starts them) ------------------------
    def build_dpd(self, sa: IkeSa, now: float, request: Dpd):
        return w.INFORMATIONAL, [], []

    def build_delete_child(self, sa: IkeSa, now: float, request: DeleteChild):
        request.child = sa.children.pop(request.spi_in, None)
        if request.child is None:
            return None
        return w.INFORMATIONAL, [w.Delete(w.PROTO_ESP, [request.child.spi_in])], []

    @staticmethod
    def on_delete_child_response(sa: IkeSa, now: float, msg: w.Message, request: DeleteChild) -> list[Action]:
        """The peer took our Delete (RFC 7296 1.4.1): now the child SA leaves the data path."""
        return [delete_action(request.child, "deleted")]

    def build_invalid_spi(self, sa: IkeSa, now: float, request: InvalidSpiNotice):
        return w.INFORMATIONAL, [w.Notify(w.N_INVALID_SPI, request.spi)], []

    def build_delete_ike(self, sa: IkeSa, now: float, request: DeleteIke):
        return w.INFORMATIONAL, [w.Delete(w.PROTO_IKE)], []

    @staticmethod
    def on_empty_response(sa: IkeSa, now: float, msg: w.Message, request) -> list[Action]:
        return []

    def on_delete_ike_response(self, sa: IkeSa, now: float, msg: w.Message, request: DeleteIke) -> list[Action]:
        return self.close(sa, "deleted")

    # -- requests of the peer -----------------------------------------------------------------
    def on_request(self, sa: IkeSa, now: float, msg: w.Message) -> list[Action]:
        deletes = [p for p in msg.payloads if isinstance(p, w.Delete)]
        if any(d.protocol == w.PROTO_IKE for d in deletes):
            return self.ctx.respond(sa, msg, []) + self.close(sa, "deleted by peer")
        ours: list[bytes] = []
        actions: list[Action] = []
        for d in deletes:
            for spi in d.spis:
                child = next((c for c in sa.children.values() if c.spi_out == spi), None)
                if child is not None:
                    del sa.children[child.spi_in]
                    ours.append(child.spi_in)
                    actions.append(delete_action(child, "deleted by peer"))
        payloads = [w.Delete(w.PROTO_ESP, ours)] if ours else []
        return self.ctx.respond(sa, msg, payloads) + actions

    # -- closing --------------------------------------------------------------------------------
    def close(self, sa: IkeSa, reason: str) -> list[Action]:
        """The IKE SA is gone: its children too (unless a rekey moved them), and its virtual IP."""
        self.ctx.table.forget(sa)
        sa.state = SaState.CLOSED
        if sa.rekeyed:
            return []
        actions: list[Action] = [delete_action(c, reason) for c in sa.children.values()]
        sa.children.clear()
        if sa.virtual_ip and not sa.original_initiator and self.ctx.config.allocator:
            self.ctx.config.allocator.release(sa.peer_id, sa.virtual_ip)
        self.ctx.log(sa, f"closed: {reason}")
        actions.append(IkeSaClosed(sa.name, reason, sa.peer_id, sa.virtual_ip))
        return actions

    def close_ike_sa(self, name: str, reason: str, notify_peer: bool) -> list[Action]:
        """Close one IKE SA (by name) at once: a Delete toward the peer when it is established and
        nothing else is in flight (never retransmitted), then its children and IkeSaClosed."""
        sa = self.ctx.table.by_name(name)
        if sa is None:
            return []
        actions: list[Action] = []
        if notify_peer and sa.established and sa.outstanding is None:
            msg = self.ctx.message(sa, w.INFORMATIONAL, sa.next_mid, [w.Delete(w.PROTO_IKE)], response=False)
            sa.next_mid += 1
            actions.append(self.ctx.send(sa, msg.encode(sa.cipher_out)))
        return actions + self.close(sa, reason)
