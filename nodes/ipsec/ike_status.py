"""The IKE core's status snapshot (nodes/core.py): its IKE SAs with SPIs and keys (so captures can
be decrypted), drops by reason, IKE messages sent and received by exchange type (retransmissions
included: what a mobile node reports as "IKE messages per move"), and the last lines of its log."""
from __future__ import annotations

from dataclasses import dataclass

from nodes.ipsec import traffic_selectors as tsel
from nodes.ipsec.ike_context import IkeContext
from nodes.ipsec.ike_state import IkeSa


@dataclass(frozen=True)
class IkeStatus:
    ike_sas: tuple[dict, ...]
    drops: tuple[tuple[str, int], ...]
    messages_sent: tuple[tuple[str, int], ...]
    messages_received: tuple[tuple[str, int], ...]
    events: tuple[str, ...]
    half_open: int = 0  # responder: IKE SAs past IKE_SA_INIT, not yet authenticated

    def as_dict(self) -> dict:
        sent, received = dict(self.messages_sent), dict(self.messages_received)
        return {"ike_sas": list(self.ike_sas), "drops": dict(self.drops),
                "messages": {"sent": {"total": sum(sent.values()), **sent},
                             "received": {"total": sum(received.values()), **received}},
                "events": list(self.events), "half_open": self.half_open}


def snapshot(ctx: IkeContext) -> IkeStatus:
    return IkeStatus(tuple(sa_status(sa) for sa in ctx.table), tuple(sorted(ctx.drops.items())),
                     tuple(sorted(ctx.messages_sent.items())), tuple(sorted(ctx.messages_received.items())),
                     tuple(ctx.events), len(ctx.table.half_open))


def sa_status(sa: IkeSa) -> dict:
    return {
        "name": sa.name,
        "role": sa.role,
        "state": sa.state.value,
        "spi_i": sa.spi_i.hex(),
        "spi_r": sa.spi_r.hex(),
        "local": f"{sa.local_addr}:{sa.local_port}",
        "peer": f"{sa.peer_addr}:{sa.peer_port}",
        "encap": sa.encap,
        "peer_id": sa.peer_id,
        "virtual_ip": sa.virtual_ip,
        "dns": list(sa.dns),
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
