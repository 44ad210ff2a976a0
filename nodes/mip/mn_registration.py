"""The Mobile Node's registrations (sans-I/O; part of the Mobile Node core, nodes/mip/mn.py, which
owns one `Registrar` and tells it what to register where): the request in flight, retransmitted
with back-off and a new identification (RFC 5944 3.6.3, 5.7), no more than one request a second on
average (2.4.2), the checks of a reply and what follows it (3.6.2: the binding and its renewal
time, the co-located node's own tunnel, RFC 3519 4.4's keepalive through a foreign agent), and the
registration state the node's status shows.
"""
from __future__ import annotations

from enum import StrEnum

from nodes.mip.actions import AddTunnel, Log, RemoveTunnel, SendUdp
from nodes.mip.mn_messages import (
    Agent, Attempt, Identifications, Registration, check_reply, keepalive_packet, request_for,
    requested_encapsulation,
)
from nodes.wire.mip import (
    ENCAP_IPIP, EXT_TRUSTED_NETWORKS, EXT_UDP_TUNNEL_REPLY, MIP_PORT, RegistrationReply, ReplyCode, TunnelData,
    find_extension, is_accepted,
)

RETRY_AFTER_DENIAL = {66, 78, 80, 81, 82, 88, 130}  # transient: try again after a backoff
# RFC 5944 2.4.2: "the mobile node MUST NOT register more frequently than once per second on
# average": a token bucket, one request a second, bursts of at most two, on one attachment: what
# advertisements (agents heard in turn, reboots) and retransmissions can trigger. A link-layer
# attachment (link up) refills it: a move to another link is registered at once, however soon after
# the last one (cases/mobility/test_disruption.py moves every 0.2 s and allows 0.5 s of outage)
MIN_REQUEST_INTERVAL = 1.0
REQUEST_BURST = 2.0


class MnState(StrEnum):
    """Where the node's registration stands (its status' `state`, the member's value)."""

    DETACHED = "detached"  # no link
    DISCOVERING = "discovering"  # on a link, no agent or network known yet (RFC 5944 2.4)
    REGISTERING = "registering"  # a request in flight (3.6)
    REGISTERED = "registered"  # a binding accepted and not yet expired
    DENIED = "denied"  # the last reply was a denial
    HOME = "home"  # at home with no binding (3.6.1.2: deregistered)


