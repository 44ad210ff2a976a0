"""Kernel configuration over netlink (pyroute2) for the userspace data planes: links, addresses,
routes, policy rules, neighbour and proxy-ARP entries, sysctls, and a carrier monitor.

Everything acts in the calling process's network namespace (a node of the world). Calls are
idempotent where the kernel allows it (replace rather than add; deleting what is absent is
not an error), so a daemon can re-apply its state after a move without bookkeeping.
"""
from __future__ import annotations

import os
import socket
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
    global _pool
    _rtnl.close()
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


# ---- direct rtnetlink requests -------------------------------------------------------------------
# The requests a daemon makes per registration or per move (routes, neighbour and proxy entries,
# addresses, rules) go straight to a plain NETLINK_ROUTE socket from the calling thread: one
# datagram out, the kernel's acknowledgement back, about 20 us. Through pyroute2 and its worker
# thread the same request costs about half a millisecond, which capped a home agent at about a
# thousand registrations a second; the dumps a mobile node's move needs (addresses, routes and
# neighbours of its link, to flush them) go the same way.
NLM_F_REQUEST, NLM_F_ACK, NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x100, 0x200, 0x400
NLMSG_ERROR, NLMSG_DONE, NLM_F_DUMP = 2, 3, 0x300
RTM_GETADDR, RTM_GETROUTE, RTM_GETNEIGH = 22, 26, 30
_RTMSG, _NDMSG, _IFADDRMSG = struct.Struct("=BBBBBBBBI"), struct.Struct("=BxxxiHBB"), struct.Struct("=BBBBI")
RTM_NEWADDR, RTM_DELADDR, RTM_NEWROUTE, RTM_DELROUTE = 20, 21, 24, 25
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_NEWRULE, RTM_DELRULE = 28, 29, 32, 33
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 7, 15
NDA_DST, NDA_LLADDR = 1, 2
IFA_ADDRESS, IFA_LOCAL = 1, 2
FRA_SRC, FRA_IIFNAME, FRA_PRIORITY, FRA_TABLE = 2, 3, 6, 15
RTPROT_STATIC, RTN_UNICAST, RT_SCOPE_UNIVERSE, RT_SCOPE_NOWHERE, RT_TABLE_MAIN, RT_TABLE_COMPAT = 4, 1, 0, 255, 254, 252
FR_ACT_TO_TBL = 1
_NLMSGHDR = struct.Struct("=IHHII")
BATCH_MAX = 256  # messages per datagram: its refusals fit the socket's receive buffer many times over


@dataclass(frozen=True)
class Request:
    """One rtnetlink request, built but not sent: `kind` and `flags` of its header, its `body`, the
    errnos that mean "already so" (`ignore`), and what it does in words (`what`, for logs: put
    together from `about`, a format and its values, only when asked; a home agent builds
    thousands a second)."""

    kind: int
    flags: int
    body: bytes
    ignore: tuple[int, ...] = ()
    about: tuple = ()

    @property
    def what(self) -> str:
        return self.about[0].format(*self.about[1:]) if self.about else ""


def send_batch(requests: list[Request]) -> list[tuple[int, int]]:
    """Send the requests in order, in as few datagrams as possible; (index, errno) of each refused
    one whose errno its request does not ignore (nodes/runtime/host/netlink_batch.py queues them)."""
    refused = _rtnl.batch([(r.kind, r.flags, r.body) for r in requests])
    return [(i, e) for i, e in refused if e not in requests[i].ignore]


def apply(request: Request) -> None:
    """Send one request and wait for its answer; a refusal it does not ignore raises NetlinkError."""
    try:
        _rtnl.request(request.kind, request.flags, request.body)
    except NetlinkError as exc:
        if exc.code not in request.ignore:
            raise


def _attr(kind: int, value: bytes) -> bytes:
    length = 4 + len(value)
    return struct.pack("=HH", length, kind) + value + b"\0" * (-length % 4)


def _ip(value) -> bytes:
    # IPv4Address(an IPv4Address) goes through its string: the common case skips that
    return value.packed if type(value) is IPv4Address else IPv4Address(value).packed


