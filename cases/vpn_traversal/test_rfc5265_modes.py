"""RFC 5265 access modes other than cvc: fvc outside (x-MIP through the foreign agents of the visited
networks, RFC 5265 section 2, access mode fvc) and f inside (i-MIP through a foreign agent on the
intranet's visited subnet, RFC 5265 section 2, access mode f), each decided by the inside/outside
detection (the i-HA's reply with the Trusted Networks Configured extension 149)."""
import json
import time

import pytest

from testbed import handoff
from testbed.capture import decode
from testbed.mip_checks import binding, session_caught_up, wait_for
from testbed.rfc5265_checks import (
    assert_no_ike_per_move, assert_only_x_mip_moved, outside_moves, settled,
)
from testbed.traversal_checks import IKE_BPF, ike_messages, start_session

FA1, FA2, FA_IVN = "192.0.2.1", "192.0.2.129", "10.1.4.1"
I_HA, IVN_COA = "10.1.1.2", "10.1.4.100"
INFORMATIONAL = 37  # IKEv2 exchange type: the VPN's teardown (Delete) when the node goes inside
STOPS = [("fn2", FA2), ("fn1", FA1)]  # from fn1: fn1 -> fn2 -> fn1, the agents' care-of addresses


@pytest.mark.req("rfc5265-mode-fvc", "ps-5.6-handoff-without-ike")
@pytest.mark.scenario("rfc5265-fvc")
@pytest.mark.impl_matrix("gw")  # the gateway is unmodified: every installed gateway fills it
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
    s = wait_for(lambda: settled(mvn, "fvc", FA1), timeout=15, what="outside on fn1 in mode fvc: x-MIP via FA1, VPN, i-MIP")
    vip = s["vpn"]["virtual_ip"]
    assert s["mode"] == "rfc5265-fvc" and s["location"]["location"] == "outside", s["location"]
    assert s["detection"]["agent"] == FA1, f"the i-HA must have been asked through the agent: {s['detection']}"
    assert s["vpn"]["local_address"] == x_hoa, f"IKE must leave from the x-HoA: {s['vpn']['local_address']}"
    sa = wait_for(lambda: [x for x in gw.status()["ike_sas"] if x["state"] == "ESTABLISHED"], what="G's IKE SA")[0]
    assert sa["remote_host"] == x_hoa, f"G's IKE peer must be the x-HoA: {sa['remote_host']}"
    assert binding(xha, x_hoa)["care_of_address"] == FA1, f"the x-HA's binding: {binding(xha, x_hoa)}"
    assert binding(iha, i_hoa)["care_of_address"] == vip, f"the i-HA's binding: {binding(iha, i_hoa)}"
    assert roles["fa1"].status()["visitors"], "FA1 must list the node as a visitor"

    def each(net: str, coa: str):
        wait_for(lambda: settled(mvn, "fvc", coa), timeout=5, what=f"mode fvc via the agent {coa} on {net}")
        assert binding(xha, x_hoa)["care_of_address"] == coa, binding(xha, x_hoa)

    run = outside_moves(world, mvn, i_hoa, STOPS, each)
    moves = run["moves"]
    _after, k = assert_only_x_mip_moved(mvn, gw, iha, i_hoa, vip, sa["name"], run["keeper"], run["i_requests"])
    assert_no_ike_per_move(at_g.stop(), mvn, moves, run["t_end"], FA2)
    (case_dir / "fvc.json").write_text(json.dumps({"moves": moves, "tcp_max_gap_s": k["max_gap"]}, indent=1))


