"""The Mobile IP executor's host changes (tunnel routes, proxy-ARP and neighbour entries) through a
`NetlinkBatch` (nodes/runtime/host/netlink_batch.py), and the actions that wait for them.

With `batch=True` (the home agent) the changes are queued while the event loop handles a burst of
requests and sent as one rtnetlink batch at the end of the loop's turn, or as soon as FLUSH_AT are
queued; the replies that come after a queued change wait for that batch (RFC 5944 sections 3.6
and 4.6: a reply never announces a binding whose route is not in place yet). With `batch=False`
each change is sent at once. A change the kernel refuses is logged with what to do, counted
(drop:netlink:...), and, when it was an addition for a bound home address, tried again at the
node's next registration.
"""
from __future__ import annotations

import asyncio
import errno
from collections import Counter
from ipaddress import IPv4Address

from nodes.mip.actions import SendIcmp, SendUdp
from nodes.runtime.host import netlink
from nodes.runtime.host.netlink_batch import Failure, NetlinkBatch

FLUSH_AT = 32  # host changes that make a batch before the end of a turn

# what waits for the queued host changes: a registration reply must not announce a binding whose
# route is not there yet (gratuitous ARPs wait too, in nodes/runtime/mip/arp.py)
_AFTER_HOST_CHANGES = (SendUdp, SendIcmp)
# what to do when the kernel refuses a host change, by operation
_HINTS = {
    "tunnel-route": "packets for {addr} are not captured into {dev}; check the device (ip link show {dev}): "
                    "the node's next registration tries again",
    "proxy-on": "the home link cannot reach {addr} through the home agent; check {dev} (ip link show {dev}): "
                "the node's next registration tries again",
    "tunnel-route-del": "a route for {addr} may be left behind: ip route del {addr}/32 dev {dev}",
    "proxy-off": "the home agent may still answer ARP for {addr}: ip neigh del proxy {addr} dev {dev}",
    "host-route": "the visitor {addr} is not reachable on {dev}; check the device (ip link show {dev})",
    "host-route-del": "a route or neighbour entry for {addr} may be left behind on {dev}: "
                      "ip route del {addr}/32 dev {dev}; ip neigh del {addr} dev {dev}",
}


class QueuedHostChanges:
    """The queue of host changes. `flush` is the executor's: it sends the batch (`send`), then runs
    what waited for it; `tunnels` are the executor's (home -> AddTunnel): a refused addition is
    retried only for a home address still bound."""

    def __init__(self, log, counters: Counter, host: NetlinkBatch, *, batch: bool, tunnels: dict, flush):
        self.log, self.counters, self.host = log, counters, host
        self.batch = batch  # queue until the end of the loop's turn (else send each at once)
        # ... or until this many are queued: the replies of the first new bindings of a turn (up to
        # 64 requests) leave while the rest are read, so their senders can go on
        self.flush_at = FLUSH_AT
        self.tunnels = tunnels
        self._flush = flush
        self.after: list = []  # actions waiting for the queued host changes, in order
        self._changed: dict[str, list[str]] = {}  # operation -> addresses, logged once per batch
        self._retry: dict[IPv4Address, set] = {}  # home -> refused additions to try again: {(op, dev)}
        self._flush_handle: asyncio.Handle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self.host)

    def ifindex(self, name: str) -> int:
        return self.host.ifindex(name)

    def change(self, request: netlink.Request, op: str, addr, dev: str, note: str | None = None) -> None:
        """Queue one host change (sent at once without `batch`); `note` describes it in the batch's
        log line (the address by default)."""
        self.host.add(request, (op, addr, dev))
        self._changed.setdefault(op, []).append(note or str(addr))
        if not self.batch:
            self._flush()

    def waits(self, action) -> bool:
        """True when `action` (a reply) must wait for the queued changes: it is kept for after them."""
        if isinstance(action, _AFTER_HOST_CHANGES) and (self.after or len(self.host)):
            self.after.append(action)
            return True
        return False

    def end_of_run(self) -> bool:
        """After a run of actions: flush when enough are queued (their replies need not wait for the
        end of the turn), else at the end of the turn; False when nothing is queued."""
        if len(self.host) >= self.flush_at:
            self._flush()
        elif len(self.host) or self.after:
            if self._flush_handle is None and self.loop is not None:  # no event loop (a test): the caller flushes
                self._flush_handle = self.loop.call_soon(self._flush)
        else:
            return False
        return True

    def send(self) -> list:
        """Send the queued changes as one batch (logged as one line, refusals logged and counted);
        the actions that waited for them, to run now."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        taken, after = self.host.take(), self.after
        self.after = []
        if self._changed:
            self.log("host-changes", **self._changed)
            self._changed = {}
        for failure in self.host.send(taken):
            self._refused(failure)
        return after

    def _refused(self, failure: Failure) -> None:
        op, addr, dev = failure.tag
        name = errno.errorcode.get(failure.errno, str(failure.errno))
        self.counters[f"drop:netlink:{op}:{name}"] += 1
        if op in ("tunnel-route", "proxy-on") and addr in self.tunnels:
            self._retry.setdefault(addr, set()).add((op, dev))
        hint = _HINTS.get(op, "check {dev}").format(addr=addr, dev=dev)
        self.log("host-change-refused", change=failure.request.what, dev=dev, error=failure.error, what_to_do=hint)

    def retry_refused(self, home: IPv4Address) -> None:
        """A registration of `home`: the additions the kernel refused for it before, again."""
        for op, dev in self._retry.pop(home, ()):
            if op == "tunnel-route":
                self.change(netlink.route_replace_request(home, dev=self.host.ifindex(dev)), op, home, dev)
            else:
                self.change(netlink.proxy_arp_request(home, self.host.ifindex(dev), True), op, home, dev)

    def forget(self, home: IPv4Address) -> None:
        """`home` is no longer bound (or proxied): nothing to try again for it."""
        self._retry.pop(home, None)
