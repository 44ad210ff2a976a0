"""The Mobile IP runtime's performance paths (nodes/runtime/mip/actions.py, nodes/runtime/host/netlink.py):
what they must still do after being made cheap.

The netlink test needs root and a private network namespace (`unshare -n`); it is skipped without.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import textwrap
import time
from ipaddress import IPv4Address as A
from pathlib import Path

import pytest

from nodes.mip.actions import AddTunnel, GratuitousArp, Log, ProxyArp, RemoveTunnel, SendUdp
from nodes.runtime.mip import garp_pacer
from nodes.runtime.mip import actions as mip_actions
from nodes.runtime.mip import host_changes as mip_host_changes
from nodes.runtime.core_driver import CoreDriver
from nodes.runtime.mip.actions import MipExecutor
from nodes.runtime.host.netlink_batch import NetlinkBatch
from fakelink import Recorder

REPO = Path(__file__).resolve().parents[1]
ENODEV = 19


class FakeTun:
    name = "mip0"


class FakeKernel:
    """Stands in for netlink.send_batch: each batch's requests (by their `what`) go into the shared
    `timeline`; the ones named in `refuse` are refused with that errno."""

    def __init__(self, timeline: list):
        self.timeline, self.batches, self.refuse = timeline, [], {}

    def __call__(self, requests):
        self.batches.append([r.what for r in requests])
        self.timeline.extend(r.what for r in requests)
        return [(i, self.refuse[r.what]) for i, r in enumerate(requests) if r.what in self.refuse]


class FakeRaw:
    """The raw IP socket: the destination of each UDP datagram sent, into the timeline."""

    def __init__(self, timeline: list):
        self.timeline = timeline

    def send(self, packet: bytes) -> bool:
        self.timeline.append(f"reply to {A(packet[16:20])}")
        return True


class FakeLink:
    def __init__(self, timeline: list | None = None):
        self.sent, self.timeline = [], timeline if timeline is not None else []

    def gratuitous_arp(self, addr):
        self.sent.append(addr)
        self.timeline.append(f"garp {addr}")


@pytest.fixture(autouse=True)
def no_sysctls(monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(mip_actions.netlink, "enable_proxy_arp", rec.enable_proxy_arp)
    return rec


def executor(batch: bool = False, events: list | None = None, fields: list | None = None):
    """A home agent's executor on fake sockets and a fake kernel, all recording into one timeline."""
    timeline = []
    events = [] if events is None else events

    def log(event, **f):
        events.append(event)
        if fields is not None:
            fields.append((event, f))

    kernel = FakeKernel(timeline)
    ex = MipExecutor(log, raw=FakeRaw(timeline), tun=FakeTun(), links={"home0": FakeLink(timeline)}, capture="dst",
                     default_iface="home0", batch=batch, host=NetlinkBatch(kernel, lambda name: 7))
    return ex, events, kernel, timeline


HA = A("10.1.1.2")


def registration(home: str, coa: str = "192.0.2.1", new: bool = True) -> list:
    """What the HA core drains for an accepted registration (nodes/mip/ha.py _install; ha_registration.reply)."""
    home = A(home)
    actions = [AddTunnel(home, HA, A(coa))]
    if new:
        actions += [ProxyArp(home, True, "home0"), GratuitousArp(home, "home0", proxy=True)]
    return actions + [Log("registration", {"home": str(home)}), SendUdp(A(coa), 434, b"reply", src=HA)]


def deregistration(home: str, coa: str = "192.0.2.1") -> list:
    home = A(home)
    return [RemoveTunnel(home), ProxyArp(home, False, "home0"), Log("deregistration", {}),
            SendUdp(A(coa), 434, b"reply", src=HA)]


def test_ha_tunnel_route_is_set_once_and_only_a_change_is_logged():
    fields = []
    ex, events, kernel, _ = executor(fields=fields)
    t1 = AddTunnel(A("10.1.1.100"), A("10.1.1.2"), A("192.0.2.1"))
    ex.run([t1])
    ex.run([t1])  # re-registration, same care-of address: no netlink request, no log line
    ex.run([AddTunnel(A("10.1.1.100"), A("10.1.1.2"), A("192.0.2.129"))])  # moved: logged, route unchanged
    assert kernel.batches == [["route replace 10.1.1.100/32"]]
    # the new tunnel is logged with its route's batch, the move on its own
    assert events == ["host-changes", "tunnel"]
    assert fields[0][1] == {"tunnel-route": ["10.1.1.100 ipip 10.1.1.2-192.0.2.1"]}
    assert ex.tunnels[A("10.1.1.100")].remote == A("192.0.2.129")
    ex.run([RemoveTunnel(A("10.1.1.100")), t1])  # after a removal the route is set again
    assert kernel.batches[1:] == [["route del 10.1.1.100/32"], ["route replace 10.1.1.100/32"]]


