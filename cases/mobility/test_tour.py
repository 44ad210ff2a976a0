"""A Mobile IPv4 tour (RFC 5944, RFC 3519): home -> fn1 (FA) -> fn2 (FA) -> behind the NAT (co-located, RFC 3519 UDP
tunnelling) -> home. At each stop the correspondent H reaches the home address, registration codes
and bindings are as expected, and one TCP session opened at home survives the whole tour. The
captures decode in tshark as Mobile IP without malformed packets."""
import json

import pytest

from testbed import handoff
from testbed.capture import malformed
from testbed.daemons import start_daemon
from testbed.mip_checks import (
    COLOCATED_FN3, FA1, FA2, H, HOME, NAT_PUBLIC, at_home, binding, mac_of, neighbour_mac, registered,
    scapy_disagreements, session_caught_up, wait_for,
)

pytestmark = pytest.mark.scenario("mobility-open-intranet")


@pytest.mark.req("rfc5944-2.4.2-move-detection", "rfc5944-3.7-fa-relay", "rfc5944-4.2.3-ha-tunnels", "rfc3519-nat-traversal", "ps-2.1-intranet-mobility")
def test_tour_home_fn1_fn2_nat_home(world, roles, capture, case_dir):
    mn, ha, fa1, fa2 = roles["mn"], roles["ha"], roles["fa1"], roles["fa2"]
    wait_for(lambda: at_home(mn), what="the MN to settle at home")
    caps = [capture("r", "r-eth0", "not tcp"), capture("iha", "iha-home", "not tcp")]
    start_daemon(world, "h", "instruments.sink", args=["--tcp", "7"])
    keeper = start_daemon(world, "r", "instruments.tcpkeeper", args=["--connect", f"{H}:7", "--bind", HOME])
    session_caught_up(keeper)
    assert world.ping("h", HOME, timeout=2), "H must reach R at home"

    stops = []
    # 1. fn1: care-of address of FA1, IP-in-IP from the HA to FA1
    move = handoff.move(world, "r", "fn1", configure=False)
    s = wait_for(lambda: registered(mn, FA1, "fa"), what="registration via FA1")
    assert s["last_code"] == 0 and s["tunnel"] == "ipip"
    b = binding(ha)
    assert b["care_of_address"] == FA1 and b["kind"] == "ipip" and b["lifetime"] == 1800
    assert [v["home_address"] for v in fa1.status()["visitors"]] == [HOME]
    assert world.ping("h", HOME, timeout=2), "H must reach the home address with R on fn1"
    ha_mac, r_mac = mac_of(world, "iha", "iha-home"), mac_of(world, "r", "r-eth0")
    assert neighbour_mac(world, "ir", "ir-home", HOME) == ha_mac, "while R is away the HA answers ARP for it"
    session_caught_up(keeper)
    stops.append({"to": "fn1", "t_up": move.t_up, "registered": wait_for(lambda: registered(mn))["registered_until"]})

    # 2. fn2: care-of address of FA2; the binding moves
    move = handoff.move(world, "r", "fn2", configure=False)
    s = wait_for(lambda: registered(mn, FA2, "fa"), what="registration via FA2")
    assert s["last_code"] == 0
    b = binding(ha)
    assert b["care_of_address"] == FA2 and b["kind"] == "ipip"
    assert [v["home_address"] for v in fa2.status()["visitors"]] == [HOME]
    assert world.ping("h", HOME, timeout=2), "H must reach the home address with R on fn2"
    session_caught_up(keeper)
    stops.append({"to": "fn2", "t_up": move.t_up})

    # 3. behind the NAT: co-located care-of address, the HA sees the NAT and tunnels in UDP
    move = handoff.move(world, "r", "fn3", configure=False)
    s = wait_for(lambda: registered(mn, COLOCATED_FN3, "colocated"), what="co-located registration behind the NAT")
    assert s["last_code"] == 0 and s["tunnel"] == "udp", s
    b = binding(ha)
    assert b["care_of_address"] == COLOCATED_FN3 and b["kind"] == "udp" and b["remote"] == NAT_PUBLIC, b
    assert ha.status()["counters"].get("nat-detected", 0) >= 1
    assert world.ping("h", HOME, timeout=2), "H must reach the home address with R behind the NAT"
    session_caught_up(keeper)
    stops.append({"to": "fn3", "t_up": move.t_up})

    # 4. home again: deregistration, proxy ARP stopped, gratuitous ARP
    move = handoff.move(world, "r", "home", configure=False)
    wait_for(lambda: at_home(mn) and binding(ha) is None, what="deregistration at home")
    assert mn.status()["last_code"] == 0
    assert world.ping("h", HOME, timeout=2), "H must reach R back at home"
    assert neighbour_mac(world, "ir", "ir-home", HOME) == r_mac, "back home, R's own gratuitous ARP wins"
    assert world.run_in("iha", "ip neigh show proxy").stdout.strip() == "", "proxy ARP must stop at home"
    session_caught_up(keeper)
    stops.append({"to": "home", "t_up": move.t_up})

    k = keeper.status()
    assert k["connects"] == 1 and k["error"] is None and k["mismatch_at"] is None, k
    (case_dir / "disruption.json").write_text(json.dumps({"stops": stops, "tcp_gaps": k["gaps"],
                                                          "max_gap": k["max_gap"]}, indent=1))

    # every Mobile IP message decodes in tshark, none malformed
    for cap in caps:
        cap.stop()
        assert malformed(cap.path) == [], f"malformed packets in {cap.path.name}"
    fields = ["frame.number", "mip.type", "mip.code", "mip.homeaddr", "mip.haaddr", "mip.coa", "mip.life"]
    on_r = caps[0].packets("mip", fields=fields)
    for cap in caps:
        assert scapy_disagreements(cap.path, cap.packets("mip", fields=fields)) == []
    types = [t for row in on_r for t in row["mip.type"]]
    codes = [c for row in on_r for c in row["mip.code"]]
    assert types.count("1") >= 4 and types.count("3") >= 4, types  # fn1, fn2, fn3, home
    assert set(codes) == {"0"}, codes
    adverts = caps[0].packets("icmp.type == 9")
    assert adverts, "R's link must have carried agent advertisements"
