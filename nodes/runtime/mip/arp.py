"""The Mobile IP executor's ARP on a link: proxy-ARP entries for the home addresses an agent answers
for, and gratuitous ARPs paced by nodes/runtime/mip/garp_pacer.py.

RFC 5944 4.6: a gratuitous ARP is sent again later, in case the first one was lost; a later
announcement for the same address, or the end of proxying it, replaces or cancels the pending one
(a node back home within the 100 ms must not have its own announcement overridden by a stale one).
With host changes queued or being sent, an announcement waits for them (`take_waiting`, `release`):
it must not draw traffic the kernel cannot forward yet.
"""
from __future__ import annotations

import asyncio
from collections import Counter

from nodes.mip.actions import ProxyArp
from nodes.runtime.host import netlink
from nodes.runtime.clock import Clock
from nodes.runtime.mip.garp_pacer import GarpPacer
from nodes.runtime.mip.host_changes import QueuedHostChanges


class ArpAnnouncer:
    def __init__(self, links: dict, counters: Counter, clock: Clock, pacer: GarpPacer, changes: QueuedHostChanges):
        self.links, self.counters, self.clock, self.pacer, self.changes = links, counters, clock, pacer, changes
        self._proxy_ready: set[str] = set()  # interfaces whose proxy-ARP sysctls are set
        self._waiting: dict = {}  # (iface, addr) -> True: announcements waiting for the queued changes
        self._pace_handle: asyncio.Handle | None = None
        self._pace_at = 0.0
        self.loop: asyncio.AbstractEventLoop | None = None  # its clock is monotonic, like self.clock.now()

    def proxy(self, a: ProxyArp, iface: str) -> None:
        """Start or stop answering ARP for `a.addr` on `iface`; stopping cancels its announcements."""
        if a.on and iface not in self._proxy_ready:  # three sysctl writes, once per interface
            netlink.enable_proxy_arp(iface)
            self._proxy_ready.add(iface)
        self.changes.change(netlink.proxy_arp_request(a.addr, self.changes.ifindex(iface), a.on),
                            "proxy-on" if a.on else "proxy-off", a.addr, iface)
        if not a.on:
            self.changes.forget(a.addr)
            self.cancel((iface, a.addr))

    def gratuitous(self, iface: str, addr) -> None:
        """Announce `addr` on `iface`: now (as the pace allows) or after the queued host changes."""
        if iface not in self.links:
            raise ValueError(f"gratuitous ARP on {iface!r}: no link socket there")
        key = (iface, addr)
        if len(self.changes):
            self._waiting[key] = True
            return
        if not self.pacer.announce(key):
            self.counters["drop:gratuitous-arp-queue-full"] += 1
        if self.loop is None:
            self.pace()
        else:
            self._arm()

    def take_waiting(self) -> dict:
        """The announcements that waited for the host changes being sent now."""
        waiting, self._waiting = self._waiting, {}
        return waiting

    def release(self, keys: dict) -> None:
        """The host changes `keys` waited for are done: to the pacer."""
        for key in keys:
            if not self.pacer.announce(key):
                self.counters["drop:gratuitous-arp-queue-full"] += 1
        if self.loop is None:
            self.catch_up()
        elif keys:
            self._arm()

    def catch_up(self) -> None:
        """Without an event loop (a test): send what is due now."""
        if self.loop is None and len(self.pacer):
            self.pace()

    def cancel(self, key) -> None:
        """Proxying for the address stopped: no announcement for it, pending or waiting."""
        waiting = self._waiting.pop(key, None) is not None
        pending = self.pacer.cancel(key)  # both, always: neither may outlive the proxying
        if waiting or pending:
            self.counters["gratuitous-arp-repeat-cancelled"] += 1

    def pace(self) -> None:
        """Send the gratuitous ARPs that are due (as many as the pace allows), re-arm for the rest."""
        self._pace_handle = None
        for (iface, addr), repeat in self.pacer.due(self.clock.now()):
            ok = self.links[iface].gratuitous_arp(addr) is not False
            what = "gratuitous-arp-repeated" if repeat else "gratuitous-arp"
            self.counters[what if ok else f"send-error-{what}"] += 1
        if self.loop is not None:
            self._arm()

    def _arm(self) -> None:
        """One timer at the pacer's next deadline, in a callback of its own: after this turn's replies."""
        at = self.pacer.next_deadline()
        if at is None or (self._pace_handle is not None and self._pace_at <= at):
            return
        if self._pace_handle is not None:
            self._pace_handle.cancel()
        self._pace_at = at
        self._pace_handle = self.loop.call_at(at, self.pace)

    def stop(self) -> None:
        if self._pace_handle is not None:
            self._pace_handle.cancel()
            self._pace_handle = None
