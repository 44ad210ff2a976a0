"""Tunnel establishment and reachability through the IPsec gateway (draft-gupta sections 3 to 5,
Appendix A: internal presence by NAPT at G_i).

Black-box: the roles' public status, probes from R, and captures at H (h-srv) and on the Internet
side of G (g-dmz). Runs with any implementation in the roles (--impl '*=<profile>').
"""
import subprocess

import pytest

from testbed.ipsec_checks import PLAN, check_tunnel, expected_source_at_h, role_of, tshark_esp_sa_options
from testbed.capture import malformed
from testbed.daemons import start_daemon

# ours-ours, and every installed third-party profile in each role opposite ours (the interop pairs)
pytestmark = [pytest.mark.scenario("remote-access-basic"),
              pytest.mark.impl_matrix("gw", "client")]

H = str(PLAN.address("h"))
G_E = str(PLAN.address("g", "dmz"))
ECHO = 7


@pytest.fixture
def dmz_capture(world, capture):
    """What crosses G's Internet link (on the wire: a kernel IPsec gateway shows its decrypted
    packets on its own interface), captured from before the roles start (requested before `roles`)."""
    cap = capture("g", "g-dmz", bpf="ip", wire=True)
    yield cap
    cap.stop()


@pytest.fixture
def h_capture(world, capture):
    cap = capture("h", "h-srv", bpf="ip")
    yield cap
    cap.stop()


@pytest.fixture
def sink(world):
    return start_daemon(world, "h", "instruments.sink", args=["--tcp", str(ECHO), "--udp", str(ECHO)])


def r_address(world) -> str:
    return str(PLAN.attachments[world.attached["r"]].address)


@pytest.mark.req("gupta-3-tunnel-mode")
def test_tunnel_is_established(roles, scenario):
    t = check_tunnel(roles, scenario)
    client = t["client"]["ike_sas"][0]
    assert client["local_host"] == str(PLAN.attachments[scenario.stations["r"]].address), client
    assert t["client_child"]["remote_ts"], "the client's child SA has no remote traffic selector"


@pytest.mark.req("gupta-3b-napt", "gupta-3b-pool")
def test_remote_host_reaches_internal_services(world, h_capture, roles, scenario, sink):
    """ICMP, TCP and UDP from R reach H; H sees G_i (NAPT) or R's pool address as the source."""
    vip = check_tunnel(roles, scenario)["vip"]
    assert world.ping("r", H, timeout=3), "R gets no echo reply from H through the tunnel"
    tcp = world.reach("r", "tcp", H, ECHO, timeout=2)
    assert tcp["result"] == "ok", tcp
    udp = world.reach("r", "udp", H, ECHO, timeout=2)
    assert udp["result"] == "ok", udp
    assert tcp["local"][0] == vip and udp["local"][0] == vip, f"R's inner source is not its virtual IP {vip}: {tcp} {udp}"
    pcap = h_capture.stop()

    source = expected_source_at_h(roles, scenario, vip)
    seen = h_capture.packets(f"ip.dst == {H} && (icmp.type == 8 || tcp.dstport == {ECHO} || udp.dstport == {ECHO})",
                             ["ip.src", "ip.proto"])
    assert {row["ip.proto"][0] for row in seen} >= {"1", "6", "17"}, f"H did not see ICMP, TCP and UDP: {seen}"
    assert {row["ip.src"][0] for row in seen} == {source}, f"H saw sources {seen}, expected only {source}"
    assert {e["peer"] for e in sink.status()["received"]} == {source}
    assert malformed(pcap) == [], f"{pcap} has malformed packets"


@pytest.mark.req("gupta-3a-hidden-on-internet")
def test_internet_link_carries_only_ike_and_esp(world, dmz_capture, roles, scenario, sink):
    """On G's Internet side only IKE (UDP 500/4500) and ESP (plain or in UDP 4500) pass between R
    and G_e while R talks to H; nothing travels in clear toward H."""
    check_tunnel(roles, scenario)
    assert world.ping("r", H, timeout=3)
    assert world.reach("r", "tcp", H, ECHO, timeout=2)["result"] == "ok"
    assert world.reach("r", "udp", H, ECHO, timeout=2)["result"] == "ok"
    pcap = dmz_capture.stop()

    r = r_address(world)
    rows = dmz_capture.packets(f"ip.addr == {r}", ["ip.src", "ip.dst", "ip.proto", "udp.srcport", "udp.dstport",
                                                   "_ws.col.Protocol"])
    assert rows, "no packet between R and G_e was captured"
    ike = esp = 0
    for row in rows:
        ends = {row["ip.src"][0], row["ip.dst"][0]}
        assert ends == {r, G_E}, f"a packet between R and something other than G_e: {row}"
        proto = row["ip.proto"][0]
        ports = {p for p in row["udp.srcport"] + row["udp.dstport"]}
        if proto == "50":
            esp += 1
            continue
        assert proto == "17" and ports <= {"500", "4500"} and (row["udp.dstport"][0] in {"500", "4500"}), \
            f"a packet other than IKE or ESP on the Internet side: {row}"
        shown = row["_ws.col.Protocol"][0] if row["_ws.col.Protocol"] else ""
        if shown == "ESP":
            esp += 1
        elif shown in ("ISAKMP", "IKEv2"):
            ike += 1
        else:
            # a NAT-T keepalive (one byte 0xff) is allowed; anything else is not
            assert shown in ("UDPENCAP", "NAT-Keepalive", "UDP"), f"unexpected protocol {shown!r}: {row}"
    assert ike >= 2, f"IKE exchanges missing on the Internet side ({ike} IKE packets)"
    assert esp >= 6, f"too few ESP packets on the Internet side ({esp}) for ICMP, TCP and UDP both ways"
    clear = dmz_capture.packets(f"ip.addr == {H} || icmp.type == 8 || tcp.port == {ECHO}", ["ip.src", "ip.dst"])
    assert clear == [], f"cleartext traffic to or from H on the Internet side: {clear}"
    assert malformed(pcap) == [], f"{pcap} has malformed packets"


@pytest.mark.req("rfc7296-2.17-keymat", "gupta-3a-hidden-on-internet")
def test_esp_decrypts_with_the_reported_keys(world, dmz_capture, roles, scenario, sink):
    """The client's reported child SA keys decrypt its ESP on the Internet link in tshark: inside are
    R's packets from its virtual IP to H and H's answers."""
    t = check_tunnel(roles, scenario)
    assert world.ping("r", H, timeout=3)
    assert world.reach("r", "udp", H, ECHO, timeout=2)["result"] == "ok"
    pcap = dmz_capture.stop()
    client = t["client"]["ike_sas"][0]
    opts = tshark_esp_sa_options(t["client_child"], client["local_host"], client["remote_host"])
    assert opts, (f"the client role {role_of(roles, 'vpn-client').role.name} reports no child SA keys "
                  f"(a role must report them so its ESP can be checked): {t['client_child']}")
    vip = t["vip"]
    out = subprocess.run(["tshark", "-n", "-r", str(pcap), *opts, "-Y", f"esp && ip.addr == {vip}",
                          "-T", "fields", "-E", "occurrence=l", "-e", "ip.src", "-e", "ip.dst"],
                         capture_output=True, text=True, check=True).stdout
    inner = {tuple(line.split("\t")) for line in out.splitlines()}  # the last (inner) IP header of each
    assert inner == {(vip, H), (H, vip)}, f"decrypted ESP should carry only {vip} <-> {H}: {inner}"
