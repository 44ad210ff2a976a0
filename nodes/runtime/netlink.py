"""Kernel configuration over netlink (pyroute2) for the userspace data planes: links, addresses,
routes, policy rules, neighbour and proxy-ARP entries, sysctls, and a carrier monitor.

Everything acts in the calling process's network namespace (a node of the world). Calls are
idempotent where the kernel allows it (replace rather than add; deleting what is absent is
not an error), so a daemon can re-apply its state after a move without bookkeeping.
"""
from __future__ import annotations

import socket
import struct
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Callable

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

NUD_PERMANENT = 0x80
NTF_PROXY = 0x08
RTNH_F_ONLINK = 0x04
RT_SCOPE_LINK = 253
RTMGRP_LINK = 0x1
RTM_NEWLINK = 16
RTM_DELLINK = 17
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
ENOENT, ESRCH, EEXIST, EADDRNOTAVAIL = 2, 3, 17, 99

# pyroute2's synchronous IPRoute runs an event loop of its own and so cannot be used from inside a
# running asyncio loop (our daemons). All netlink requests go to one worker thread that owns the
# IPRoute; callers still get synchronous results (a request takes well under a millisecond).
_ipr: IPRoute | None = None
_pool: ThreadPoolExecutor | None = None


def _in_worker(name: str, args, kw):
    global _ipr
    if _ipr is None:
        _ipr = IPRoute()
    result = getattr(_ipr, name)(*args, **kw)
    if result is not None and not isinstance(result, (list, tuple, dict, str, bytes, int)):
        try:
            result = list(result)
        except TypeError:
            pass
    return result


class _IpRouteProxy:
    def __getattr__(self, name: str):
        def call(*args, **kw):
            global _pool
            if _pool is None:
                _pool = ThreadPoolExecutor(1, thread_name_prefix="netlink")
            return _pool.submit(_in_worker, name, args, kw).result()
        return call


_PROXY = _IpRouteProxy()


def ipr() -> _IpRouteProxy:
    """An IPRoute-like object usable from any thread, inside or outside an event loop."""
    return _PROXY


def close() -> None:
    global _ipr, _pool
    if _pool is not None:
        def _close():
            global _ipr
            if _ipr is not None:
                _ipr.close()
                _ipr = None
        _pool.submit(_close).result()
        _pool.shutdown()
        _pool = None


def _quiet(fn, *args, ignore=(ENOENT, ESRCH, EADDRNOTAVAIL), **kw):
    try:
        return fn(*args, **kw)
    except NetlinkError as exc:
        if exc.code in ignore:
            return None
        raise


# ---- links ---------------------------------------------------------------------------------------
_index_cache: dict[str, int] = {}


def link_index(name: str) -> int:
    """The interface's index (cached: the interfaces a daemon uses live as long as it does; the
    cache entry is dropped when /sys no longer shows the same index)."""
    index = _index_cache.get(name)
    if index is not None:
        try:
            with open(f"/sys/class/net/{name}/ifindex") as f:
                if int(f.read()) == index:
                    return index
        except (OSError, ValueError):
            pass
        _index_cache.pop(name, None)
    found = ipr().link_lookup(ifname=name)
    if not found:
        raise LookupError(f"no interface {name!r} in this network namespace")
    _index_cache[name] = found[0]
    return found[0]


def link_mac(name: str) -> str:
    with open(f"/sys/class/net/{name}/address") as f:
        return f.read().strip()


def link_carrier(name: str) -> bool:
    try:
        with open(f"/sys/class/net/{name}/carrier") as f:
            return f.read().strip() == "1"
    except OSError:  # reading carrier of an administratively down link fails with EINVAL
        return False


def link_set(name: str, mtu: int | None = None, up: bool | None = None) -> None:
    kw = {}
    if mtu is not None:
        kw["mtu"] = mtu
    if up is not None:
        kw["state"] = "up" if up else "down"
    if kw:
        ipr().link("set", index=link_index(name), **kw)


# ---- addresses -----------------------------------------------------------------------------------
def addr_add(iface: str, cidr: str) -> None:
    i = IPv4Interface(cidr)
    _quiet(ipr().addr, "add", index=link_index(iface), address=str(i.ip), prefixlen=i.network.prefixlen,
           ignore=(EEXIST,))


