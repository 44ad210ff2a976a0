"""All of R's traffic through G (draft-gupta section 4, "additional precautions": while the tunnel
is up, R's traffic to the general Internet also goes through G, so that G's policy applies to it and
R is not a bridge between the Internet and the intranet).

With the full tunnel, R talks to the public server pub (ICMP, TCP, UDP):
  * R's access link carries nothing but IKE and ESP between R and G_e (capture on R's interface);
  * pub sees G_e as the source (G translates to G_e: NAPT, or MASQUERADE for a pool address);
  * the answers come back through the tunnel (R gets them), and H is still reached as before.
Runs with NAPT and with pool presence toward the intranet.
"""
import pytest

from testbed.capture import malformed
from testbed.daemons import start_daemon
from testbed.ipsec_checks import PLAN, check_tunnel
from testbed.naming import station_ifname

pytestmark = [pytest.mark.scenario("remote-access-internet-napt", "remote-access-internet-pool"),
              pytest.mark.impl_matrix("gw", "client")]

PUB = str(PLAN.address("pub"))
H = str(PLAN.address("h"))
G_E = str(PLAN.address("g", "dmz"))
ECHO = 7


@pytest.fixture
def r_link(world, capture):
    """What crosses R's access link (on the wire: a kernel IPsec client shows its decrypted packets
    on its own interface)."""
    cap = capture("r", station_ifname("r"), bpf="ip", wire=True)
    yield cap
    cap.stop()


@pytest.fixture
def pub_sink(world):
    return start_daemon(world, "pub", "instruments.sink", args=["--tcp", str(ECHO), "--udp", str(ECHO)])


@pytest.mark.req("gupta-4-all-traffic-via-g")
def test_internet_traffic_goes_through_the_gateway(world, r_link, roles, scenario, pub_sink):
    vip = check_tunnel(roles, scenario)["vip"]
    assert world.ping("r", PUB, timeout=3), "R gets no echo reply from pub through the tunnel"
    tcp = world.reach("r", "tcp", PUB, ECHO, timeout=2)
    udp = world.reach("r", "udp", PUB, ECHO, timeout=2)
    assert tcp["result"] == "ok" and udp["result"] == "ok", (tcp, udp)
    assert tcp["local"][0] == vip and udp["local"][0] == vip, f"R's inner source is not its virtual IP {vip}"
    assert {e["peer"] for e in pub_sink.status()["received"]} == {G_E}, \
        f"pub should see only G_e {G_E} as the source: {pub_sink.status()['received']}"
    assert world.ping("r", H, timeout=3), "with Internet access through G, R no longer reaches H"
    pcap = r_link.stop()

    r = str(PLAN.attachments[world.attached["r"]].address)
    rows = r_link.packets(f"ip.addr == {r} && !arp", ["ip.src", "ip.dst", "ip.proto", "udp.dstport", "udp.srcport"])
    assert rows, "nothing captured on R's access link"
    for row in rows:
        ends = {row["ip.src"][0], row["ip.dst"][0]}
        ports = set(row["udp.srcport"] + row["udp.dstport"])
        assert ends == {r, G_E} and (row["ip.proto"][0] == "50" or ports & {"500", "4500"}), \
            f"R's access link carries something other than IKE/ESP with G_e: {row}"
    clear = r_link.packets(f"ip.addr == {PUB} || ip.addr == {H}", ["ip.src", "ip.dst"])
    assert clear == [], f"cleartext traffic to pub or H on R's access link: {clear}"
    assert malformed(pcap) == [], f"{pcap} has malformed packets"
    status = roles["gw"].status()
    if status.get("implementation") == "ours" and scenario.roles["gw"].config["internal_presence"] == "napt":
        assert any(m["external"].startswith(f"{G_E}:") for m in status["napt_internet"]), status["napt_internet"]