class Registrar:
    def __init__(self, config, counters, random, movement):
        self.config, self.counters, self.movement = config, counters, movement
        self.identifications = Identifications(random)
        self.attempt: Attempt | None = None
        self.registration: Registration | None = None
        self.state = MnState.DETACHED
        self.last_code: int | None = None
        self.away = False  # a binding may exist at the HA
        self.retry_at: float | None = None  # decide again then (rate limit, transient denial)
        self._tokens, self._tokens_at = REQUEST_BURST, None  # the registration rate's token bucket
        self._keepalives = 0  # keepalives sent at registration (their ICMP sequence numbers)

    # --- the attachment -------------------------------------------------------------------------
    def attached(self, now: float) -> None:
        """A new link: nothing in flight, and a full bucket (see REQUEST_BURST)."""
        self.attempt, self.retry_at, self.state = None, None, MnState.DISCOVERING
        self._tokens, self._tokens_at = REQUEST_BURST, now

    def detached(self) -> None:
        self.attempt, self.retry_at, self.state = None, None, MnState.DETACHED

    # --- requests -------------------------------------------------------------------------------
    def start(self, now: float, mode: str, *, agent: Agent | None = None, colocated=None, via: Agent | None = None,
              lifetime: int | None = None) -> list:
        """Register in `mode`: "home" (deregistration), "fa" (`agent`'s care-of address through it) or
        "colocated" (the `colocated` address, through the foreign agent `via` or directly)."""
        cfg = self.config
        if self._refill(now) < 1:
            # RFC 5944 2.4.2: no more than one registration a second on average: the registration
            # is decided again when the bucket has a token
            self.attempt, self.state = None, MnState.REGISTERING
            self.retry_at = now + (1 - self._tokens) * MIN_REQUEST_INTERVAL
            self.counters["registration-deferred"] += 1
            return []
        attempt = self._attempt(mode, lifetime, agent, colocated, via)
        attempt.first_sent_at, attempt.timeout = now, cfg.retransmit_initial
        self.attempt, self.state, self.retry_at = attempt, MnState.REGISTERING, None
        return self.send(now)

    def _attempt(self, mode: str, lifetime: int | None, agent: Agent | None, colocated, via: Agent | None) -> Attempt:
        cfg = self.config
        home = cfg.home_address
        wanted = cfg.lifetime if lifetime is None else lifetime
        through = agent if mode == "fa" else via
        if through is not None and through.max_lifetime:
            # RFC 5944 3.6.1.2: SHOULD NOT exceed the agent's advertised Registration Lifetime
            wanted = min(wanted, through.max_lifetime)
        if mode == "home":
            return Attempt(mode, 0, home, cfg.home_agent, home)
        if mode == "fa":
            return Attempt(mode, wanted, agent.care_of_addresses[0], agent.address, home, agent_flags=agent.flags)
        if via is not None:
            # the co-located care-of address in the request, sent to the agent (its link-layer
            # address learnt from the advertisement), which relays it (RFC 5944 3.6.1.1, 3.7.2)
            return Attempt(mode, wanted, colocated, via.address, colocated, agent_flags=via.flags, via_fa=True)
        return Attempt(mode, wanted, colocated, cfg.home_agent, colocated)

    def _refill(self, now: float) -> float:
        if self._tokens_at is not None:
            self._tokens = min(REQUEST_BURST, self._tokens + max(0.0, now - self._tokens_at) / MIN_REQUEST_INTERVAL)
        self._tokens_at = now
        return self._tokens

    def send(self, now: float) -> list:
        """(Re)send the attempt with a fresh identification; arm the retransmission."""
        a = self.attempt
        a.identification = self.identifications.next(now)
        a.sent_at = now
        self._tokens = max(0.0, self._refill(now) - 1)  # every request counts, retransmissions too
        a.retransmit_at = now + a.timeout
        self.counters["requests"] += 1
        self.away = self.away or a.mode != "home"
        ttl = 255 if a.through_agent else 64  # RFC 3024 3.2: the foreign agent checks 255
        return [SendUdp(a.dst, MIP_PORT, request_for(self.config, a), src=a.src, ttl=ttl, iface=self.config.iface)]

    # --- timers ---------------------------------------------------------------------------------
    def retransmit(self, now: float) -> list:
        """The attempt again when its timeout ran out, the timeout doubled (RFC 5944 3.6.3)."""
        a = self.attempt
        if a is None or a.retransmit_at > now:
            return []
        a.timeout = min(a.timeout * 2, self.config.retransmit_max)
        self.counters["retransmissions"] += 1
        return self.send(now)

    def renewal_due(self, now: float, link_up: bool) -> bool:
        """The binding's renewal time came with nothing in flight (it is then not due again)."""
        reg = self.registration
        if self.attempt is not None or reg is None or reg.renew_at > now or not link_up:
            return False
        self.counters["reregistrations"] += 1
        reg.renew_at = float("inf")
        return True

    def retry_due(self, now: float) -> bool:
        if self.retry_at is None or self.retry_at > now:
            return False
        self.retry_at = None
        return True

    def deadlines(self, link_up: bool) -> list:
        reg = self.registration
        return [self.retry_at, self.attempt.retransmit_at if self.attempt else None,
                reg.renew_at if reg and not self.attempt and link_up else None]

    # --- replies --------------------------------------------------------------------------------
    def on_reply(self, payload: bytes, now: float) -> tuple[list, bool]:
        """(actions, whether it accepted the attempt) for a datagram on UDP 434."""
        reply, dropped = check_reply(self.config, self.attempt, payload)
        if reply is None:
            self.counters.drop(dropped)
            return [], False
        self.last_code = reply.code
        self.counters[f"reply:{reply.code}"] += 1
        if is_accepted(reply.code):
            return self.accepted(reply, now), True
        return self.denied(reply, now), False

    def accepted(self, reply: RegistrationReply, now: float) -> list:
        a, cfg = self.attempt, self.config
        self.attempt = None
        log = self._log("registration", {"mode": a.mode, "coa": str(a.care_of_address), "code": reply.code,
                                         "lifetime": reply.lifetime, "elapsed": round(now - a.first_sent_at, 6),
                                         "at": now, **({"via": str(a.dst)} if a.via_fa else {})})
        if a.mode == "home":
            self.away, self.state, self.registration = False, MnState.HOME, None
            return [log]
        udp = find_extension(reply.extensions, EXT_UDP_TUNNEL_REPLY)
        tunnel = "udp" if udp is not None and udp.code < 64 else requested_encapsulation(cfg, a)
        self.registration = Registration(
            a.mode, a.care_of_address, reply.lifetime, a.sent_at + reply.lifetime,
            a.sent_at + reply.lifetime * cfg.reregister_fraction, tunnel,
            find_extension(reply.extensions, EXT_TRUSTED_NETWORKS) is not None,
        )
        self.state = MnState.REGISTERED
        if a.mode != "colocated":
            return [RemoveTunnel(cfg.home_address), log]
        tunnel_action = AddTunnel(cfg.home_address, a.care_of_address, cfg.home_agent, tunnel,
                                  MIP_PORT if tunnel == "udp" else None, udp.keepalive if udp else None)
        if a.via_fa and tunnel == "udp":
            # RFC 3519 4.4: registered through a foreign agent with R in the UDP Tunnel Request, "the
            # mobile node also MUST send a keepalive as soon as its registration has been accepted":
            # the home agent learns the tunnel's port from it (4.11)
            return [tunnel_action, self._keepalive(a), log]
        return [tunnel_action, log]

    def _keepalive(self, a: Attempt) -> SendUdp:
        """A keepalive in the UDP tunnel, from the port of the registration (RFC 3519 4.4)."""
        cfg = self.config
        self._keepalives += 1
        self.counters["keepalives-at-registration"] += 1
        data = TunnelData(ENCAP_IPIP, keepalive_packet(cfg.home_address, cfg.home_agent, self._keepalives))
        return SendUdp(cfg.home_agent, MIP_PORT, data.encode(), src=a.care_of_address, sport=MIP_PORT,
                       iface=cfg.iface)

    def denied(self, reply: RegistrationReply, now: float) -> list:
        """A denial (RFC 5944 3.6.2.3): once more after a 133 (with the HA's clock, 5.7) or a 69 (with
        the lifetime the agent allows), a retry later after a transient one, else the node is denied."""
        a = self.attempt
        if reply.code == ReplyCode.HA_IDENTIFICATION_MISMATCH and not a.resynced:
            self.identifications.resync(reply.identification, now)
            self.counters["clock-resync"] += 1
            a.resynced = True
            return self.send(now)
        if reply.code == ReplyCode.FA_LIFETIME_TOO_LONG and 0 < reply.lifetime < a.lifetime:
            a.lifetime = reply.lifetime
            return self.send(now)
        self.attempt, self.state = None, MnState.DENIED
        if reply.code in RETRY_AFTER_DENIAL:
            self.retry_at = now + a.timeout
        return [self._log("registration-denied", {"mode": a.mode, "code": reply.code, "at": now})]

    def _log(self, event: str, fields: dict) -> Log:
        """A registration log line; a co-located one on a leased address notes the DHCP timing."""
        note = self.movement.dhcp_note(fields["mode"])
        return Log(event, {**fields, "dhcp": note} if note else fields)