def addr_del(iface: str, cidr: str) -> None:
    i = IPv4Interface(cidr)
    _quiet(ipr().addr, "del", index=link_index(iface), address=str(i.ip), prefixlen=i.network.prefixlen)


def addresses(iface: str) -> list[str]:
    """IPv4 addresses on `iface` as CIDR strings."""
    out = []
    for msg in ipr().get_addr(family=socket.AF_INET, index=link_index(iface)):
        out.append(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}")
    return out


def addr_flush(iface: str, keep: tuple[str, ...] = ()) -> None:
    for cidr in addresses(iface):
        if cidr not in keep:
            addr_del(iface, cidr)


# ---- routes and rules ----------------------------------------------------------------------------
def _route_args(dst, dev=None, gateway=None, table=None, src=None, onlink=False, scope=None) -> dict:
    net = IPv4Network(dst) if dst != "default" else IPv4Network("0.0.0.0/0")
    kw: dict = {"dst": str(net.network_address), "dst_len": net.prefixlen, "family": socket.AF_INET}
    if dev is not None:
        kw["oif"] = link_index(dev)
    if gateway is not None:
        kw["gateway"] = str(gateway)
    if table is not None:
        kw["table"] = table
    if src is not None:
        kw["prefsrc"] = str(src)
    if onlink:
        kw["flags"] = RTNH_F_ONLINK
    if scope is not None:
        kw["scope"] = scope
    return kw


def route_replace(dst, dev=None, gateway=None, table=None, src=None, onlink=False, scope=None) -> None:
    """Add or replace a route; `dst` is a prefix or 'default'."""
    ipr().route("replace", **_route_args(dst, dev, gateway, table, src, onlink, scope))


def route_del(dst, dev=None, table=None) -> None:
    _quiet(ipr().route, "del", **_route_args(dst, dev, table=table))


def routes_flush(dev: str, table: int = 254) -> None:
    """Delete the IPv4 routes of `table` (main by default) that leave by `dev`."""
    index = link_index(dev)
    for msg in ipr().get_routes(family=socket.AF_INET, table=table):
        if msg.get_attr("RTA_OIF") == index and msg.get_attr("RTA_TABLE") == table:
            _quiet(ipr().route, "del", table=table, dst=msg.get_attr("RTA_DST") or "0.0.0.0",
                   dst_len=msg["dst_len"], oif=index, scope=msg["scope"], proto=msg["proto"],
                   family=socket.AF_INET)


def table_flush(table: int) -> None:
    for msg in ipr().get_routes(family=socket.AF_INET, table=table):
        if msg.get_attr("RTA_TABLE") == table:
            _quiet(ipr().route, "del", table=table, dst=msg.get_attr("RTA_DST") or "0.0.0.0",
                   dst_len=msg["dst_len"], scope=msg["scope"], proto=msg["proto"], family=socket.AF_INET)


def rule_add(table: int, priority: int, src=None, iif: str | None = None) -> None:
    """A policy rule `from src [iif iif] lookup table`; an identical rule already there is kept
    (never delete-then-add: packets would take the main table in between)."""
    _quiet(ipr().rule, "add", **_rule_args(table, priority, src, iif), ignore=(EEXIST,))


def rule_del(table: int, priority: int, src=None, iif: str | None = None) -> None:
    _quiet(ipr().rule, "del", **_rule_args(table, priority, src, iif))


def _rule_args(table, priority, src, iif) -> dict:
    kw: dict = {"table": table, "priority": priority, "family": socket.AF_INET}
    if src is not None:
        kw["src"], kw["src_len"] = str(IPv4Address(src)), 32
    if iif is not None:
        kw["iifname"] = iif
    return kw


# ---- neighbours and proxy ARP --------------------------------------------------------------------
def neigh_replace(ip, lladdr: str, dev: str) -> None:
    """A permanent neighbour entry: `ip` is at `lladdr` on `dev`."""
    ipr().neigh("replace", dst=str(ip), lladdr=lladdr, ifindex=link_index(dev), state=NUD_PERMANENT,
                family=socket.AF_INET)


