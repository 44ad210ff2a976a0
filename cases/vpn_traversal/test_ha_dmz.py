"""Problem statement 2.2 (HA on the VPN domain border, in the DMZ), IPsec inside MIP with co-located
care-of addresses: the configuration the draft says "does not have problems described in Section 2.1"."""
import json
import time

import pytest

from testbed.mip_checks import wait_for
from testbed.traversal_checks import (
    IKE_BPF, ike_messages, ike_per_move, start_probe, start_session, visit, wait_both_layers,
)

pytestmark = [pytest.mark.scenario("mipvpn-ha-dmz"),
              pytest.mark.impl_matrix("gw=strongswan")]  # a plain VPN gateway: strongSwan fills it too

X_HOA = "203.0.113.130"  # the home address on the DMZ HA's virtual home network
STOPS = [("fn2", "192.0.2.228"), ("fn3", "10.77.0.100")]


def test_2_2_ipsec_inside_mip_moves_without_ike(world, roles, capture, case_dir):
    """Sections 2.2 and 3: with the HA in the DMZ the MN registers with it first, then runs IKE from
    its home address, ESP carried in the MIP tunnel. Verdicts: G's IKE peer is the home address;
    moving fn1 -> fn2 -> behind the NAT changes only the registration: no IKE message crosses G_e
    (tshark) and the node counts none, the IKE SA is the same one, the probe stream H -> the
    tunnel's inner address and one TCP session to H survive (disruption per move kept)."""
    mvn, gw = roles["mn"], roles["gw"]
    s = wait_both_layers(mvn, "192.0.2.100")
    assert s["vpn"]["local_address"] == X_HOA, f"IKE must leave from the home address: {s['vpn']}"
    sa = wait_for(lambda: [x for x in gw.status()["ike_sas"] if x["state"] == "ESTABLISHED"], what="G's IKE SA")[0]
    assert sa["remote_host"] == X_HOA, f"G must see the home address as its IKE peer: {sa}"
    vip = s["vpn"]["virtual_ip"]
    at_g = capture("g", "g-dmz", IKE_BPF, name="g-dmz-ike")
    keeper = start_session(world)
    rx, _tx = start_probe(world, vip)

    moves = []
    for net, coa in STOPS:
        mv = visit(world, mvn, rx, keeper, net, coa)
        moves.append({**mv, "mip_tunnel": mv.pop("status")["mip"]["tunnel"]})
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
        mv["ike_messages_wire"], mv["ike_messages_status"] = len(msgs), counted[mv["to"]]
        assert msgs == [] and mv["ike_messages_status"] == 0, f"move to {mv['to']}: IKE on a move: {msgs}"
    (case_dir / "traversal.json").write_text(json.dumps({"moves": moves, "tcp_max_gap_s": k["max_gap"]}, indent=1))