class _Rtnl:
    """One NETLINK_ROUTE socket for requests with an acknowledgement (no dumps, no groups)."""

    def __init__(self):
        self.sock: socket.socket | None = None
        self.seq = 0
        self.lock = threading.Lock()

    def request(self, kind: int, flags: int, body: bytes) -> None:
        """Send one request and wait for its acknowledgement; a refusal raises NetlinkError."""
        (_index, error), = self.batch([(kind, flags, body)], ack_all=True)
        if error:
            raise NetlinkError(error, os.strerror(error))

    def batch(self, requests, ack_all: bool = False) -> list[tuple[int, int]]:
        """Send many requests in as few datagrams as possible (BATCH_MAX each) and return the
        (index, errno) of the refused ones.

        The kernel handles the messages of one datagram in order and answers a refused one with an
        error message carrying its sequence number, acknowledged or not; only the last message
        asks for an acknowledgement, which also says that all before it were handled. With
        `ack_all`, every message asks for one and every outcome is returned (errno 0: done)."""
        out: list[tuple[int, int]] = []
        with self.lock:
            self._open()
            for start in range(0, len(requests), BATCH_MAX):
                chunk = requests[start:start + BATCH_MAX]
                first, last = self.seq + 1, len(chunk) - 1
                parts = []
                for i, (kind, flags, body) in enumerate(chunk):
                    ack = NLM_F_ACK if ack_all or i == last else 0
                    parts.append(_NLMSGHDR.pack(16 + len(body), kind, flags | NLM_F_REQUEST | ack,
                                                (first + i) & 0xFFFFFFFF, 0) + body)
                self.seq = (first + last) & 0xFFFFFFFF
                self.sock.send(b"".join(parts))
                for index, error in self._answers(first, last):
                    if error or ack_all:
                        out.append((start + index, error))
        return out

    def _answers(self, first: int, last: int):
        """(index, errno) of the answers to the messages numbered first..first+last, until the
        last one's (its acknowledgement or its refusal) has come; answers to anything else (an
        earlier request whose reader was interrupted) are skipped."""
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length, mtype, _flags, mseq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if length < 16:
                    break
                index = (mseq - first) & 0xFFFFFFFF
                if mtype == NLMSG_ERROR and index <= last:
                    (error,) = struct.unpack_from("=i", data, offset + 16)
                    yield index, -error
                    if index == last:
                        return
                offset += (length + 3) & ~3

    def dump(self, kind: int, body: bytes, header: struct.Struct) -> list[tuple[tuple, dict[int, bytes]]]:
        """A dump request: every answer as (its fixed header's fields, {attribute type: value})."""
        out = []
        with self.lock:
            self._open()
            self.seq = (self.seq + 1) & 0xFFFFFFFF
            seq = self.seq
            self.sock.send(_NLMSGHDR.pack(16 + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body)
            while True:
                data = self.sock.recv(1 << 16)
                offset = 0
                while offset + 16 <= len(data):
                    length, mtype, _flags, mseq, _pid = _NLMSGHDR.unpack_from(data, offset)
                    if length < 16:
                        break
                    if mseq == seq:
                        if mtype == NLMSG_DONE:
                            return out
                        if mtype == NLMSG_ERROR:
                            (error,) = struct.unpack_from("=i", data, offset + 16)
                            if error:
                                raise NetlinkError(-error, os.strerror(-error))
                        else:
                            fixed = header.unpack_from(data, offset + 16)
                            attrs, a = {}, offset + 16 + header.size
                            while a + 4 <= offset + length:
                                alen, atype = struct.unpack_from("=HH", data, a)
                                if alen < 4:
                                    break
                                attrs[atype & 0x3FFF] = data[a + 4:a + alen]
                                a += (alen + 3) & ~3
                            out.append((fixed, attrs))
                    offset += (length + 3) & ~3

    def _open(self) -> None:
        if self.sock is None:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self.sock.bind((0, 0))

    def close(self) -> None:
        with self.lock:
            if self.sock is not None:
                self.sock.close()
                self.sock = None


_rtnl = _Rtnl()


def _oif(dev) -> int:
    """An interface given by name or (resolved once by a caller that sends many requests) index."""
    return dev if isinstance(dev, int) else link_index(dev)


def _route_request(kind: int, flags: int, dst, dev=None, gateway=None, table=None, src=None, onlink=False,
                   scope=None, proto=None, ignore=(), about=()) -> Request:
    """`dst`: a prefix, 'default', or an IPv4Address for a host route (no parsing: the common case)."""
    if type(dst) is IPv4Address:
        prefixlen, network = 32, dst.packed
    else:
        net = IPv4Network(dst) if dst != "default" else IPv4Network("0.0.0.0/0")
        prefixlen, network = net.prefixlen, net.network_address.packed
    table = RT_TABLE_MAIN if table is None else table
    delete = kind == RTM_DELROUTE
    if scope is None:
        scope = RT_SCOPE_NOWHERE if delete else RT_SCOPE_UNIVERSE  # a delete matches any scope
    if proto is None:
        proto = 0 if delete else RTPROT_STATIC
    body = struct.pack("=BBBBBBBBI", socket.AF_INET, prefixlen, 0, 0, table if table < 256 else RT_TABLE_COMPAT,
                       proto, scope, 0 if delete else RTN_UNICAST, RTNH_F_ONLINK if onlink else 0)
    body += _attr(RTA_TABLE, struct.pack("=I", table))
    if prefixlen or not delete:
        body += _attr(RTA_DST, network)
    if dev is not None:
        body += _attr(RTA_OIF, struct.pack("=i", _oif(dev)))
    if gateway is not None:
        body += _attr(RTA_GATEWAY, _ip(gateway))
    if src is not None:
        body += _attr(RTA_PREFSRC, _ip(src))
    return Request(kind, flags, body, ignore, about)


def _neigh_request(kind: int, flags: int, ip, dev, state: int = NUD_PERMANENT, ntf: int = 0,
                   lladdr: str | None = None, ignore=(), about=()) -> Request:
    body = struct.pack("=BxxxiHBB", socket.AF_INET, _oif(dev), state, ntf, 0) + _attr(NDA_DST, _ip(ip))
    if lladdr is not None:
        body += _attr(NDA_LLADDR, bytes.fromhex(lladdr.replace(":", "")))
    return Request(kind, flags, body, ignore, about)


_ABSENT = (ENOENT, ESRCH, EADDRNOTAVAIL)  # deleting what is not there
# a route's `what`: to a prefix, or to a host (its address)
_ROUTE_ABOUT = {(verb, host): f"route {verb} {{}}{'/32' if host else ''}" for verb in ("replace", "del") for host in (0, 1)}


# ---- links ---------------------------------------------------------------------------------------
def link_index(name: str) -> int:
    """The interface's index in this network namespace (SIOCGIFINDEX: a few microseconds, and right
    also where /sys shows another namespace's interfaces)."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise LookupError(f"no interface {name!r} in this network namespace") from None


def link_mac(name: str) -> str:
    with open(f"/sys/class/net/{name}/address") as f:
        return f.read().strip()


def link_carrier(name: str) -> bool:
    try:
        with open(f"/sys/class/net/{name}/carrier") as f:
            return f.read().strip() == "1"
    except OSError:  # reading carrier of an administratively down link fails with EINVAL
        return False


def link_set(name: str, mtu: int | None = None, up: bool | None = None, txqueuelen: int | None = None) -> None:
    kw = {}
    if mtu is not None:
        kw["mtu"] = mtu
    if txqueuelen is not None:
        kw["txqlen"] = txqueuelen
    if up is not None:
        kw["state"] = "up" if up else "down"
    if kw:
        ipr().link("set", index=link_index(name), **kw)


# ---- addresses -----------------------------------------------------------------------------------
def _addr_msg(kind: int, flags: int, iface: str, cidr: str) -> None:
    i = IPv4Interface(cidr)
    body = struct.pack("=BBBBI", socket.AF_INET, i.network.prefixlen, 0, RT_SCOPE_UNIVERSE, link_index(iface))
    _rtnl.request(kind, flags, body + _attr(IFA_LOCAL, i.ip.packed) + _attr(IFA_ADDRESS, i.ip.packed))


def addr_add(iface: str, cidr: str) -> None:
    _quiet(_addr_msg, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, iface, cidr, ignore=(EEXIST,))


def addr_del(iface: str, cidr: str) -> None:
    _quiet(_addr_msg, RTM_DELADDR, 0, iface, cidr)


def addresses(iface: str) -> list[str]:
    """IPv4 addresses on `iface` as CIDR strings."""
    index = link_index(iface)
    out = []
    for (_family, prefixlen, _flags, _scope, ifindex), attrs in _rtnl.dump(RTM_GETADDR, _IFADDRMSG.pack(
            socket.AF_INET, 0, 0, 0, 0), _IFADDRMSG):
        if ifindex == index and IFA_ADDRESS in attrs:
            out.append(f"{socket.inet_ntoa(attrs[IFA_ADDRESS])}/{prefixlen}")
    return out


def addr_flush(iface: str, keep: tuple[str, ...] = ()) -> None:
    for cidr in addresses(iface):
        if cidr not in keep:
            addr_del(iface, cidr)


# ---- routes and rules ----------------------------------------------------------------------------
def route_replace_request(dst, dev=None, gateway=None, table=None, src=None, onlink=False, scope=None) -> Request:
    """Add or replace a route; `dst` is a prefix, 'default' or an IPv4Address (a host route), `dev`
    a name or an index."""
    return _route_request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, dst, dev, gateway, table, src, onlink, scope,
                          about=(_ROUTE_ABOUT["replace", type(dst) is IPv4Address], dst))


def route_del_request(dst, dev=None, table=None) -> Request:
    return _route_request(RTM_DELROUTE, 0, dst, dev, table=table, ignore=_ABSENT,
                          about=(_ROUTE_ABOUT["del", type(dst) is IPv4Address], dst))


def route_replace(dst, dev=None, gateway=None, table=None, src=None, onlink=False, scope=None) -> None:
    """Add or replace a route; `dst` is a prefix or 'default'."""
    apply(route_replace_request(dst, dev, gateway, table, src, onlink, scope))


def route_del(dst, dev=None, table=None) -> None:
    apply(route_del_request(dst, dev, table))


def _routes(table: int) -> list[tuple[tuple, dict]]:
    """The IPv4 routes of `table`: (rtmsg fields, attributes)."""
    found = []
    for fixed, attrs in _rtnl.dump(RTM_GETROUTE, _RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0), _RTMSG):
        t = struct.unpack("=I", attrs[RTA_TABLE])[0] if RTA_TABLE in attrs else fixed[4]
        if t == table:
            found.append((fixed, attrs))
    return found


def _route_del_exact(fixed: tuple, attrs: dict, table: int) -> None:
    family, dst_len, _src_len, tos, _t, proto, scope, rtype, _flags = fixed
    body = _RTMSG.pack(family, dst_len, 0, tos, table if table < 256 else RT_TABLE_COMPAT, proto, scope, rtype, 0)
    body += _attr(RTA_TABLE, struct.pack("=I", table))
    for kind in (RTA_DST, RTA_OIF):
        if kind in attrs:
            body += _attr(kind, attrs[kind])
    _quiet(_rtnl.request, RTM_DELROUTE, 0, body)


def routes_flush(dev: str, table: int = 254) -> None:
    """Delete the IPv4 routes of `table` (main by default) that leave by `dev`."""
    oif = struct.pack("=i", link_index(dev))
    for fixed, attrs in _routes(table):
        if attrs.get(RTA_OIF) == oif:
            _route_del_exact(fixed, attrs, table)


def table_flush(table: int) -> None:
    for fixed, attrs in _routes(table):
        _route_del_exact(fixed, attrs, table)


def rule_add(table: int, priority: int, src=None, iif: str | None = None) -> None:
    """A policy rule `from src [iif iif] lookup table`; an identical rule already there is kept
    (never delete-then-add: packets would take the main table in between)."""
    _quiet(_rule_msg, RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL, table, priority, src, iif, ignore=(EEXIST,))


def rule_del(table: int, priority: int, src=None, iif: str | None = None) -> None:
    _quiet(_rule_msg, RTM_DELRULE, 0, table, priority, src, iif)


def _rule_msg(kind: int, flags: int, table: int, priority: int, src, iif) -> None:
    body = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 32 if src is not None else 0, 0,
                       table if table < 256 else 0, 0, 0, FR_ACT_TO_TBL, 0)
    body += _attr(FRA_TABLE, struct.pack("=I", table)) + _attr(FRA_PRIORITY, struct.pack("=I", priority))
    if src is not None:
        body += _attr(FRA_SRC, _ip(src))
    if iif is not None:
        body += _attr(FRA_IIFNAME, iif.encode() + b"\0")
    _rtnl.request(kind, flags, body)


# ---- neighbours and proxy ARP --------------------------------------------------------------------
def neigh_replace_request(ip, lladdr: str, dev) -> Request:
    """A permanent neighbour entry: `ip` is at `lladdr` on `dev` (a name or an index)."""
    return _neigh_request(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, ip, dev, lladdr=lladdr,
                          about=("neighbour {} at {}", ip, lladdr))


def neigh_del_request(ip, dev) -> Request:
    return _neigh_request(RTM_DELNEIGH, 0, ip, dev, state=0, ignore=_ABSENT, about=("neighbour del {}", ip))


def neigh_replace(ip, lladdr: str, dev: str) -> None:
    apply(neigh_replace_request(ip, lladdr, dev))


def neigh_del(ip, dev: str) -> None:
    apply(neigh_del_request(ip, dev))


def neigh_flush(dev: str) -> None:
    """Forget the non-permanent neighbour entries of `dev`, and the packets queued on unresolved
    ones (a TCP segment queued there blocks its own retransmission until the entry fails)."""
    index = link_index(dev)
    for (_family, ifindex, state, flags, _type), attrs in _rtnl.dump(
            RTM_GETNEIGH, _NDMSG.pack(socket.AF_INET, 0, 0, 0, 0), _NDMSG):
        if ifindex != index or state & NUD_PERMANENT or flags & NTF_PROXY or NDA_DST not in attrs:
            continue
        apply(neigh_del_request(socket.inet_ntoa(attrs[NDA_DST]), ifindex))


def proxy_arp_request(ip, dev, on: bool) -> Request:
    """Answer (or stop answering) ARP requests for `ip` on `dev` (a name or an index): a proxy
    neighbour entry.

    The kernel answers only when it forwards, when the route to `ip` leaves by another
    interface, and (for broadcast requests) after proxy_delay: the caller sets the sysctls
    with `enable_proxy_arp`."""
    if on:
        return _neigh_request(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, ip, dev, ntf=NTF_PROXY, ignore=(EEXIST,),
                              about=("proxy ARP on {}", ip))
    return _neigh_request(RTM_DELNEIGH, 0, ip, dev, state=0, ntf=NTF_PROXY, ignore=_ABSENT, about=("proxy ARP off {}", ip))


def proxy_arp(ip, dev: str, on: bool) -> None:
    apply(proxy_arp_request(ip, dev, on))


def enable_proxy_arp(dev: str) -> None:
    """What proxy neighbour entries need: forwarding, no delay, and no redirects on `dev`."""
    sysctl("net/ipv4/ip_forward", 1)
    sysctl(f"net/ipv4/neigh/{dev}/proxy_delay", 0)
    sysctl(f"net/ipv4/conf/{dev}/send_redirects", 0)


def sysctl(key: str, value) -> str | None:
    """Write /proc/sys/<key> of this network namespace ('net/ipv4/ip_forward' or the dotted
    'net.ipv4.ip_forward'); returns the old value, None when the key does not exist."""
    path = "/proc/sys/" + (key if "/" in key else key.replace(".", "/"))
    try:
        with open(path) as f:
            old = f.read().strip()
        with open(path, "w") as f:
            f.write(f"{value}\n")
    except FileNotFoundError:
        return None
    return old


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
