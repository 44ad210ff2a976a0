"""The exchanges an IKE SA initiates: queued, one in flight (window size 1, RFC 7296 2.3),
retransmitted with exponential backoff, and each answer handed to the handler the dispatch table
names for the request's type (`exchanges`: request class -> (build, on_response)).

    build(sa, now, request) -> (exchange type, payloads, actions before the send) or None (skip it)
    on_response(sa, now, message, request) -> actions

When an IKE SA is rekeyed, what is queued on it moves to the new IKE SA (RFC 7296 2.8).
"""
from __future__ import annotations

from typing import Callable

from nodes.ipsec.ike_actions import Action, Failed
from nodes.ipsec.ike_context import IkeContext
from nodes.ipsec.ike_state import IkeSa, Outstanding, RekeyIke, Request
from nodes.wire import ikev2 as w

Build = Callable[[IkeSa, float, Request], "tuple[int, list, list[Action]] | None"]
OnResponse = Callable[[IkeSa, float, w.Message, Request], list[Action]]


class RequestWindow:
    def __init__(self, ctx: IkeContext, close: Callable[[IkeSa, str], list[Action]]):
        self.ctx = ctx
        self.close = close
        self.exchanges: dict[type, tuple[Build | None, OnResponse]] = {}

    def send_request(self, sa: IkeSa, now: float, exchange: int, payloads: list, request: Request) -> list[Action]:
        """Send a request at once (the SA's next message ID) and keep it for retransmission."""
        msg = self.ctx.message(sa, exchange, sa.next_mid, payloads, response=False)
        data = msg.encode(None if exchange == w.IKE_SA_INIT else sa.cipher_out)
        if exchange == w.IKE_SA_INIT:
            sa.init_request = data
        sa.outstanding = Outstanding(request, sa.next_mid, data, 0, now + self.ctx.config.retransmit_timeout)
        sa.next_mid += 1
        return [self.ctx.send(sa, data)]

    def request(self, sa: IkeSa, now: float, request: Request) -> list[Action]:
        """Queue an exchange we initiate; it starts when the previous one is answered."""
        if not sa.established:
            return []
        sa.queue.append(request)
        return self.pump(sa, now)

    def pump(self, sa: IkeSa, now: float) -> list[Action]:
        actions: list[Action] = []
        while sa.outstanding is None and sa.queue and sa.established:
            request = sa.queue.popleft()
            build, _ = self.exchanges[type(request)]
            built = build(sa, now, request)
            if built is None:
                continue
            exchange, payloads, extra = built
            actions += extra + self.send_request(sa, now, exchange, payloads, request)
        return actions

    def move_queue(self, old: IkeSa, new: IkeSa, now: float) -> list[Action]:
        """RFC 7296 2.8: requests queued on a rekeyed IKE SA go to its successor (a queued IKE
        rekey is done: it goes nowhere)."""
        moved = [r for r in old.queue if not isinstance(r, RekeyIke)]
        old.queue.clear()
        if moved:
            self.ctx.log(old, f"{len(moved)} queued request(s) moved to {new.name}")
        new.queue.extend(moved)
        self.ctx.table.touch(new)
        return self.pump(new, now)

    def on_response(self, sa: IkeSa, now: float, msg: w.Message) -> list[Action]:
        out = sa.outstanding
        if out is None or msg.message_id != out.message_id:
            return self.ctx.drop("unexpected_response")
        sa.outstanding = None
        _, on_response = self.exchanges[type(out.request)]
        actions = on_response(sa, now, msg, out.request)
        if sa in self.ctx.table:
            actions += self.pump(sa, now)
        return actions

    def retransmit(self, sa: IkeSa, now: float) -> list[Action]:
        out, cfg = sa.outstanding, self.ctx.config
        if out.tries >= cfg.retransmit_tries:
            self.ctx.log(sa, f"no answer to {type(out.request).__name__} after {out.tries} retransmissions")
            if sa.established or sa.rekeyed:
                return self.close(sa, "peer unreachable")
            self.ctx.table.forget(sa)
            return [Failed("peer did not answer", None, sa.peer_id, sa.peer_addr)]
        out.tries += 1
        out.next_at = now + cfg.retransmit_timeout * cfg.retransmit_backoff ** out.tries
        return [self.ctx.send(sa, out.data)]
