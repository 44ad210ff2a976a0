"""RFC 5265 over the whole world: one TCP session to H on the i-HoA while the node goes home ->
intranet visited subnet -> fn1 -> fn2 -> behind the NAT -> home, each stay in the access mode RFC
5265 section 2 gives it, decided by the inside/outside detection (the i-HA's reply with extension
149); draft-ietf-mip4-vpn-problem-statement guidelines 5.6 (no IKE on an outside move) and 5.9 (NAT)."""
import json
import time

import pytest

from testbed import handoff
from testbed.capture import decode
from testbed.mip_checks import binding, session_caught_up, wait_for
from testbed.rfc5265_checks import settled
from testbed.traversal_checks import IKE_BPF, ike_messages, start_session

# (network, the mode RFC 5265 gives it, the x-MIP or i-MIP care-of address the status must show)
TOUR = [("home", "home", None), ("ivn", "c", "10.1.4.100"), ("fn1", "cvc", "192.0.2.100"),
        ("fn2", "cvc", "192.0.2.228"), ("fn3", "cvc", "10.77.0.100"), ("home", "home", None)]
OUTSIDE_MOVES = ("fn2", "fn3")  # outside -> outside: no IKE at all


@pytest.mark.req("rfc5265-inside-outside-detection", "rfc5265-x-ha-deregistration", "ps-5.6-handoff-without-ike", "ps-5.9-nat-traversal")
@pytest.mark.scenario("rfc5265-cvc-nat")
@pytest.mark.impl_matrix("gw")
def test_one_tcp_session_over_the_tour(world, scenario, roles, capture, case_dir, request):
    """RFC 5265 section 2 (access modes) and its inside/outside detection, over the tour that starts
    behind the NAT of fn3 (cvc, x-MIP with RFC 3519) and goes home -> ivn -> fn1 -> fn2 -> behind the
    NAT -> home. Verdicts: each stay reaches its mode in the node's status (home: inside, no VPN, no
    i-MIP binding; ivn: c, i-MIP from 10.1.4.100 with 149; fn1, fn2, fn3: cvc with the x-MIP care-of
    address of the network, x-MIP over RFC 3519 behind the NAT, i-MIP on the VPN-TIA); the moves
    fn1 -> fn2 and fn2 -> NAT show ZERO IKE messages at G_e (tshark); inside <-> outside the VPN
    comes down (no VPN at home and on ivn) and up again (on fn1); one TCP session to H bound to the
    i-HoA survives the whole tour (no reconnect, no byte lost). Inside, the x-HA deregistration of
    RFC 5265 (the world variant intranet-reaches-x-ha lets the intranet reach the x-HA on UDP 434
    only): at home and on ivn the x-HA holds no binding for the x-HoA, the node's x-MIP layer is held
    back, and at the x-HA tshark shows the deregistration (lifetime 0) from the inside address and
    its reply with code 0; back outside on fn1 the x-HA binds the x-HoA to 192.0.2.100 again."""
    mvn, xha = roles["mn"], roles["x-ha"]
    i_hoa = scenario.roles["mn"].config["inner"]["home_address"]
    s = wait_for(lambda: settled(mvn, "cvc", "10.77.0.100"), timeout=15, what="cvc behind the NAT at the start")
    assert s["mip"]["tunnel"] == "udp", f"behind the NAT x-MIP must use RFC 3519: {s['layers']['x-mip']}"
    at_g = capture("g", "g-dmz", IKE_BPF, name="g-dmz-ike")
    at_xha = capture("xha", "xha-dmz", "udp port 434", name="xha-dmz-mip")
    x_hoa = scenario.roles["mn"].config["mn"]["home_address"]
    keeper = start_session(world, bind=i_hoa)
    stays = []
    for net, mode, coa in TOUR:
        m = handoff.move(world, "r", net, configure=False)
        s = wait_for(lambda: settled(mvn, mode, coa), timeout=15, what=f"mode {mode} on {net}")
        t_settled = time.time()
        session_caught_up(keeper, timeout=15)
        stays.append({"net": net, "mode": s["access_mode"], "t_down": m.t_down, "t_up": m.t_up,
                      "settle_s": round(t_settled - m.t_up, 3), "x_mip_tunnel": s["mip"]["tunnel"],
                      "vpn_running": s["vpn_running"]})
        if mode in ("home", "c"):  # RFC 5265 inside: deregistered from the x-HA
            dereg = wait_for(lambda: mvn.status()["x_ha_deregistration"]["code"] == 0 and binding(xha, x_hoa) is None,
                             timeout=5, what=f"the x-HA deregistration on {net}")
            assert dereg and mvn.status()["layers"]["x-mip"]["held"], mvn.status()["x_ha_deregistration"]
            stays[-1]["x_ha_deregistered_from"] = mvn.status()["x_ha_deregistration"]["address"]
        elif binding(xha, x_hoa)["care_of_address"] != coa:
            raise AssertionError(f"outside on {net} the x-HA must bind the x-HoA to {coa}: {binding(xha, x_hoa)}")
        if net == "fn3":
            assert s["mip"]["tunnel"] == "udp", f"behind the NAT again x-MIP must use RFC 3519: {s['layers']['x-mip']}"
    k = keeper.status()
    assert k["connects"] == 1 and k["error"] is None and k["mismatch_at"] is None, k

    ends = [st["t_down"] for st in stays[1:]] + [time.time()]
    per_stay = ike_messages(at_g.stop(), [(st["t_down"], end) for st, end in zip(stays, ends)])
    for st, msgs in zip(stays, per_stay):
        st["ike_messages_wire"] = len(msgs)
        if st["net"] in OUTSIDE_MOVES:
            assert msgs == [], f"the outside move to {st['net']}: IKE messages at G_e: {msgs}"
    fn1 = next(st for st in stays if st["net"] == "fn1")
    assert fn1["ike_messages_wire"] > 0, "going outside on fn1 must bring the VPN up (IKE at G_e)"
    xha_pcap = at_xha.stop()
    for st in (st for st in stays if "x_ha_deregistered_from" in st):
        src = st["x_ha_deregistered_from"]
        asked = decode(xha_pcap, f"mip.type == 1 && mip.life == 0 && ip.src == {src} && mip.homeaddr == {x_hoa}",
                       ["frame.time_epoch"])
        answered = decode(xha_pcap, f"mip.type == 3 && mip.code == 0 && ip.dst == {src} && mip.homeaddr == {x_hoa}",
                          ["frame.time_epoch"])
        assert asked and answered, f"on {st['net']}: the deregistration from {src} at the x-HA: {asked}, {answered}"
    (case_dir / "tour.json").write_text(json.dumps({"stays": stays, "tcp_max_gap_s": k["max_gap"]}, indent=1))