def test_proxy_arp_sysctls_once_per_interface(no_sysctls):
    ex, _, kernel, _ = executor()
    ex.run([ProxyArp(A("10.1.1.100"), True), ProxyArp(A("10.1.1.101"), True), ProxyArp(A("10.1.1.100"), False),
            ProxyArp(A("10.1.1.102"), True, "other0")])
    assert [c[1] for c in no_sysctls.calls] == [("home0",), ("other0",)]
    assert len(kernel.batches) == 4  # without batching, one request at a time


def test_new_bindings_share_one_batch_and_their_replies_leave_after_it():
    """RFC 5944: a reply announces a binding, so its route and proxy entry are in the kernel before
    it leaves; the gratuitous ARPs come after the replies (they must not delay them)."""
    ex, _, kernel, timeline = executor(batch=True)
    ex.run(registration("10.1.1.100"))
    ex.run(registration("10.1.1.101", coa="192.0.2.9"))
    assert timeline == [], "nothing may happen before the batch is sent"
    ex.flush()
    assert kernel.batches == [["route replace 10.1.1.100/32", "proxy ARP on 10.1.1.100",
                               "route replace 10.1.1.101/32", "proxy ARP on 10.1.1.101"]]
    assert timeline[4:] == ["reply to 192.0.2.1", "reply to 192.0.2.9", "garp 10.1.1.100", "garp 10.1.1.101"]
    assert ex.counters["gratuitous-arp"] == 2


def test_a_reregistration_with_nothing_queued_is_answered_at_once():
    ex, _, kernel, timeline = executor(batch=True)
    ex.run(registration("10.1.1.100"))
    ex.flush()
    timeline.clear()
    ex.run(registration("10.1.1.100", new=False))  # same care-of address: no host change
    assert timeline == ["reply to 192.0.2.1"] and len(kernel.batches) == 1


def test_a_reply_queued_behind_host_changes_keeps_its_place():
    """A re-registration answered while another node's changes are queued waits for them too:
    the datagrams of a turn leave in the order the core asked for them."""
    ex, _, _, timeline = executor(batch=True)
    ex.run(registration("10.1.1.100"))
    ex.flush()
    timeline.clear()
    ex.run(registration("10.1.1.101", coa="192.0.2.9"))
    ex.run(registration("10.1.1.100", new=False))
    ex.flush()
    assert timeline == ["route replace 10.1.1.101/32", "proxy ARP on 10.1.1.101", "reply to 192.0.2.9",
                        "reply to 192.0.2.1", "garp 10.1.1.101"]


def test_registration_and_deregistration_in_one_batch_keep_their_order():
    ex, _, kernel, timeline = executor(batch=True)
    ex.run(registration("10.1.1.100"))
    ex.run(deregistration("10.1.1.100"))  # the node came home within the same turn
    ex.flush()
    assert kernel.batches == [["route replace 10.1.1.100/32", "proxy ARP on 10.1.1.100",
                               "route del 10.1.1.100/32", "proxy ARP off 10.1.1.100"]]
    # the announcement was cancelled with the proxy entry: no gratuitous ARP for a node at home
    assert timeline[4:] == ["reply to 192.0.2.1", "reply to 192.0.2.1"]
    assert ex.counters["gratuitous-arp"] == 0 and ex.counters["gratuitous-arp-repeat-cancelled"] == 1


def test_a_refused_change_is_logged_counted_and_tried_again_at_the_next_registration():
    fields = []
    ex, _, kernel, timeline = executor(batch=True, fields=fields)
    kernel.refuse["proxy ARP on 10.1.1.100"] = ENODEV
    ex.run(registration("10.1.1.100"))
    ex.flush()
    assert "reply to 192.0.2.1" in timeline  # the core accepted the binding: the node hears so
    assert ex.counters["drop:netlink:proxy-on:ENODEV"] == 1
    assert ex.drops() == {"netlink:proxy-on:ENODEV": 1}
    assert ex.action_errors() == {"drop:netlink:proxy-on:ENODEV": 1}
    refused = [f for e, f in fields if e == "host-change-refused"]
    assert len(refused) == 1 and "ENODEV" in refused[0]["error"] and "ip link show home0" in refused[0]["what_to_do"]
    del kernel.refuse["proxy ARP on 10.1.1.100"]
    ex.run(registration("10.1.1.100", new=False))  # re-registration: the proxy entry is tried again
    ex.flush()
    assert kernel.batches[-1] == ["proxy ARP on 10.1.1.100"]
    ex.run(registration("10.1.1.100", new=False))  # done now: nothing more to try
    ex.flush()
    assert len(kernel.batches) == 2


