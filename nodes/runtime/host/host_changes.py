"""Changes a daemon makes to its node (iptables rules, routes, policy rules, sysctls), each with the
change that takes it back, undone in reverse order at exit.

    changes = HostChanges()
    changes.do(["ip", "route", "replace", net, "dev", tun], undo=["ip", "route", "del", net, "dev", tun])
    changes.sysctl("net.ipv4.conf.eth1.proxy_arp", 1)     # the old value comes back at exit
    ...
    changes.undo_all()

`do` first runs the undo command (ignoring its failure) so that what a killed earlier daemon in the
same node left is removed before the change is made again (`preclean=False` to skip that).
"""
from __future__ import annotations

import json
from typing import Callable

from nodes.runtime.host.commands import ip, run
from nodes.runtime.host.netlink import sysctl

Undo = list[str] | Callable[[], None]


class HostChanges:
    def __init__(self) -> None:
        self._undo: list[Undo] = []

    def do(self, argv: list[str], undo: list[str] | None = None, preclean: bool = True) -> None:
        if undo and preclean:
            run(undo, check=False)
        run(argv)
        if undo:
            self._undo.append(undo)

    def on_exit(self, undo: Undo) -> None:
        """Something to run at exit (a command or a callable), before what was registered earlier."""
        self._undo.append(undo)

    def sysctl(self, key: str, value) -> str | None:
        """Set a sysctl of this namespace; the old value is written back at exit. Returns it."""
        old = sysctl(key, value)
        if old is not None:
            self._undo.append(lambda: sysctl(key, old))
        return old

    def undo_all(self) -> None:
        for undo in reversed(self._undo):
            if callable(undo):
                undo()
            else:
                run(undo, check=False)
        self._undo.clear()

    def __bool__(self) -> bool:
        return bool(self._undo)


# -- what the node has ------------------------------------------------------------------------------
def interfaces() -> list[tuple[str, str, int]]:
    """(name, address, prefixlen) of every IPv4 address in the node."""
    out = json.loads(ip("-4", "-j", "addr", "show").stdout or "[]")
    return [(i["ifname"], a["local"], a["prefixlen"]) for i in out for a in i.get("addr_info", [])
            if a.get("family") == "inet"]


def default_interface() -> str | None:
    routes = json.loads(ip("-4", "-j", "route", "show", "default").stdout or "[]")
    return routes[0].get("dev") if routes else None


def route_to(address: str) -> dict:
    """The kernel's route toward `address` (`ip route get`): keys dev, gateway (when via one), ..."""
    return json.loads(ip("-j", "route", "get", address).stdout or "[{}]")[0]
