"""IPsec inside MIP with co-located care-of addresses, where the MN reaches its HA without the VPN:
problem statement 2.2 (HA in the DMZ), 2.3 (the VPN gateway is the HA), 2.4 (HA outside the VPN
domain) and 2.5 (a combined VPN gateway/HA on the local link). Section 3: "problems occurring in scenarios in Section 2.2 and Section 2.4 are either the
same as or a subset of those in the scenario in Section 2.1" (MIP inside IPsec, not run here: see
the 2.1 case), while with IPsec inside MIP they work; 2.3 "does not introduce functional problems"."""
import json
import time

import pytest

from testbed.mip_checks import wait_for
from testbed.traversal_checks import (
    IKE_BPF_IN_MIP, ike_messages, ike_per_move, start_probe, start_session, visit, wait_both_layers,
)

COLOCATED = ("192.0.2.100", [("fn2", "192.0.2.228"), ("fn3", "10.77.0.100")])  # first care-of address, stops
VIA_FA = ("192.0.2.1", [("fn2", "192.0.2.129"), ("fn3", "10.77.0.100")])  # FA care-of; co-located behind the NAT


@pytest.mark.req("ps-3-ipsec-inside-mip-works")
@pytest.mark.scenario("mipvpn-ha-dmz", "mipvpn-ha-outside")
@pytest.mark.impl_matrix("gw")  # G is a plain VPN gateway here: every installed gateway fills it
def test_2_2_and_2_4_ipsec_inside_mip_moves_without_ike(world, scenario, roles, capture, case_dir):
    """Sections 2.2, 2.4 and 3: the MN registers with its HA (in the DMZ; in an operator network)
    first, then runs IKE from its home address, ESP carried in the MIP tunnel. Verdicts: G's IKE
    peer is the home address; moving fn1 -> fn2 -> behind the NAT changes only the registration:
    no IKE message crosses G_e (tshark) and the node counts none, the IKE SA is the same one, the
    probe stream H -> the tunnel's inner address and one TCP session to H survive (the disruption
    of each move is kept)."""
    moves_without_ike(world, scenario, roles, capture, case_dir, *COLOCATED)


@pytest.mark.req("ps-3-ipsec-inside-mip-works")
@pytest.mark.scenario("mipvpn-ha-dmz-fa")
def test_2_2_ipsec_inside_mip_via_fa_moves_without_ike(world, scenario, roles, capture, case_dir):
    """Section 2.2 with foreign agents: the MN registers with the DMZ HA through FA1, then FA2 (FA
    care-of addresses), then co-located behind the NAT; IKE runs from the home address through the
    FA; the same verdicts as with co-located care-of addresses (no IKE on a move)."""
    moves_without_ike(world, scenario, roles, capture, case_dir, *VIA_FA)


@pytest.mark.req("ps-3-ipsec-inside-mip-works")
@pytest.mark.scenario("mipvpn-combined", "mipvpn-local-link")
def test_2_3_and_2_5_combined_gateway_and_ha_moves_without_ike(world, scenario, roles, capture, case_dir):
    """Sections 2.3, 2.5 and 3 ("The scenarios in Section 2.3 and Section 2.5 do not introduce
    functional problems"): the VPN gateway and the HA run on the same machine, G itself (2.3) or a
    box on the home subnet behind the border firewall/NAT that forwards only Mobile IP to its public
    address (2.5, Figure 5: "works today ... with IPsec-ESP running inside a MIPv4 tunnel"); the
    same verdicts as 2.2 (IKE from the home address, no IKE on a move, the session survives
    fn1 -> fn2 -> NAT)."""
    moves_without_ike(world, scenario, roles, capture, case_dir, *COLOCATED)


def moves_without_ike(world, scenario, roles, capture, case_dir, first: str, stops: list):
    mvn, gw = roles["mn"], roles["gw"]
    x_hoa = scenario.roles["mn"].config["mn"]["home_address"]
    s = wait_both_layers(mvn, first)
    assert s["vpn"]["local_address"] == x_hoa, f"IKE must leave from the home address: {s['vpn']}"
    sa = wait_for(lambda: [x for x in gw.status()["ike_sas"] if x["state"] == "ESTABLISHED"], what="G's IKE SA")[0]
    assert sa["remote_host"] == x_hoa, f"G must see the home address as its IKE peer: {sa}"
    vip = s["vpn"]["virtual_ip"]
    at_g = capture("g", "g-dmz", IKE_BPF_IN_MIP, name="g-dmz-ike")
    keeper = start_session(world)
    rx, _tx = start_probe(world, vip)

    moves = []
    for net, coa in stops:
        mv = visit(world, mvn, rx, keeper, net, coa)
        status = mv.pop("status")
        moves.append({**mv, "mip_tunnel": status["mip"]["tunnel"]})
    t_end = time.time()
    now = [x for x in gw.status()["ike_sas"] if x["state"] == "ESTABLISHED"]
    assert [x["name"] for x in now] == [sa["name"]], f"the IKE SA must stay the same across moves: {now}"
    assert mvn.status()["client_runs"] == 1, "the VPN client must not restart on a move"
    k = keeper.status()
    assert k["connects"] == 1 and k["error"] is None and k["mismatch_at"] is None, k

    at_g.stop()
    counted = ike_per_move(mvn)
    ends = [mv["t_down"] for mv in moves[1:]] + [t_end]
    for mv, msgs in zip(moves, ike_messages(at_g.path, [(mv["t_down"], end) for mv, end in zip(moves, ends)])):
        mv["ike_messages_wire"], mv["ike_messages_status"] = len(msgs), counted.get(mv["to"], counted.get(mv["coa"]))
        assert msgs == [] and mv["ike_messages_status"] == 0, f"move to {mv['to']}: IKE on a move: {msgs}"
    (case_dir / "traversal.json").write_text(json.dumps({"moves": moves, "tcp_max_gap_s": k["max_gap"]}, indent=1))