def test_a_long_burst_is_sent_without_waiting_for_the_end_of_the_turn():
    """FLUSH_AT changes make a batch at once: the first replies of a turn need not wait for its end."""
    ex, _, kernel, timeline = executor(batch=True)
    per_batch = mip_host_changes.FLUSH_AT // 2  # new bindings: two changes each
    for i in range(per_batch + 1):
        ex.run(registration(f"10.1.1.{10 + i}"))
    assert [len(b) for b in kernel.batches] == [mip_host_changes.FLUSH_AT]
    assert timeline.count("reply to 192.0.2.1") == per_batch  # the last one waits for the next batch
    ex.flush()
    assert timeline.count("reply to 192.0.2.1") == per_batch + 1


def test_batched_changes_are_sent_at_the_end_of_the_event_loops_turn():
    async def scenario():
        ex, _, kernel, timeline = executor(batch=True)
        ex.attach(asyncio.get_running_loop())
        ex.run(registration("10.1.1.100"))
        ex.run(registration("10.1.1.101", coa="192.0.2.9"))
        assert timeline == []
        await asyncio.sleep(0)  # one turn
        assert len(kernel.batches) == 1 and timeline[4:6] == ["reply to 192.0.2.1", "reply to 192.0.2.9"]
        await until(lambda: ex.counters["gratuitous-arp-repeated"] == 2)  # repeated 100 ms later
        assert timeline[6:] == ["garp 10.1.1.100", "garp 10.1.1.101", "garp 10.1.1.100", "garp 10.1.1.101"]
        ex.stop()

    asyncio.run(scenario())


class FakeCore:
    def __init__(self):
        self.deadline = None
        self.ticks = []

    def poke(self, now):
        pass

    def handle_timer(self, now):
        self.ticks.append(now)

    def next_deadline(self):
        return self.deadline

    def drain_actions(self):
        return []


async def until(condition, timeout: float = 5.0) -> None:
    """Wait for a condition in real time with a bound a loaded machine holds (timers may fire late)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true within the bound"
        await asyncio.sleep(0.01)


def test_core_timer_is_kept_when_the_deadline_moves_later_and_still_fires_when_due():
    async def scenario():
        core = FakeCore()
        ex = executor()[0]
        driver = CoreDriver(core, ex, lambda *a, **k: None)
        core.deadline = time.time() + 0.05
        driver.feed(core.poke)
        first = driver._timer
        core.deadline += 0.05  # later: the armed timer stays (it fires early, harmlessly)
        driver.feed(core.poke)
        assert driver._timer is first
        core.deadline = time.time() + 0.02  # earlier: re-armed
        driver.feed(core.poke)
        assert driver._timer is not first
        target = core.deadline
        await until(lambda: core.ticks)
        # fired at the earlier deadline; the core reported the same deadline, so it re-armed and
        # fired again (handle_timer must be harmless when nothing is due)
        assert core.ticks and core.ticks[0] >= target - 0.005
        core.deadline = None
        driver.feed(core.poke)
        assert driver._timer is None
        driver.stop()

    asyncio.run(scenario())


UDP_SCRIPT = textwrap.dedent("""
    import socket
    from ipaddress import IPv4Address as A
    from nodes.mip.actions import SendUdp
    from nodes.runtime.mip import actions as mip_actions
    import subprocess
    subprocess.run("ip link set lo up", shell=True, check=True)
    server = mip_actions.udp_socket()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(1)
    ex = mip_actions.MipExecutor(lambda *a, **k: None, raw=None, udp=server, udp_from_socket=True)
    ex.run([SendUdp(A("127.0.0.1"), client.getsockname()[1], b"reply", src=A("127.0.0.1"))])
    data, peer = client.recvfrom(100)
    assert data == b"reply" and peer == ("127.0.0.1", 434), (data, peer)
    assert ex.counters["sent-udp"] == 1, ex.counters
    print("OK")
