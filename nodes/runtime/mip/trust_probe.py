"""RFC 5265 inside/outside detection on the wire: one registration request to the internal home
agent (i-HA) straight from the address the node has on its new link, and what came back.

The policy (what the answer means) is nodes/mip/rfc5265_location.py; this module only sends the
request (nodes.mip.mn_messages.request_for, signed with the i-MIP layer's key) from an ephemeral UDP
port bound to that address, retransmits it (no sooner than a second after the last one, RFC 5944
3.6.3), and classifies authentic replies. Stopped without an answer (the node decided it is outside
when the window passed), it goes on listening and retransmitting for LINGER seconds: RFC 5265 3.3,
the node "MUST keep on retransmitting its registration to the i-HA for a period of time", and a
late answer with extension 149 still moves it inside (the policy sees the outcome change). On a link with a
foreign agent the request goes to the agent (which relays it, RFC 5944 3.7) from the i-HoA, with
the agent's care-of address, out of the link's interface with TTL 255 (RFC 3024: the T bit). Outside the
intranet nothing comes back: the i-HA drops untrusted sources silently (and the Internet core
refuses private destinations). The same request machinery deregisters from the x-HA (`deregister`)
when the node finds itself inside."""
from __future__ import annotations

import asyncio
import socket
from collections import Counter

from nodes.core import system_random
from nodes.mip.mn_messages import Identifications, request_for
from nodes.mip.rfc5265_location import (
    I_HA_NONE, agent_lifetime_offer, deregistration_attempt, i_ha_outcome, probe_attempt,
)
from nodes.runtime.clock import SYSTEM, Clock
from nodes.runtime.mip.actions import recv_udp, udp_socket
from nodes.wire.mip import MIP_PORT

RETRANSMIT_AFTER = 1.0  # RFC 5944 3.6.3: "The minimum time between Registration Requests MUST NOT be less than 1 second"
LINGER = 3.0  # seconds an unanswered probe still retransmits and listens after stop()
AGENT_TTL = 255  # a request to a foreign agent with the T bit (RFC 3024 3.3)


class TrustProbe:
    def __init__(self, cfg, log, clock: Clock = SYSTEM):
        self.cfg, self.log = cfg, log
        self.clock = clock  # wall time: a request's identification is a timestamp (RFC 5944 5.7.1)
        self.loop = asyncio.get_running_loop()
        self.identifications = Identifications(system_random)
        self.counters = Counter()
        self.sock: socket.socket | None = None
        self.attempt = None
        self.address: str | None = None
        self.started_at: float | None = None
        self.outcome = I_HA_NONE
        self.code: int | None = None  # the code of the authentic reply
        self.to: tuple | None = None
        self._retransmit: asyncio.TimerHandle | None = None
        self._timeout = RETRANSMIT_AFTER
        self._linger: asyncio.TimerHandle | None = None  # set while an unanswered probe lingers

    def probe(self, address: str, at_i_home: bool, now: float, agent: str | None = None,
              iface: str | None = None) -> None:
        """Ask the i-HA from `address` on the link `iface` (a new attachment); forget any earlier
        answer. With `agent`, `address` is the foreign agent's care-of address and the request goes
        through the agent."""
        attempt = probe_attempt(self.cfg, address, now, self.identifications.next(now), at_i_home, agent)
        if agent is None:
            self._start(address, attempt, now, address, iface)
        else:  # from the i-HoA, past the i-MIP layer's policy route (which holds the i-HoA's traffic)
            self._start(address, attempt, now, str(self.cfg.home_address), iface, agent)

    def deregister(self, address: str, now: float, iface: str | None = None) -> None:
        """Deregister the home address from `address` (RFC 5265 inside: the x-HA's binding goes)."""
        self._start(address, deregistration_attempt(self.cfg, address, now, self.identifications.next(now)), now,
                    address, iface)

    def _start(self, address: str, attempt, now: float, bind: str, iface: str | None,
               agent: str | None = None) -> None:
        """Send `attempt` from `bind` out of `iface`: on the link itself, never into a VPN tunnel
        whose routes toward the intranet are still in place on arrival."""
        self.close()
        self.address, self.started_at, self.outcome, self.code = address, now, I_HA_NONE, None
        self.attempt = attempt
        self.to = (str(agent) if agent is not None else str(self.cfg.home_agent), MIP_PORT)
        try:
            self.sock = udp_socket(port=0, address=bind)
            if iface:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
            if agent is not None:
                self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, AGENT_TTL)
        except OSError as exc:  # the address is not on the link yet: counted, retried on the next attachment
            self.counters[f"not-sent:{exc.strerror or exc}"] += 1
            if self.sock is not None:
                self.sock.close()
                self.sock = None
            self.log("trust-probe-error", address=address, error=str(exc))
            return
        self.loop.add_reader(self.sock.fileno(), self._on_reply)
        self._timeout = RETRANSMIT_AFTER
        self._send()
        self._retransmit = self.loop.call_later(self._timeout, self._retransmission)

    def _retransmission(self) -> None:
        """RFC 5944 3.6.3: each timeout at least a second, the next twice as long."""
        self._retransmit = None
        if self.sock is None or self.outcome != I_HA_NONE:
            return
        self.counters["retransmissions"] += 1
        self._send()
        self._timeout *= 2
        self._retransmit = self.loop.call_later(self._timeout, self._retransmission)

    def _send(self) -> None:
        if self.sock is None or self.outcome != I_HA_NONE:
            return
        try:
            self.sock.sendto(request_for(self.cfg, self.attempt), self.to)
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
            offer = agent_lifetime_offer(self.cfg, self.attempt, got[0]) if outcome is None else None
            if offer is not None:  # the agent's maximum lifetime: ask again with it
                self.counters["agent-lifetime-offer"] += 1
                self.attempt.lifetime = offer
                self.attempt.identification = self.identifications.next(self.clock.wall())
                self._send()
                continue
            if outcome is None:
                self.counters[f"drop:{dropped}"] += 1
                continue
            self.counters[f"reply:{outcome}"] += 1
            self.outcome, self.code = outcome, got[0][1]
            self.log("trust-probe-answer", address=self.address, outcome=outcome,
                     late=self._linger is not None)
            if self._linger is not None:  # answered while lingering: nothing more to wait for
                self.close()
                return

    def stop(self) -> None:
        """The node has decided. Answered (or never sent): done. Unanswered: linger (see the module
        docstring); a lingering probe is closed by close(), by a new probe, or after LINGER s."""
        if self.sock is None or self.outcome != I_HA_NONE:
            self.close()
        elif self._linger is None:
            self.counters["lingering"] += 1
            self._linger = self.loop.call_later(LINGER, self.close)

    def close(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self._retransmit is not None:
            self._retransmit.cancel()
            self._retransmit = None
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def status(self) -> dict:
        return {"address": self.address, "started_at": self.started_at, "outcome": self.outcome, "code": self.code,
                "counters": dict(self.counters)}
