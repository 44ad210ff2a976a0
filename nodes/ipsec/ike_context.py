"""What the parts of the IKE core share: configuration, random source, parsed proposals, the SA
table, the counters (drops by reason, messages by exchange type), the bounded log, and the
building and sending of messages."""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import replace

from nodes.core import RandomSource
from nodes.ipsec import ike_proposals as props
from nodes.ipsec.ike_actions import Action, SendIke, exchange_name, notify_name
from nodes.ipsec.ike_config import IkeConfig
from nodes.ipsec.ike_state import IkeSa
from nodes.ipsec.ike_table import SaTable
from nodes.wire import ikev2 as w

LOG_LINES = 50  # the last lines of the core's log kept for the status


class IkeContext:
    def __init__(self, config: IkeConfig, random: RandomSource):
        self.config = config
        self.random = random
        self.ike_suites = props.parse_suites(config.ike_proposals, w.PROTO_IKE)
        self.esp_suites = props.parse_suites(config.esp_proposals, w.PROTO_ESP)
        self.esp_suites_auth = list(dict.fromkeys(replace(s, dh=0) for s in self.esp_suites))
        self.table = SaTable(config.dpd_interval)
        self.drops: Counter[str] = Counter()
        self.messages_sent: Counter[str] = Counter()
        self.messages_received: Counter[str] = Counter()
        self.events: deque[str] = deque(maxlen=LOG_LINES)

    def log(self, sa: IkeSa | None, text: str) -> None:
        self.events.append(f"{sa.name if sa else '-'}: {text}")

    def refused_child(self, sa: IkeSa, exc) -> None:
        """A child SA we refused (responder): logged with why (offered and configured proposals for
        NO_PROPOSAL_CHOSEN) and counted among the drops as child_refused_<notify>."""
        name = notify_name(exc.notify)
        self.drops[f"child_refused_{name.lower()}"] += 1
        detail = str(exc)
        self.log(sa, f"child SA refused with {name}" + (f": {detail}" if detail != name else ""))

    def drop(self, reason: str) -> list[Action]:
        self.drops[reason] += 1
        return []

    def child_rekey_at(self, now: float) -> float | None:
        return now + self.config.child_rekey_after if self.config.child_rekey_after else None

    def arm_rekey(self, sa: IkeSa, now: float) -> None:
        if self.config.ike_rekey_after:
            sa.rekey_at = now + self.config.ike_rekey_after

    # -- messages -----------------------------------------------------------------------------
    def send_to(self, dst: str, dport: int, sport: int, data: bytes) -> SendIke:
        """The UDP payload of IKE message `data` (the non-ESP marker added on 4500), counted."""
        self.messages_sent[exchange_name(data[18])] += 1
        if sport == w.NAT_T_PORT:
            data = w.add_non_esp_marker(data)
        return SendIke(dst, dport, sport, data)

    def send(self, sa: IkeSa, data: bytes) -> SendIke:
        return self.send_to(sa.peer_addr, sa.peer_port, sa.local_port, data)

    @staticmethod
    def message(sa: IkeSa, exchange: int, mid: int, payloads: list, response: bool) -> w.Message:
        return w.Message(sa.spi_i, sa.spi_r, exchange, mid, payloads, response=response,
                         initiator=sa.original_initiator)

    def respond(self, sa: IkeSa, request: w.Message, payloads: list) -> list[Action]:
        data = self.message(sa, request.exchange, request.message_id, payloads, response=True).encode(sa.cipher_out)
        sa.last_response = (request.message_id, data)
        return [self.reply(sa, data)]

    def reply(self, sa: IkeSa, data: bytes) -> SendIke:
        """A response goes back to the address and port its request came from, on the port it
        arrived at (RFC 7296 2.23: "responses MUST be sent to the port from whence they came"),
        even when the SA's own requests use other ones (4500 after a NAT was detected)."""
        if sa.request_from is None:
            return self.send(sa, data)
        src, sport, dport = sa.request_from
        return self.send_to(src, sport, dport, data)