@pytest.mark.req("rfc5265-mode-f", "rfc5265-inside-outside-detection")
@pytest.mark.scenario("rfc5265-fvc")
@pytest.mark.impl_matrix("gw")  # inside, G only sees the VPN go: the same with any gateway
def test_f_inside_through_the_intranet_agent_and_c_without_it(world, scenario, roles, capture, case_dir, request):
    """RFC 5265 section 2, access mode f: inside the intranet, on a visited subnet whose router runs a
    foreign agent (ivn, the unmodified foreign-agent daemon on the intranet router), i-MIP registers
    through that agent with its care-of address, without VPN; where no agent advertises the same
    subnet gives mode c (co-located). Verdicts, over one TCP session to H on the i-HoA and the stays
    fn1 (fvc) -> ivn with the agent -> home -> ivn without it: on ivn the node decides inside in mode
    f (its request to the i-HA went through the agent, whose relayed reply carries extension 149 on
    the wire at the i-HA), the VPN is down, the i-HA binds the i-HoA to the agent's care-of address
    10.1.4.1 and no IKE crosses G_e but the VPN's teardown (INFORMATIONAL); the agent stopped, ivn gives mode c (binding on
    10.1.4.100); the TCP session survives every stay. The agent runs on the intranet router, which
    also routes the home subnet: its host route for the visitor's i-HoA outlives the visit until the
    registration's lifetime ends (RFC 5944 tells the old agent nothing of a move), so the scenario's
    agent grants 4 s (the node asks again with the agent's maximum after code 69) and the session
    bridges those seconds after leaving ivn."""
    mvn, iha = roles["mn"], roles["i-ha"]
    i_hoa = scenario.roles["mn"].config["inner"]["home_address"]
    wait_for(lambda: settled(mvn, "fvc", FA1), timeout=15, what="outside on fn1 in mode fvc")
    at_g = capture("g", "g-dmz", IKE_BPF, name="g-dmz-ike")
    at_iha = capture("iha", "iha-home", name="iha-home")
    keeper = start_session(world, bind=i_hoa)
    stays = {}

    def stay(net: str, mode: str):
        m = handoff.move(world, "r", net, configure=False)
        coa = {"f": FA_IVN, "c": IVN_COA}.get(mode)
        s = wait_for(lambda: settled(mvn, mode, coa), timeout=15, what=f"inside on {net} in mode {mode}")
        session_caught_up(keeper, timeout=15)
        stays[f"{len(stays)}:{net}:{mode}"] = {"t_down": m.t_down, "t_up": m.t_up, "settle_s": round(time.time() - m.t_up, 3)}
        return s, m

    s, at_f = stay("ivn", "f")
    assert s["detection"]["agent"] == FA_IVN, f"the i-HA must have been asked through the agent: {s['detection']}"
    assert binding(iha, i_hoa)["care_of_address"] == FA_IVN, f"the i-HA's binding in mode f: {binding(iha, i_hoa)}"
    assert roles["fa-ivn"].status()["visitors"], "the ivn agent must list the node as a visitor"
    t_f_end = time.time()
    stay("home", "home")
    # the agent's visitor (and its host route on the intranet router) lasts until its lifetime ends;
    # stopping the agent before would leave the route behind (the daemon removes it on expiry only)
    wait_for(lambda: not roles["fa-ivn"].status()["visitors"], timeout=8, what="the ivn agent's visitor to expire")
    roles["fa-ivn"].stop()
    stay("ivn", "c")
    assert binding(iha, i_hoa)["care_of_address"] == IVN_COA, f"the i-HA's binding in mode c: {binding(iha, i_hoa)}"
    k = keeper.status()
    assert k["connects"] == 1 and k["error"] is None and k["mismatch_at"] is None, k

    (ike_f,) = ike_messages(at_g.stop(), [(at_f.t_down, t_f_end)])
    setup = [m for m in ike_f if m["exchange"] != INFORMATIONAL]
    assert setup == [], f"inside in mode f: IKE exchanges other than the VPN's teardown at G_e: {setup}"
    replies = decode(at_iha.stop(), f"mip.type == 3 && ip.src == {I_HA} && ip.dst == {FA_IVN}",
                     ["frame.time_epoch", "mip.code", "mip.ext.type"])
    assert replies and all("149" in r["mip.ext.type"] for r in replies), \
        f"the i-HA's replies to the ivn agent must carry extension 149: {replies}"
    (case_dir / "f-and-c.json").write_text(json.dumps({"stays": stays, "tcp_max_gap_s": k["max_gap"]}, indent=1))
