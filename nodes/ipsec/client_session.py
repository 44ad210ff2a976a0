"""The remote-access client's session policy, sans-I/O (nodes/core.py's shape): when to resolve the
gateway's name, when to connect, and when to try again after a failure or a lost tunnel.

    session = ClientSession(gateway_name, gateway_address_or_None, reconnect_interval)
    session.start(now)                       first attempt
    session.resolved(address, error, now)    the runtime's answer to a Resolve action
    session.ike_event(action, now)           the IKE core's Established, Failed, IkeSaClosed, IkeSaRekeyed
    session.stop(now)                        no more attempts
    session.handle_timer(now)                at next_deadline(): the next attempt

Actions: Resolve(name), GatewayResolved(address), Connect(gateway), TunnelUp(established),
TunnelDown(reason), AttemptFailed(reason). States: down, resolving, connecting, established.
An attempt that fails waits `reconnect_interval` (three times that after AUTHENTICATION_FAILED, so a
wrong password does not hammer the gateway); a tunnel that goes down is reconnected after it.
The session receives no datagrams (receive_datagram counts them as drops)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from nodes.core import Addr
from nodes.ipsec.ike_actions import Established, Failed, IkeSaClosed, IkeSaRekeyed, notify_name
from nodes.wire import ikev2 as w


@dataclass(frozen=True)
class Resolve:
    name: str


@dataclass(frozen=True)
class GatewayResolved:
    address: str


@dataclass(frozen=True)
class Connect:
    gateway: str


@dataclass(frozen=True)
class TunnelUp:
    established: Established


@dataclass(frozen=True)
class TunnelDown:
    reason: str


@dataclass(frozen=True)
class AttemptFailed:
    reason: str


@dataclass(frozen=True)
class SessionStatus:
    state: str
    gateway: str | None
    gateway_name: str
    ike_sa: str | None
    virtual_ip: str | None
    dns: tuple[str, ...]
    subnets: tuple[str, ...]
    last_error: str | None
    connects: int
    establishments: int
    reconnect_at: float | None
    drops: tuple[tuple[str, int], ...]

    def as_dict(self) -> dict:
        return {"state": self.state, "gateway": self.gateway, "gateway_name": self.gateway_name,
                "ike_sa": self.ike_sa, "virtual_ip": self.virtual_ip, "dns": list(self.dns),
                "subnets": list(self.subnets), "last_error": self.last_error, "connects": self.connects,
                "establishments": self.establishments, "reconnect_at": self.reconnect_at,
                "drops": dict(self.drops)}


class ClientSession:
    def __init__(self, gateway_name: str, gateway: str | None, reconnect_interval: float):
        self.gateway_name, self.gateway = gateway_name, gateway
        self.reconnect_interval = reconnect_interval
        self.state = "down"
        self.ike_sa: str | None = None
        self.virtual_ip: str | None = None
        self.dns: list[str] = []
        self.subnets: list[str] = []
        self.last_error: str | None = None
        self.connects = self.establishments = 0
        self.stopping = False
        self.drops: Counter[str] = Counter()
        self._reconnect_at: float | None = None
        self._actions: list = []

    # -- the contract ---------------------------------------------------------------------------
    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        self.drops["not-a-datagram-core"] += 1

    def handle_timer(self, now: float) -> None:
        if self._reconnect_at is not None and now >= self._reconnect_at:
            self._reconnect_at = None
            self._attempt()

    def next_deadline(self) -> float | None:
        return self._reconnect_at

    def drain_actions(self) -> list:
        actions, self._actions = self._actions, []
        return actions

    def status(self, now: float) -> SessionStatus:
        return SessionStatus(self.state, self.gateway, self.gateway_name, self.ike_sa, self.virtual_ip,
                             tuple(self.dns), tuple(self.subnets), self.last_error, self.connects,
                             self.establishments, self._reconnect_at, tuple(sorted(self.drops.items())))

    # -- inputs ---------------------------------------------------------------------------------
    def start(self, now: float) -> None:
        self._attempt()

    def stop(self, now: float) -> None:
        self.stopping, self._reconnect_at = True, None

    def resolved(self, address: str | None, error: str | None, now: float) -> None:
        if address is None:
            self.last_error = (f"cannot resolve the gateway name {self.gateway_name!r}: {error} (check the DNS "
                               f"resolver in /etc/resolv.conf, or give the gateway's address); retrying every "
                               f"{self.reconnect_interval:g} s")
            self.state = "down"
            self._actions.append(AttemptFailed(self.last_error))
            self._retry(now)
            return
        self.gateway, self.state = address, "down"
        self._actions.append(GatewayResolved(address))
        self._attempt()

    def ike_event(self, a, now: float) -> None:
        if isinstance(a, Established):
            self.ike_sa, self.virtual_ip, self.dns, self.subnets = a.ike_sa, a.virtual_ip, list(a.dns), list(a.subnets)
            self.state, self.last_error = "established", None
            self.establishments += 1
            self._actions.append(TunnelUp(a))
        elif isinstance(a, IkeSaRekeyed):
            if a.old == self.ike_sa:
                self.ike_sa = a.new
        elif isinstance(a, IkeSaClosed):
            if a.ike_sa == self.ike_sa or self.state == "connecting":
                self.last_error = a.reason
                self.ike_sa = self.virtual_ip = None
                self.state = "down"
                self._actions.append(TunnelDown(a.reason))
                self._retry(now)
        elif isinstance(a, Failed):
            reason = a.reason
            if a.notify is not None and notify_name(a.notify) not in reason:
                reason = f"{notify_name(a.notify)} ({reason})"
            self.last_error = reason
            self._actions.append(AttemptFailed(reason))
            if self.state != "established":
                self.state = "down"
                slower = a.notify == w.N_AUTHENTICATION_FAILED
                self._retry(now, self.reconnect_interval * (3 if slower else 1))

    # -- policy ---------------------------------------------------------------------------------
    def _attempt(self) -> None:
        if self.stopping or self.state in ("connecting", "established", "resolving"):
            return
        if self.gateway is None:
            self.state = "resolving"
            self._actions.append(Resolve(self.gateway_name))
            return
        self.state = "connecting"
        self.connects += 1
        self._actions.append(Connect(self.gateway))

    def _retry(self, now: float, delay: float | None = None) -> None:
        if self.stopping or self._reconnect_at is not None:
            return
        self._reconnect_at = now + (self.reconnect_interval if delay is None else delay)
