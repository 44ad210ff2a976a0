"""The addresses and routes of a tunnel's TUN device on the tunnel's client side: the virtual address,
and full tunnel (0/1 and 128/1 into the TUN, with a host route that keeps the tunnel's own packets
to the gateway on the physical path) or split tunnel (the given networks); all taken back by down().

Everything goes over rtnetlink from the calling thread (nodes/runtime/host/netlink.py), the address
and all routes in one datagram: these requests stand between the IKE_AUTH response and the first
packet through the tunnel, where an `ip` process each (a few milliseconds apiece on a busy machine)
made the client slow to pass traffic.
The routes are what `ip route replace NET dev TUN src VIP` makes (scope link), the host route what
`ip route replace GW/32 via NEXTHOP dev IF` makes.
"""
from __future__ import annotations

import errno
import os
import socket
import struct
from ipaddress import IPv4Address

from pyroute2.netlink.exceptions import NetlinkError

from nodes.runtime.host import netlink as nl
from nodes.runtime.host.host_changes import HostChanges

FULL_TUNNEL = ["0.0.0.0/1", "128.0.0.0/1"]
_GET_FLAGS = nl.NLM_F_REQUEST


def route_get(address: str) -> dict:
    """The kernel's route toward `address` (what `ip route get` shows): {"dev": name, "gateway":
    next hop or absent, "prefsrc": source or absent}. One RTM_GETROUTE on a netlink socket of its
    own (the shared one only reads acknowledgements)."""
    body = nl._RTMSG.pack(socket.AF_INET, 32, 0, 0, 0, 0, 0, 0, 0) + nl._attr(nl.RTA_DST, IPv4Address(address).packed)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE) as s:
        s.bind((0, 0))
        s.send(nl._NLMSGHDR.pack(16 + len(body), nl.RTM_GETROUTE, _GET_FLAGS, 1, 0) + body)
        data = s.recv(65536)
    length, kind, _flags, _seq, _pid = nl._NLMSGHDR.unpack_from(data)
    if kind == nl.NLMSG_ERROR:
        (error,) = struct.unpack_from("=i", data, 16)
        raise OSError(-error, f"no route to {address}: {errno.errorcode.get(-error, -error)}"
                              " (check the node's routes toward the gateway)")
    attrs, at = {}, 16 + nl._RTMSG.size
    while at + 4 <= length:
        alen, atype = struct.unpack_from("=HH", data, at)
        if alen < 4:
            break
        attrs[atype & 0x3FFF] = data[at + 4:at + alen]
        at += (alen + 3) & ~3
    out: dict = {}
    if nl.RTA_OIF in attrs:
        out["dev"] = socket.if_indextoname(struct.unpack("=i", attrs[nl.RTA_OIF])[0])
    if nl.RTA_GATEWAY in attrs:
        out["gateway"] = socket.inet_ntoa(attrs[nl.RTA_GATEWAY])
    if nl.RTA_PREFSRC in attrs:
        out["prefsrc"] = socket.inet_ntoa(attrs[nl.RTA_PREFSRC])
    return out


def addr_add_request(index: int, virtual_ip: str) -> nl.Request:
    """What `ip addr add VIP/32 dev TUN` asks (an address that is there already is no error)."""
    packed = IPv4Address(virtual_ip).packed
    body = nl._IFADDRMSG.pack(socket.AF_INET, 32, 0, nl.RT_SCOPE_UNIVERSE, index)
    return nl.Request(nl.RTM_NEWADDR, nl.NLM_F_CREATE | nl.NLM_F_EXCL,
                      body + nl._attr(nl.IFA_LOCAL, packed) + nl._attr(nl.IFA_ADDRESS, packed), ignore=(errno.EEXIST,))


def _quietly(fn, *args, **kw) -> None:
    """Take a change back as `ip ... del` without a status check did: what is gone already (the
    address, the route, the TUN itself) is not an error at exit."""
    try:
        fn(*args, **kw)
    except (LookupError, OSError, NetlinkError):
        pass


class TunnelRoutes:
    def __init__(self, tun: str):
        self.tun = tun
        self.routes: list[str] = []
        self._changes = HostChanges()

    def up(self, virtual_ip: str, gateway: str, networks: list[str] | None) -> None:
        """`networks` None: full tunnel. The address and every route go to the kernel in one
        netlink datagram (handled in order: the address exists before the routes that name it as
        their source); a refused request raises NetlinkError after what was done is registered for
        down()."""
        tun, changes = self.tun, self._changes
        index = nl.link_index(tun)
        cidr = f"{virtual_ip}/32"
        requests = [addr_add_request(index, virtual_ip)]
        undo = [lambda: _quietly(nl.addr_del, tun, cidr)]
        if networks is None:
            via = route_get(gateway)
            host = f"{gateway}/32"
            requests.append(nl.route_replace_request(host, dev=via["dev"], gateway=via.get("gateway"),
                                                     scope=None if via.get("gateway") else nl.RT_SCOPE_LINK))
            undo.append(lambda: _quietly(nl.route_del, host))
            networks = FULL_TUNNEL
        for net in networks:
            requests.append(nl.route_replace_request(net, dev=index, src=virtual_ip, scope=nl.RT_SCOPE_LINK))
            undo.append(lambda net=net: _quietly(nl.route_del, net, dev=tun))
        refused = dict(nl.send_batch(requests))
        for i, take_back in enumerate(undo):
            if i not in refused:
                changes.on_exit(take_back)
        if refused:
            i, code = next(iter(refused.items()))
            raise NetlinkError(code, f"{requests[i].what or 'address add ' + cidr}: {os.strerror(code)}")
        self.routes = list(networks)

    def down(self) -> None:
        self._changes.undo_all()
        self.routes = []
