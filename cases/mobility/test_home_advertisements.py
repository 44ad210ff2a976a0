"""The home agent advertises on its home network (RFC 5944 2.1: H bit, periodic and solicited), and a
mobile node coming home learns it from those advertisements (4.2, 3.6) and deregisters at once.

The node here has ARP movement detection blinded (its `home_router` names an address nobody
holds), so only the home agent's advertisement can tell it it is home: before the home agent
advertised, such a node stayed registered through the foreign agent it had left."""
import time

import pytest

from testbed import handoff
from testbed.mip_checks import FA1, HA, HOME, at_home, binding, mac_of, neighbour_mac, registered, wait_for
from testbed.profiles import restart_role

pytestmark = pytest.mark.scenario("mobility-open-intranet")

NOBODY = "10.1.1.254"  # on the home network, held by no node: ARP probes for it go unanswered
FIELDS = ["frame.time_epoch", "ip.src", "ip.dst", "ip.ttl", "icmp.type", "icmp.code", "icmp.mip.h",
          "icmp.mip.f", "icmp.mip.coa", "icmp.mip.seq"]


@pytest.mark.req("rfc5944-2.1-ha-advertisement", "rfc5944-2.1-adv-destination")
def test_node_comes_home_by_the_home_agents_advertisement(world, scenario, roles, capture):
    cap = capture("iha", "iha-home", "icmp")
    mn = restart_role(world, scenario, roles, "mn", home_router=NOBODY)
    wait_for(lambda: at_home(mn), what="the MN to learn it is home from the HA's advertisement")

    handoff.move(world, "r", "fn1", configure=False)
    wait_for(lambda: registered(mn, FA1, "fa"), what="registration via FA1")
    move = handoff.move(world, "r", "home", configure=False)
    wait_for(lambda: at_home(mn) and binding(roles["ha"]) is None, timeout=2.0,
             what="the MN back home and deregistered")
    s = mn.status()
    assert s["counters"].get("identified-by:advertisement", 0) >= 2, s["counters"]
    assert s["counters"].get("identified-by:arp", 0) == 0, "ARP was blinded: the advertisement must have told"
    assert s["agent"]["address"] == HA and s["agent"]["flags"] & 0x2000
    # (the blinded node's default route points at NOBODY too, so this case checks the binding and
    # the home link, not a correspondent's traffic)
    assert world.run_in("iha", "ip neigh show proxy").stdout.strip() == "", "proxy ARP must stop at home"
    r_mac = mac_of(world, "r", "r-eth0")
    wait_for(lambda: neighbour_mac(world, "ir", "ir-home", HOME) == r_mac, timeout=1.0,
             what="R's own gratuitous ARP to reach the home router")

    ha = roles["ha"]
    # a periodic advertisement, not one more answer to the node's solicitations on arrival: the
    # capture runs until a full period (1 s, plus slack) has passed since the node came home, and
    # the HA has sent one more advertisement since now
    sent = ha.status()["counters"]["advertisements"]
    time.sleep(max(0.0, move.t_up + 1.5 - time.time()))
    wait_for(lambda: ha.status()["counters"]["advertisements"] >= sent + 1, timeout=2.5,
             what="a periodic advertisement (one a second)")
    cap.stop()
    rows = cap.packets("icmp.type == 9 || icmp.type == 10", FIELDS)
    adverts = [r for r in rows if r["icmp.type"] == ["9"]]
    assert len(adverts) >= 2, rows
    for r in adverts:  # tshark's reading of every advertisement on the home link
        assert r["ip.src"] == [HA] and r["ip.dst"] == ["224.0.0.1"] and r["ip.ttl"] == ["1"], r
        assert r["icmp.mip.h"] == ["1"] and r["icmp.mip.f"] == ["0"] and r["icmp.mip.coa"] == [], r
        assert r["icmp.code"] == ["16"], r  # the HA is not the home network's router
    # solicited: the node's solicitation after the move home is answered within milliseconds, not at
    # the next period; periodic: advertisements that answer no solicitation go out too
    times = [float(r["frame.time_epoch"][0]) for r in adverts]
    solicited = [float(r["frame.time_epoch"][0]) for r in rows if r["icmp.type"] == ["10"] and r["ip.src"] == [HOME]]
    back = [t for t in solicited if t >= move.t_down]  # (t_up is read after the carrier is up)
    assert back, "the node solicits when it comes home"
    answer = min(t for t in times if t >= back[0])
    assert answer - back[0] < 0.2, f"the solicitation was answered after {answer - back[0]:.3f} s"
    unsolicited = [t for t in times if not any(0 <= t - s < 0.2 for s in solicited)]
    assert unsolicited, f"no periodic advertisement among {times}"
