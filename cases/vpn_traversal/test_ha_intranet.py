"""Problem statement 2.1 (HA inside the intranet behind the VPN gateway), MIP inside IPsec with
co-located care-of addresses: the problems of sections 4.1 and 4.3 reproduced on the wire."""
import json

import pytest

from testbed import handoff
from testbed.mip_checks import HA, HOME, at_home, binding, mip_probe, wait_for
from testbed.traversal_checks import (
    IKE_AUTH, IKE_BPF, IKE_SA_INIT, MipLayer, ike_messages, ike_per_move, session_caught_up, start_probe, start_session, visit,
    wait_both_layers,
)

pytestmark = [pytest.mark.scenario("mipvpn-ha-intranet"),
              pytest.mark.impl_matrix("gw")]  # a plain VPN gateway: every installed gateway fills it

PUB = "198.51.100.10"  # a host on the Internet: where an MN outside the intranet without its VPN is
STOPS = [("fn2", "192.0.2.228"), ("fn3", "10.77.0.0/24")]  # fn3: behind the NAT router, an address by DHCP


@pytest.mark.req("ps-4.1-colocated-renegotiation", "ps-4.3-ha-behind-vpn")
def test_4_1_every_move_renegotiates_ike_and_4_3_ha_only_through_the_vpn(world, roles, capture, case_dir):
    """Section 4.1 (Figure 8): in co-located mode the MN first sets up its IPsec tunnel from the
    address of its point of attachment, then registers with its HA through it; registration works,
    but "the VPN tunnel security association must be refreshed after each IP subnet handoff".
    Verdicts: at every move fn1 -> fn2 -> behind the NAT (there a care-of address by DHCP), G's
    external side sees a new IKE_SA_INIT
    and IKE_AUTH exchange from the new address (counted on the wire with tshark, and the node's
    own count agrees); the probe stream H -> home address comes back only after that exchange
    (the disruption each move costs is measured and kept); one TCP session survives.
    Section 4.3: outside the intranet the MN cannot reach its HA without the VPN: the registration
    request sent from the Internet without the VPN dies at the Internet core (ICMP destination
    unreachable); back home the MN registers with its HA directly and the VPN is down."""
    mvn = roles["mn"]
    at_g = capture("g", "g-dmz", IKE_BPF, name="g-dmz-ike")
    at_pub = capture("pub", "pub-inet", "icmp or udp port 434", name="pub-inet-mip")
    wait_both_layers(mvn, "192.0.2.100")
    keeper = start_session(world, bind=HOME)
    rx, _tx = start_probe(world, HOME)

    moves = []
    for net, coa in STOPS:
        mv = visit(world, mvn, rx, keeper, net, coa)
        st = mv.pop("status")
        mv["coa"] = st["mip"]["care_of_address"]
        if net == "fn3":
            lease = st["mip"]["dhcp"]["lease"]
            assert lease and lease["network"] == "fn3" and lease["address"].split("/")[0] == mv["coa"], st["mip"]["dhcp"]
        assert st["vpn"]["local_address"] == mv["coa"], f"IKE must leave from the care-of address: {st['vpn']}"
        moves.append(mv)
    assert binding(roles["i-ha"])["care_of_address"] == moves[-1]["coa"]

    # 4.3, inside: home again, the HA is reached directly, no VPN
    counted = ike_per_move(mvn)
    m_home = handoff.move(world, "r", "home", configure=False)
    wait_for(lambda: at_home(MipLayer(mvn)) and binding(roles["i-ha"]) is None,
             timeout=8, what="deregistration at home")
    home = wait_for(lambda: (lambda s: s if not s["vpn_running"] else None)(mvn.status()), timeout=3,
                    what="the VPN client to stop at home (inside the intranet)")
    assert home["mip"]["counters"].get("reply:0", 0) >= len(STOPS) + 2, home["mip"]["counters"]
    assert world.ping("h", HOME, timeout=2), "H must reach the home address directly"
    session_caught_up(keeper)
    k = keeper.status()
    assert k["connects"] == 1 and k["error"] is None and k["mismatch_at"] is None, k

    # on the wire: one new IKE exchange per move, from the new address; the stream waited for it
    at_g.stop()
    ends = [mv["t_down"] for mv in moves[1:]] + [m_home.t_down]
    per_move = ike_messages(at_g.path, [(mv["t_down"], end) for mv, end in zip(moves, ends)])
    public = {"fn2": "192.0.2.228", "fn3": "203.0.113.10"}  # behind the NAT, G sees the NAT's address
    for mv, msgs in zip(moves, per_move):
        inits = [x for x in msgs if x["exchange"] == IKE_SA_INIT and not x["response"]]
        auths = [x for x in msgs if x["exchange"] == IKE_AUTH and x["response"]]
        assert len(inits) == 1 and inits[0]["src"] == public[mv["to"]], f"move to {mv['to']}: {msgs}"
        assert auths, f"move to {mv['to']}: no IKE_AUTH response from G: {msgs}"
        mv["ike_messages_wire"], mv["ike_messages_status"] = len(msgs), counted[mv["to"]]
        mv["ike_auth_done_after_up_s"] = round(auths[-1]["t"] - mv["t_up"], 6)
        assert mv["ike_messages_wire"] >= 4 and mv["ike_messages_status"] >= 4, mv
        assert mv["t_up"] + mv["after_up_s"] >= auths[-1]["t"], \
            f"the home address was reached again before the new IKE exchange ended: {mv}"

    # 4.3, outside: a registration request to the HA from the Internet, without the VPN, dies at
    # the core (ICMP destination unreachable, net unreachable); no reply
    probe = mip_probe(world, "pub", timeout=1.0, to=HA, coa=PUB, bind=PUB)
    at_pub.stop()
    assert probe["reply"] is None, f"the HA answered a request from outside the intranet: {probe}"
    errors = at_pub.packets(f"icmp.type == 3 && icmp.code == 0 && ip.dst == {HA}", fields=["ip.src"])
    assert errors, "the core must answer the request to the intranet's HA with ICMP net unreachable"
    (case_dir / "traversal.json").write_text(json.dumps({"moves": moves, "tcp_max_gap_s": k["max_gap"]}, indent=1))