""")


def in_private_netns(script: str) -> None:
    """Run `script` with this interpreter in a fresh network namespace (nothing touches the machine's)."""
    res = subprocess.run(["unshare", "-n", sys.executable, "-c", script], cwd=REPO, capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0 and res.stdout.strip() == "OK", res.stdout + res.stderr


needs_netns = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare")


@needs_netns
def test_reply_with_a_local_source_leaves_by_the_udp_socket():
    in_private_netns(UDP_SCRIPT)


NETNS_SCRIPT = textwrap.dedent("""
    import subprocess, sys
    from nodes.runtime.host import netlink as n
    sh = lambda c: subprocess.run(c, shell=True, capture_output=True, text=True, check=True).stdout
    sh("ip link set lo up; ip link add va type veth peer name vb; ip link set va up; ip link set vb up")
    n.addr_add("va", "10.5.0.1/24"); n.addr_add("va", "10.5.0.1/24"); n.addr_add("va", "10.5.0.9/32")
    assert sorted(n.addresses("va")) == ["10.5.0.1/24", "10.5.0.9/32"], n.addresses("va")
    n.route_replace("10.9.9.9/32", dev="va"); n.route_replace("10.9.9.9/32", dev="va")
    n.route_replace("default", gateway="10.5.0.2", dev="va", src="10.5.0.1")
    n.route_replace("10.6.0.0/24", dev="va", src="10.5.0.1", scope=n.RT_SCOPE_LINK)
    n.route_replace("default", dev="va", table=434)
    routes = sh("ip route; ip route show table 434")
    for want in ("10.9.9.9 dev va", "default via 10.5.0.2 dev va proto static src 10.5.0.1",
                 "10.6.0.0/24 dev va proto static scope link src 10.5.0.1", "default dev va proto static"):
        assert want in routes, (want, routes)
    n.route_del("10.9.9.9/32", dev="va"); n.route_del("10.9.9.9/32", dev="va")
    assert "10.9.9.9" not in sh("ip route")
    n.proxy_arp("10.5.0.77", "va", True); n.proxy_arp("10.5.0.77", "va", True)
    n.neigh_replace("10.5.0.50", "02:00:00:00:00:50", "va")
    sh("ip neigh add 10.5.0.51 lladdr 02:00:00:00:00:51 dev va nud reachable")
    assert "10.5.0.77 dev va proxy" in sh("ip neigh show proxy")
    assert "10.5.0.50 lladdr 02:00:00:00:00:50 PERMANENT" in sh("ip neigh show dev va")
    n.neigh_flush("va")  # the reachable entry goes, the permanent and the proxy entries stay
    neigh = sh("ip neigh show dev va; ip neigh show proxy")
    assert "10.5.0.51" not in neigh and "10.5.0.50" in neigh and "10.5.0.77" in neigh, neigh
    n.proxy_arp("10.5.0.77", "va", False); n.neigh_del("10.5.0.50", "va"); n.neigh_del("10.5.0.50", "va")
    assert sh("ip neigh show proxy; ip neigh show dev va").strip() == ""
    n.rule_add(434, 434, src="10.1.1.100"); n.rule_add(434, 434, src="10.1.1.100")
    assert sh("ip rule").count("from 10.1.1.100 lookup 434") == 1
    n.rule_del(434, 434, src="10.1.1.100"); n.rule_del(434, 434, src="10.1.1.100")
    assert "10.1.1.100" not in sh("ip rule")
    n.routes_flush("va")
    assert sh("ip route").strip() == "", sh("ip route")
    n.table_flush(434)
    assert sh("ip route show table 434").strip() == ""
    n.addr_flush("va", keep=("10.5.0.9/32",))
    assert n.addresses("va") == ["10.5.0.9/32"]
    try:
        n.route_replace("10.9.9.9/32", gateway="10.99.0.1", dev="va")
    except n.NetlinkError as e:
        assert e.code == 101  # ENETUNREACH: a refusal names the kernel's error
    else:
        raise AssertionError("an unreachable gateway must be refused")
    try:
        n.link_index("nosuch0")
    except LookupError:
        pass
    else:
        raise AssertionError("an unknown interface must raise LookupError")
    n.close()
    print("OK")
""")


@needs_netns
def test_direct_rtnetlink_requests_in_a_private_namespace():
    in_private_netns(NETNS_SCRIPT)


def test_gratuitous_arp_repeat_is_cancelled_when_proxying_stops():
    """The HA announces itself for a home address and repeats it 100 ms later; a node that comes
    home within those 100 ms deregisters, and the stale repeat must not override its own
    announcement on the home link."""
    async def scenario():
        link = FakeLink()
        ex = MipExecutor(lambda *a, **k: None, raw=None, links={"home0": link}, default_iface="home0",
                         host=NetlinkBatch(FakeKernel([]), lambda name: 7))
        ex.attach(asyncio.get_running_loop())
        home, other = A("10.1.1.100"), A("10.1.1.101")
        ex.run([ProxyArp(home, True), GratuitousArp(home, proxy=True), ProxyArp(other, True),
                GratuitousArp(other, proxy=True)])
        await until(lambda: len(link.sent) >= 2)  # both announced
        ex.run([ProxyArp(home, False)])  # home back: no repeat for it; the other node's repeat stays
        await until(lambda: len(link.sent) >= 3)  # the other's repeat, due when home's would have been
        await asyncio.sleep(garp_pacer.REPEAT_AFTER)  # room for a wrong extra repeat to show up
        assert link.sent == [home, other, other]
        # a newer announcement replaces the pending one: sent once, repeated once
        ex.run([GratuitousArp(home), GratuitousArp(home)])
        await until(lambda: len(link.sent) >= 5)
        await asyncio.sleep(garp_pacer.REPEAT_AFTER)
        assert link.sent == [home, other, other, home, home]
        ex.stop()

    asyncio.run(scenario())


def test_a_deregistration_without_a_pending_gratuitous_arp_raises_no_error():
    """A node that deregisters after its binding's announcements were all sent (nothing pending,
    nothing waiting for a batch): the proxy entry goes without an action error (it once raised a
    TypeError, None | bool, caught and counted as action-error:ProxyArp)."""
    ex, events, _, _ = executor()
    ex.run(deregistration("10.1.1.100"))
    assert "action-error" not in events and not ex.action_errors(), ex.counters
    ex.run(registration("10.1.1.100"))
    ex.run(deregistration("10.1.1.100"))  # its announcement still pending: cancelled, counted
    assert not ex.action_errors() and ex.counters["gratuitous-arp-repeat-cancelled"] <= 1, ex.counters


def test_a_gratuitous_arp_frame_decodes_as_one_with_scapy():
    """The home agent's announcement, built from its cached head: a broadcast ARP request for the
    home address from the home address, at the home agent's MAC (checked with scapy, not our codec)."""
    from scapy.layers.l2 import ARP, Ether

    from nodes.runtime.host.rawip import LinkSocket

    class Sock:
        frames = []

        def send(self, frame):
            self.frames.append(frame)

    link = object.__new__(LinkSocket)  # no AF_PACKET socket: the frame is what is checked
    link.sock, link.mac, link.errors, link._garp_heads = Sock(), "02:00:00:00:01:02", 0, {}
    assert link.gratuitous_arp(A("10.1.1.100")) and link.gratuitous_arp("10.1.1.101")
    for frame, ip in zip(Sock.frames, ("10.1.1.100", "10.1.1.101")):
        eth = Ether(frame)
        assert eth.dst == "ff:ff:ff:ff:ff:ff" and eth.src == "02:00:00:00:01:02" and eth.type == 0x0806
        arp = eth[ARP]
        assert (arp.op, arp.hwsrc, arp.psrc, arp.pdst, arp.hwdst) == (1, "02:00:00:00:01:02", ip, ip, "00:00:00:00:00:00")
        assert (arp.hwtype, arp.ptype, arp.hwlen, arp.plen) == (1, 0x0800, 6, 4) and len(frame) == 42


def test_core_inputs_get_the_drivers_time_base_and_a_failing_input_is_counted_not_raised():
    class Core(FakeCore):
        def __init__(self):
            super().__init__()
            self.seen = []

        def link_up(self, now, *, care_of_address=None):
            self.seen.append((now, care_of_address))

        def explode(self, now):
            raise ValueError("bad input")

    async def scenario():
        core, logged = Core(), []
        driver = CoreDriver(core, executor()[0], lambda event, **f: logged.append(event), now=lambda: 1234.5)
        driver.feed(core.link_up, care_of_address="192.0.2.7")
        driver.feed(core.explode)
        assert core.seen == [(1234.5, "192.0.2.7")]
        assert driver.errors == {"explode:ValueError": 1} and "core-error" in logged
        driver.stop()

    asyncio.run(scenario())
