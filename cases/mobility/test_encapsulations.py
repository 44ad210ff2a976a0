"""The forward tunnel a mobile node asks for (RFC 5944 3.3: M minimal encapsulation, RFC 2004; G GRE,
RFC 2784; neither: IP-in-IP, RFC 2003), through a foreign agent that advertises M and G (fn1) and
with a co-located care-of address (ivn, inside the intranet: no NAT, so no RFC 3519 UDP tunnel):
the binding, the node and the wire (tshark) all show the chosen encapsulation, and the
correspondent H reaches the home address through it. Refusals: an agent configured without the
requested encapsulation answers 139 (home agent, co-located node) or 72 (foreign agent)."""
import struct
from ipaddress import IPv4Address

import pytest

from testbed import handoff
from testbed.capture import malformed
from testbed.mip_checks import FA1, H, HA, HOME, at_home, binding, registered, wait_for
from testbed.profiles import restart_role

pytestmark = pytest.mark.scenario("mobility-open-intranet")

IVN_COA = "10.1.4.100"
PROTO = {"ipip": 4, "minimal": 55, "gre": 47}
COLOCATED = {"fn3": {"address": "10.77.0.100/24", "router": "10.77.0.1"},
             "ivn": {"address": f"{IVN_COA}/24", "router": "10.1.4.1"}}
TUNNEL_FIELDS = ["ip.src", "ip.dst", "ip.proto", "gre.proto", "gre.flags.version", "data.data"]


@pytest.fixture
def ivn_router_answers_only_its_own_link(world, request):
    """The intranet router answers ARP only for the addresses of the link asked on (arp_ignore=1):
    otherwise its ivn side answers the node's probe for the home router 10.1.1.1 too."""
    was = world.run_in("ir", ["sysctl", "-n", "net.ipv4.conf.all.arp_ignore"], check=True).stdout.strip()
    world.run_in("ir", ["sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1"], check=True)
    request.addfinalizer(lambda: world.run_in("ir", ["sysctl", "-qw", f"net.ipv4.conf.all.arp_ignore={was}"]))


def check_tunnel_on_the_wire(rows: list, kind: str, outer_dst: str) -> None:
    """tshark's reading of the HA's tunnel to `outer_dst` carrying H's packets to the home address."""
    mine = [r for r in rows if r["ip.src"][:1] == [HA] and r["ip.dst"][:1] == [outer_dst]]
    assert mine, f"no {kind} packet from the HA to {outer_dst} on the home link"
    for r in mine:
        assert r["ip.proto"][0] == str(PROTO[kind]), r
        if kind == "ipip":  # tshark decodes the inner header: a second source and destination
            assert r["ip.src"] == [HA, H] and r["ip.dst"] == [outer_dst, HOME], r
        elif kind == "gre":
            assert r["gre.proto"] == ["0x0800"] and r["gre.flags.version"] == ["0"], r
            assert r["ip.src"] == [HA, H] and r["ip.dst"] == [outer_dst, HOME], r
        else:  # tshark has no dissector for protocol 55: read the forwarding header by hand (RFC 2004 3)
            data = bytes.fromhex(r["data.data"][0])
            protocol, flags = data[0], data[1]
            assert protocol == 1 and flags & 0x80, r  # ICMP (the ping), S: the original source follows
            assert (str(IPv4Address(data[4:8])), str(IPv4Address(data[8:12]))) == (HOME, H), r
            assert sum(struct.unpack("!6H", data[:12])) % 0xFFFF == 0, "the forwarding header checksum"


