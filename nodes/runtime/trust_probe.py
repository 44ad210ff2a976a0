"""RFC 5265 inside/outside detection on the wire: one registration request to the internal home
agent (i-HA) straight from the address the node has on its new link, and what came back.

The policy (what the answer means) is nodes/mip/rfc5265_location.py; this module only sends the
request (nodes.mip.mn_messages.request_for, signed with the i-MIP layer's key) from an ephemeral UDP
port bound to that address, retransmits it once, and classifies authentic replies. Outside the
intranet nothing comes back: the i-HA drops untrusted sources silently (and the Internet core
refuses private destinations)."""
from __future__ import annotations

import asyncio
import socket
from collections import Counter

from nodes.core import system_random
from nodes.mip.mn_messages import Identifications, request_for
from nodes.mip.rfc5265_location import I_HA_NONE, i_ha_outcome, probe_attempt
from nodes.runtime.mip_actions import recv_udp, udp_socket
from nodes.wire.mip import MIP_PORT

RETRANSMIT_AFTER = 0.4


class TrustProbe:
    def __init__(self, cfg, log):
        self.cfg, self.log = cfg, log
        self.loop = asyncio.get_running_loop()
        self.identifications = Identifications(system_random)
        self.counters = Counter()
        self.sock: socket.socket | None = None
        self.attempt = None
        self.address: str | None = None
        self.started_at: float | None = None
        self.outcome = I_HA_NONE
        self._retransmit: asyncio.TimerHandle | None = None

    def probe(self, address: str, at_i_home: bool, now: float) -> None:
        """Ask the i-HA from `address` (a new attachment); forget any earlier answer."""
        self.stop()
        self.address, self.started_at, self.outcome = address, now, I_HA_NONE
        self.attempt = probe_attempt(self.cfg, address, now, self.identifications.next(now), at_i_home)
        try:
            self.sock = udp_socket(port=0, address=address)
        except OSError as exc:  # the address is not on the link yet: counted, retried on the next attachment
            self.counters[f"not-sent:{exc.strerror or exc}"] += 1
            self.log("trust-probe-error", address=address, error=str(exc))
            return
        self.loop.add_reader(self.sock.fileno(), self._on_reply)
        self._send()
        self._retransmit = self.loop.call_later(RETRANSMIT_AFTER, self._send)

    def _send(self) -> None:
        if self.sock is None or self.outcome != I_HA_NONE:
            return
        try:
            self.sock.sendto(request_for(self.cfg, self.attempt), (str(self.cfg.home_agent), MIP_PORT))
            self.counters["requests"] += 1
        except OSError as exc:  # e.g. an ICMP unreachable from the Internet core on the earlier one
            self.counters[f"send-error:{exc.strerror or exc}"] += 1

    def _on_reply(self) -> None:
        while self.sock is not None:
            try:
                got = recv_udp(self.sock)
            except OSError as exc:  # ICMP errors surface here on a connected path
                self.counters[f"recv-error:{exc.strerror or exc}"] += 1
                continue
            if got is None:
                return
            outcome, dropped = i_ha_outcome(self.cfg, self.attempt, got[0])
            if outcome is None:
                self.counters[f"drop:{dropped}"] += 1
                continue
            self.counters[f"reply:{outcome}"] += 1
            self.outcome = outcome
            self.log("trust-probe-answer", address=self.address, outcome=outcome)

    def stop(self) -> None:
        if self._retransmit is not None:
            self._retransmit.cancel()
            self._retransmit = None
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def status(self) -> dict:
        return {"address": self.address, "started_at": self.started_at, "outcome": self.outcome,
                "counters": dict(self.counters)}
