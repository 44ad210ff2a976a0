"""Third-party implementations in both roles: the reference pairs the other interop combinations
(a third-party client with our gateway, our client with a third-party gateway) are compared with.

The scenario (remote-access-pool-eap) uses the other internal presence and the other
authentication than remote-access-basic: a pool address (draft-gupta Appendix B) and the user's
password through EAP-MD5 (RFC 7296 section 2.16). It runs with the scenario's own implementations
and with every pair of installed third-party profiles, one filling the gateway and one the client.
"""
import ipaddress

import pytest

from testbed.ipsec_checks import PLAN, check_tunnel, role_of
from testbed.capture import malformed
from testbed.daemons import start_daemon
from testbed.profiles import able

SCENARIO = "remote-access-pool-eap"


def _third_party_pairs() -> list[str]:
    """`gw=<profile>,client=<profile>` for every pair of installed profiles other than ours."""
    return [f"gw={g},client={c}" for g in able("vpn-gateway") if g != "ours"
            for c in able("vpn-client") if c != "ours"]


pytestmark = [pytest.mark.scenario(SCENARIO), pytest.mark.impl_matrix(*_third_party_pairs())]

H = str(PLAN.address("h"))
ECHO = 7


@pytest.mark.req("gupta-3-tunnel-mode", "rfc7296-3.15-cp", "gupta-4-password")
def test_tunnel_is_established_with_a_pool_address(roles, scenario):
    t = check_tunnel(roles, scenario)
    gw_cfg = scenario.roles[role_of(roles, "vpn-gateway").role.name].config
    assert ipaddress.ip_address(t["vip"]) in ipaddress.ip_network(gw_cfg["pool"])
    ike = t["gateway"]["ike_sas"][0]
    assert ike["remote_id"] == "alice" and ike.get("remote_eap_id") in (None, "alice"), ike
    assert t["client"].get("dns", [gw_cfg["dns"]]) == [gw_cfg["dns"]], "the client did not get the internal resolver"


@pytest.mark.req("gupta-3b-pool")
def test_h_sees_the_pool_address(world, capture, roles, scenario):
    at_h = capture("h", "h-srv", bpf="ip")
    start_daemon(world, "h", "instruments.sink", args=["--tcp", str(ECHO), "--udp", str(ECHO)])
    vip = check_tunnel(roles, scenario)["vip"]
    assert world.ping("r", H, timeout=3)
    assert world.reach("r", "tcp", H, ECHO, timeout=2)["result"] == "ok"
    assert world.reach("r", "udp", H, ECHO, timeout=2)["result"] == "ok"
    pcap = at_h.stop()
    seen = at_h.packets(f"ip.dst == {H} && (icmp.type == 8 || tcp.dstport == {ECHO} || udp.dstport == {ECHO})",
                        ["ip.src"])
    assert len(seen) >= 3 and {row["ip.src"][0] for row in seen} == {vip}, seen
    assert malformed(pcap) == []
