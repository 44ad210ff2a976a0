"""The gateway's redirection rules (draft-gupta Appendix C) bound to tunnels, sans-I/O: while a
user's tunnel is up, each of the user's rules is a static NAPT mapping G_i:port -> the user's
tunnel-inner address:to_port through that tunnel; the binding follows the user to a newer tunnel
(reconnect) and goes with the tunnel it is bound to. `bind` and `unbind` return what happened as
(event, fields) pairs for the daemon's log."""
from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol

from nodes.ipsec.napt import Napt, RedirectRule


class Rule(Protocol):  # nodes.runtime.ipsec.config.Redirect
    proto: str
    port: int
    user: str
    to_port: int

    def as_dict(self) -> dict: ...


class RedirectBindings:
    def __init__(self, napt: Napt | None, rules: list[Rule]):
        self.napt, self.rules = napt, rules
        self.bound: dict[tuple[str, int], Hashable] = {}  # (proto, port) -> the tunnel it goes to

    def bind(self, tunnel, user: str | None, virtual_ip: str, now: float) -> list[tuple[str, dict]]:
        """`user`'s tunnel is up: its rules now lead to `virtual_ip` through `tunnel` (replacing a
        binding to an older tunnel of the same user)."""
        if self.napt is None:
            return []
        log: list[tuple[str, dict]] = []
        for r in self.rules:
            if r.user != user:
                continue
            key = (r.proto, r.port)
            if key in self.bound:
                self.napt.remove_redirect(r.proto, r.port)
            try:
                self.napt.add_redirect(RedirectRule(r.proto, r.port, tunnel, virtual_ip, r.to_port), now)
            except ValueError as exc:  # not expected: the port lies outside the dynamic range
                self.bound.pop(key, None)
                log.append(("redirect_failed", {"proto": r.proto, "port": r.port, "user": user, "error": str(exc)}))
                continue
            self.bound[key] = tunnel
            log.append(("redirect_added", {"proto": r.proto, "port": r.port, "user": user,
                                           "to": f"{virtual_ip}:{r.to_port}", "ike_sa": tunnel.name}))
        return log

    def unbind(self, tunnel) -> list[tuple[str, dict]]:
        """`tunnel`'s IKE SA went away: the rules bound to it are removed (not those that moved on
        to a newer tunnel of the same user)."""
        log: list[tuple[str, dict]] = []
        for key, bound in list(self.bound.items()):
            if bound is not tunnel:
                continue
            del self.bound[key]
            if self.napt is not None:
                self.napt.remove_redirect(*key)
            log.append(("redirect_removed", {"proto": key[0], "port": key[1], "user": tunnel.peer_id,
                                             "ike_sa": tunnel.name}))
        return log

    def status(self, g_i: str | None) -> list[dict]:
        out = []
        for r in self.rules:
            t = self.bound.get((r.proto, r.port))
            out.append({**r.as_dict(), "external": f"{g_i}:{r.port}", "active": t is not None,
                        "to": f"{t.virtual_ip}:{r.to_port}" if t is not None else None,
                        "ike_sa": t.name if t is not None else None})
        return out