@pytest.mark.req("rfc5944-3.3-encapsulation-choice", "rfc5944-4.2.3-ha-tunnels")
@pytest.mark.parametrize("kind", ["ipip", "minimal", "gre"])
def test_registration_and_traffic_with_each_encapsulation(world, scenario, roles, capture, kind,
                                                          ivn_router_answers_only_its_own_link):
    ha, fa1 = roles["ha"], roles["fa1"]
    mn = restart_role(world, scenario, roles, "mn", encapsulation=kind, colocated=COLOCATED)
    wait_for(lambda: at_home(mn), what="the MN to settle at home")
    cap = capture("iha", "iha-home", "not tcp and not arp")

    # via the foreign agent, which advertises M and G
    handoff.move(world, "r", "fn1", configure=False)
    s = wait_for(lambda: registered(mn, FA1, "fa"), what=f"registration via FA1 asking for {kind}")
    assert s["tunnel"] == kind and s["agent"]["flags"] & 0x0C00 == 0x0C00, s
    assert binding(ha)["kind"] == kind
    assert world.ping("h", HOME, timeout=2), f"H must reach the home address through {kind} to FA1"
    assert fa1.status()["counters"].get(f"decapsulated-{kind}", 0) >= 1

    # co-located on ivn: the node decapsulates itself
    handoff.move(world, "r", "ivn", configure=False)
    s = wait_for(lambda: registered(mn, IVN_COA, "colocated"), what=f"co-located registration asking for {kind}")
    assert s["tunnel"] == kind and binding(ha)["kind"] == kind, s
    assert world.ping("h", HOME, timeout=2), f"H must reach the home address through {kind} to {IVN_COA}"
    assert mn.status()["dataplane"].get(f"decapsulated-{kind}", 0) >= 1

    handoff.move(world, "r", "home", configure=False)
    wait_for(lambda: at_home(mn) and binding(ha) is None, what="deregistration at home")
    pcap = cap.stop()
    assert malformed(pcap) == [], "tshark must find nothing malformed in the tunnels"
    requests = cap.packets("mip.type == 1 && mip.life > 0", ["mip.m", "mip.g"])
    assert requests and all(r["mip.m"] == [str(int(kind == "minimal"))] and r["mip.g"] == [str(int(kind == "gre"))]
                            for r in requests), requests
    # the outer header's protocol (ip.proto alone also matches the header an ICMP error quotes)
    tunnelled = cap.packets(f"ip.proto#1 == {PROTO[kind]}", TUNNEL_FIELDS)
    check_tunnel_on_the_wire(tunnelled, kind, FA1)
    check_tunnel_on_the_wire(tunnelled, kind, IVN_COA)


@pytest.mark.req("rfc5944-3.3-encapsulation-choice")
def test_unsupported_encapsulation_is_refused_with_139_and_not_asked_of_an_agent(world, scenario, roles, capture,
                                                             ivn_router_answers_only_its_own_link):
    ha = restart_role(world, scenario, roles, "ha", encapsulations=["ipip", "gre"])
    restart_role(world, scenario, roles, "fa1", encapsulations=["ipip"])
    mn = restart_role(world, scenario, roles, "mn", encapsulation="minimal", colocated=COLOCATED)
    wait_for(lambda: at_home(mn), what="the MN to settle at home")
    cap = capture("iha", "iha-home", "udp port 434")

    handoff.move(world, "r", "ivn", configure=False)  # co-located: the home agent refuses
    s = wait_for(lambda: mn.status()["last_code"] == 139 and mn.status(), what="139 from the home agent")
    assert s["state"] == "denied" and binding(ha) is None
    assert ha.status()["counters"].get("denied:139", 0) >= 1

    handoff.move(world, "r", "fn1", configure=False)  # via FA1, which advertises neither M nor G
    # RFC 5944 3.6.1.2: the node asks for M or G only of an agent that advertises it: IP-in-IP here,
    # granted (an agent asked anyway answers 72 itself: the FA conformance parts check that)
    s = wait_for(lambda: mn.status()["state"] == "registered" and mn.status(), what="registered via FA1")
    assert not s["agent"]["flags"] & 0x0C00, "FA1 advertises neither M nor G"
    assert s["last_code"] == 0 and binding(ha)["kind"] == "ipip", (s["last_code"], binding(ha))
    cap.stop()
    codes = cap.packets("mip.type == 3", ["mip.code"])
    assert ["139"] in [r["mip.code"] for r in codes], codes
