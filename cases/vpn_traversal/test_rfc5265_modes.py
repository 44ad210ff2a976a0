"""RFC 5265 access modes other than cvc: fvc outside (x-MIP through the foreign agents of the visited
networks, RFC 5265 section 2, access mode fvc) and f inside (i-MIP through a foreign agent on the
intranet's visited subnet, RFC 5265 section 2, access mode f), each decided by the inside/outside
detection (the i-HA's reply with the Trusted Networks Configured extension 149)."""
import json
import time

import pytest

from testbed.mip_checks import binding, wait_for
from testbed.rfc5265_checks import assert_no_ike_per_move, assert_only_x_mip_moved
from testbed.traversal_checks import IKE_BPF, start_probe, start_session, visit

FA1, FA2 = "192.0.2.1", "192.0.2.129"
STOPS = [("fn2", FA2), ("fn1", FA1)]  # from fn1: fn1 -> fn2 -> fn1, the agents' care-of addresses


def _fvc_up(mvn, coa: str):
    """The node's status once it is outside in mode fvc through the agent `coa` with all three layers up."""
    s = mvn.status()
    i, vpn, x = s.get("i_mip") or {}, s["vpn"] or {}, s["mip"]
    if s.get("access_mode") != "fvc" or x["state"] != "registered" or x["mode"] != "fa" or x["care_of_address"] != coa:
        return None
    if vpn.get("state") != "established" or i.get("state") != "registered" or i["care_of_address"] != vpn["virtual_ip"]:
        return None
    return s


@pytest.mark.req("rfc5265-mode-fvc", "ps-5.6-handoff-without-ike")
@pytest.mark.scenario("rfc5265-fvc")
@pytest.mark.impl_matrix("gw=strongswan")  # the gateway is unmodified: strongSwan fills it too
def test_fvc_through_foreign_agents_without_ike(world, scenario, roles, capture, case_dir):
    """RFC 5265 section 2, access mode fvc: x-MIP registers through the foreign agent of the visited
    network (the unmodified foreign-agent daemon on ar1 and ar2), IKE leaves from the x-HoA, i-MIP
    registers through the VPN tunnel with the VPN-TIA as co-located care-of address and the T bit.
    Verdicts: the node decides it is outside in mode fvc (no reply with extension 149 from the i-HA
    through the agent); the x-HA binds the x-HoA to the FA's care-of address; G's IKE peer is the
    x-HoA; the i-HA binds the i-HoA to the VPN-TIA; the moves fn1 -> fn2 -> fn1 redo only the x-MIP
    registration through the new agent: ZERO IKE messages at G_e (tshark) and in the node's count,
    no i-MIP request, the same IKE SA; a TCP session to H from the i-HoA and a 1 kHz probe
    H -> i-HoA survive (draft-ietf-mip4-vpn-problem-statement guideline 5.6)."""
    mvn, gw, xha, iha = roles["mn"], roles["gw"], roles["x-ha"], roles["i-ha"]
    cfg = scenario.roles["mn"].config
    x_hoa, i_hoa = cfg["mn"]["home_address"], cfg["inner"]["home_address"]
    at_g = capture("g", "g-dmz", IKE_BPF, name="g-dmz-ike")
    s = wait_for(lambda: _fvc_up(mvn, FA1), timeout=15, what="outside on fn1 in mode fvc: x-MIP via FA1, VPN, i-MIP")
    vip = s["vpn"]["virtual_ip"]
    assert s["mode"] == "rfc5265-fvc" and s["location"]["location"] == "outside", s["location"]
    assert s["detection"]["agent"] == FA1, f"the i-HA must have been asked through the agent: {s['detection']}"
    assert s["vpn"]["local_address"] == x_hoa, f"IKE must leave from the x-HoA: {s['vpn']['local_address']}"
    sa = wait_for(lambda: [x for x in gw.status()["ike_sas"] if x["state"] == "ESTABLISHED"], what="G's IKE SA")[0]
    assert sa["remote_host"] == x_hoa, f"G's IKE peer must be the x-HoA: {sa['remote_host']}"
    assert binding(xha, x_hoa)["care_of_address"] == FA1, f"the x-HA's binding: {binding(xha, x_hoa)}"
    assert binding(iha, i_hoa)["care_of_address"] == vip, f"the i-HA's binding: {binding(iha, i_hoa)}"
    assert roles["fa1"].status()["visitors"], "FA1 must list the node as a visitor"

    keeper = start_session(world, bind=i_hoa)
    rx, _tx = start_probe(world, i_hoa)
    i_req = mvn.status()["i_mip"]["counters"].get("requests", 0)
    moves = []
    for net, coa in STOPS:
        mv = visit(world, mvn, rx, keeper, net, coa)
        mv.pop("status")
        wait_for(lambda: _fvc_up(mvn, coa), timeout=5, what=f"mode fvc via the agent {coa} on {net}")
        assert binding(xha, x_hoa)["care_of_address"] == coa, binding(xha, x_hoa)
        moves.append(mv)
    t_end = time.time()
    _after, k = assert_only_x_mip_moved(mvn, gw, iha, i_hoa, vip, sa["name"], keeper, i_req)
    assert_no_ike_per_move(at_g.stop(), mvn, moves, t_end, FA2)
    (case_dir / "fvc.json").write_text(json.dumps({"moves": moves, "tcp_max_gap_s": k["max_gap"]}, indent=1))
