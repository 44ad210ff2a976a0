"""Problem statement 2.2 and 2.4 with MIP inside IPsec (the DMZ HA, or the operator's HA on the
Internet, reached through the VPN tunnel): the draft says 2.2 in this nesting "has the same problems
as the scenario of Section 2.1", and section 3 that the problems of 2.2 and 2.4 "are either the same
as or a subset of those in the scenario in Section 2.1"."""
import json
import time

import pytest

from testbed.traversal_checks import (
    IKE_AUTH, IKE_BPF, IKE_SA_INIT, ike_messages, ike_per_move, start_probe, visit, wait_both_layers,
)

# G forwards from our gateway's tunnel device (vpn0) to the DMZ HA (fixtures/world.yaml,
# dmz-policy-vpn-to-ha); another gateway's tunnel device is named otherwise: ours only here
STOPS = [("fn2", "192.0.2.228"), ("fn3", "10.77.0.100")]

@pytest.mark.req("ps-3-scenario-2.1-essential", "ps-4.1-colocated-renegotiation")
@pytest.mark.scenario("mipvpn-ha-dmz-mip-inside-ipsec", "mipvpn-ha-outside-mip-inside-ipsec")
def test_2_2_and_2_4_mip_inside_ipsec_have_the_problems_of_2_1(world, scenario, roles, capture, case_dir):
    """Sections 2.2, 2.4 and 3: with the HA reached through the VPN tunnel (2.2: G forwards from
    its tunnel to the DMZ HA; 2.4: G's Internet access NATs the tunnel's traffic to G_e toward the
    operator's HA), registration works (the HA sees the tunnel's inner address or G_e, not the
    care-of address: RFC 3519 UDP tunnelling), and every move fn1 -> fn2 -> behind the NAT is a new
    IKE exchange at G_e from the new address; a probe stream from the Internet (pub) to the home
    address comes back only after it: the problem of 2.1 (section 4.1)."""
    mvn = roles["mn"]
    hoa = scenario.roles["mn"].config["mn"]["home_address"]
    at_g = capture("g", "g-dmz", IKE_BPF, name="g-dmz-ike")
    s = wait_both_layers(mvn, "192.0.2.100")
    assert s["mip"]["tunnel"] == "udp", f"the HA must see the tunnel's inner address, not the care-of address: {s['mip']}"
    rx, _tx = start_probe(world, hoa, sender="pub")
    moves = [visit(world, mvn, rx, None, net, coa) for net, coa in STOPS]
    counted = ike_per_move(mvn)
    at_g.stop()
    ends = [mv["t_down"] for mv in moves[1:]] + [time.time()]
    for mv, msgs in zip(moves, ike_messages(at_g.path, [(mv.pop("status") and mv["t_down"], e) for mv, e in zip(moves, ends)])):
        auths = [x for x in msgs if x["exchange"] == IKE_AUTH and x["response"]]
        assert [x for x in msgs if x["exchange"] == IKE_SA_INIT and not x["response"]] and auths, msgs
        assert counted[mv["to"]] >= 4 and mv["t_up"] + mv["after_up_s"] >= auths[-1]["t"], mv
    (case_dir / "traversal.json").write_text(json.dumps({"moves": moves}, indent=1))