def neigh_del(ip, dev: str) -> None:
    _quiet(ipr().neigh, "del", dst=str(ip), ifindex=link_index(dev), family=socket.AF_INET)


def neigh_flush(dev: str) -> None:
    """Forget the non-permanent neighbour entries of `dev`, and the packets queued on unresolved
    ones (a TCP segment queued there blocks its own retransmission until the entry fails)."""
    index = link_index(dev)
    for msg in ipr().get_neighbours(family=socket.AF_INET, ifindex=index):
        if msg["state"] & NUD_PERMANENT or msg["flags"] & NTF_PROXY:
            continue
        _quiet(ipr().neigh, "del", dst=msg.get_attr("NDA_DST"), ifindex=index, family=socket.AF_INET)


def proxy_arp(ip, dev: str, on: bool) -> None:
    """Answer (or stop answering) ARP requests for `ip` on `dev` (a proxy neighbour entry).

    The kernel answers only when it forwards, when the route to `ip` leaves by another
    interface, and (for broadcast requests) after proxy_delay: the caller sets the sysctls
    with `enable_proxy_arp`."""
    if on:
        _quiet(ipr().neigh, "replace", dst=str(ip), ifindex=link_index(dev), flags=NTF_PROXY,
               family=socket.AF_INET, ignore=(EEXIST,))
    else:
        _quiet(ipr().neigh, "del", dst=str(ip), ifindex=link_index(dev), flags=NTF_PROXY, family=socket.AF_INET)


def enable_proxy_arp(dev: str) -> None:
    """What proxy neighbour entries need: forwarding, no delay, and no redirects on `dev`."""
    sysctl("net/ipv4/ip_forward", 1)
    sysctl(f"net/ipv4/neigh/{dev}/proxy_delay", 0)
    sysctl(f"net/ipv4/conf/{dev}/send_redirects", 0)


def sysctl(path: str, value) -> None:
    """Write /proc/sys/<path> (of this network namespace)."""
    with open(f"/proc/sys/{path}", "w") as f:
        f.write(f"{value}\n")


def sysctl_get(path: str) -> str:
    with open(f"/proc/sys/{path}") as f:
        return f.read().strip()


# ---- carrier monitor -----------------------------------------------------------------------------
class LinkMonitor:
    """Carrier (IFF_LOWER_UP) changes of one interface, from rtnetlink link notifications.

    Register `monitor.fileno()` with the event loop and call `monitor.poll()` when readable; it
    calls `on_change(up: bool)` for every change of the carrier of `iface`."""

    def __init__(self, iface: str, on_change: Callable[[bool], None]):
        self.iface, self.on_change = iface, on_change
        self.index = link_index(iface)
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE)
        self.sock.bind((0, RTMGRP_LINK))
        self.up = link_carrier(iface)
        self.changes = self._carrier_changes()

    def _carrier_changes(self) -> int:
        try:
            with open(f"/sys/class/net/{self.iface}/carrier_changes") as f:
                return int(f.read())
        except (OSError, ValueError):
            return 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def poll(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ENOBUFS: notifications lost; re-read the state
                self._set(link_carrier(self.iface))
                continue
            offset = 0
            while offset + 32 <= len(data):
                length, kind = struct.unpack_from("=IH", data, offset)
                if length < 16:
                    break
                if kind in (RTM_NEWLINK, RTM_DELLINK):
                    _family, _pad, _type, index, flags, _change = struct.unpack_from("=BBHiII", data, offset + 16)
                    if index == self.index:
                        self._set(kind == RTM_NEWLINK and bool(flags & IFF_LOWER_UP) and bool(flags & IFF_UP))
                offset += (length + 3) & ~3

    def _set(self, up: bool) -> None:
        """A quick flap (down and up again before the kernel's link watcher reported) shows only
        in the carrier-change counter: report it as a down and an up."""
        changes = self._carrier_changes()
        flapped = up and self.up and changes >= self.changes + 2
        self.changes = changes
        if flapped:
            self.up = False
            self.on_change(False)
        if up != self.up:
            self.up = up
            self.on_change(up)

    def close(self) -> None:
        self.sock.close()
