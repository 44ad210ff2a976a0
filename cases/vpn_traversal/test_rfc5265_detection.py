"""RFC 5265 inside/outside detection: on each attachment change the mobile node registers with the
i-HA and the x-HA together; an i-HA reply carrying the Trusted Networks Configured extension (149)
means inside (no VPN, i-MIP directly: mode c on the intranet's visited subnet, no binding at home);
outside no such reply comes (the i-HA drops untrusted sources silently) and x-MIP, IKE and i-MIP come
up in that order (mode cvc). Modes f and fvc: test_rfc5265_modes.py; NAT and NAPT:
test_rfc5265_nat.py; the x-HA's deregistration when inside (where the intranet reaches the x-HA) and
the tour through the NAT: test_rfc5265_tour.py."""
import json
import time

import pytest

from testbed import handoff
from testbed.capture import decode
from testbed.mip_checks import binding, wait_for
from testbed.traversal_checks import ike_messages, rfc5265_layers_up, session_caught_up, start_session

X_HA, GW, I_HA = "203.0.113.71", "203.0.113.70", "10.1.1.2"
IVN_COA = "10.1.4.100"
UNTRUSTED = "172.31.0.1"  # a source outside the i-HA's trusted networks (10.1.0.0/16), added on H


def _inside(mvn, mode: str):
    s = mvn.status()
    i = s["i_mip"]
    if s.get("access_mode") != mode or s["vpn_running"] or (s["location"] or {}).get("location") != "inside":
        return None
    if mode == "home" and i["state"] in ("home", "detached") and i["location"] == "home":
        return s
    if mode == "c" and i["state"] == "registered" and i["care_of_address"] == IVN_COA and i["trusted_network"]:
        return s
    return None


def _outside(mvn):
    s = rfc5265_layers_up(mvn)
    if s is None or s.get("access_mode") != "cvc" or s["i_mip"]["care_of_address"] != s["vpn"]["virtual_ip"]:
        return None
    return s


def _go(world, net: str):
    return handoff.move(world, "r", net, configure=False)


@pytest.mark.req("rfc5265-inside-outside-detection", "rfc5265-untrusted-silent-drop", "ps-5.6-handoff-without-ike")
@pytest.mark.scenario("rfc5265-cvc")
@pytest.mark.impl_matrix("gw")  # the detection needs nothing from G: the same with any gateway
def test_inside_outside_tour(world, scenario, capture, case_dir, request):
    """RFC 5265 inside/outside detection over the tour fn1 (start) -> home -> ivn -> fn1 -> fn2 ->
    home. Verdicts: at home the node is inside in mode `home` (no VPN, the i-HA's binding removed);
    on ivn it is inside in mode `c` (i-HA binding on the co-located address 10.1.4.100, the i-HA's
    reply to it carries extension 149 on the wire, ZERO IKE messages at G); on fn1 it is outside in
    mode `cvc` and the wire shows, in that order, the x-HA's registration reply, the first IKE
    message, and the i-MIP request from the VPN-TIA at the i-HA; fn1 -> fn2 shows ZERO IKE messages;
    back home it is inside again; a TCP session to H bound to the i-HoA survives the whole tour; a
    registration request to the i-HA from a source outside its trusted networks gets no reply on the
    wire and the i-HA counts the drop as untrusted-source."""
    at_g = capture("g", "g-dmz", name="g-dmz")
    at_iha = capture("iha", "iha-home", name="iha-home")
    at_xha = capture("xha", "xha-dmz", name="xha-dmz")
    roles = request.getfixturevalue("roles")
    mvn, iha = roles["mn"], roles["i-ha"]
    i_hoa = scenario.roles["mn"].config["inner"]["home_address"]
    wait_for(lambda: _outside(mvn), timeout=15, what="outside on fn1: x-MIP, the VPN tunnel and i-MIP up (cvc)")
    keeper = start_session(world, bind=i_hoa)
    stays = {}

    def stay(net: str, ready, what: str, timeout: float = 15):
        ike = mvn.status()["ike_messages"]
        m = _go(world, net)
        s = wait_for(ready, timeout=timeout, what=what)
        t_ready = time.time()
        session_caught_up(keeper, timeout=15)
        stays[f"{len(stays)}:{net}"] = {"t_down": m.t_down, "t_up": m.t_up, "t_ready": t_ready,
                                        "settle_s": round(t_ready - m.t_up, 3), "mode": s["access_mode"],
                                        "ike_messages_node": s["ike_messages"] - ike}
        return s

    stay("home", lambda: _inside(mvn, "home"), "inside at home (mode home, no VPN)")
    assert binding(iha, i_hoa) is None, f"at home the i-HA must hold no binding: {binding(iha, i_hoa)}"
    x_binding_inside = binding(roles["x-ha"], scenario.roles["mn"].config["mn"]["home_address"])
    stay("ivn", lambda: _inside(mvn, "c"), "inside on ivn (mode c, i-MIP registered from 10.1.4.100 with 149)")
    assert binding(iha, i_hoa)["care_of_address"] == IVN_COA
    s = stay("fn1", lambda: _outside(mvn), "outside on fn1 again (cvc: x-MIP, IKE, i-MIP)")
    vip = s["vpn"]["virtual_ip"]
    assert binding(iha, i_hoa)["care_of_address"] == vip
    i_req = s["i_mip"]["counters"].get("requests", 0)
    s = stay("fn2", lambda: _outside(mvn) if mvn.status()["mip"]["care_of_address"] == "192.0.2.228" else None,
             "outside on fn2 (x-MIP re-registered)")
    assert s["i_mip"]["counters"].get("requests", 0) == i_req, "an outside move must not redo i-MIP"
    stay("home", lambda: _inside(mvn, "home"), "inside at home again")
    k = keeper.status()
    assert k["connects"] == 1 and k["error"] is None and k["mismatch_at"] is None, k

    # a request from an untrusted source: silence on the wire, a drop counted by the i-HA
    drops = iha.status().get("drops", {}).get("untrusted-source", 0)
    world.run_in("h", ["ip", "addr", "add", f"{UNTRUSTED}/32", "dev", "lo"], check=True)
    request.addfinalizer(lambda: world.run_in("h", ["ip", "addr", "del", f"{UNTRUSTED}/32", "dev", "lo"]))
    world.run_in("h", ["python3", "-c", (
        "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        f"s.bind(('{UNTRUSTED}', 0)); s.sendto(bytes([1, 0, 0, 60]) + bytes(20), ('{I_HA}', 434))")], check=True)
    wait_for(lambda: iha.status().get("drops", {}).get("untrusted-source", 0) > drops, timeout=5,
             what="the i-HA to count the untrusted request as dropped (untrusted-source)")
    time.sleep(0.5)

    g_pcap, iha_pcap, xha_pcap = at_g.stop(), at_iha.stop(), at_xha.stop()
    ivn, fn1, fn2 = stays["1:ivn"], stays["2:fn1"], stays["3:fn2"]
    ike_ivn, ike_fn1, ike_fn2 = ike_messages(g_pcap, [(ivn["t_down"], fn1["t_down"]), (fn1["t_down"], fn1["t_ready"]),
                                                      (fn2["t_down"], stays["4:home"]["t_down"])])
    assert ike_ivn == [], f"inside on ivn: IKE messages at G: {ike_ivn}"
    assert ike_fn2 == [], f"fn1 -> fn2: IKE messages at G: {ike_fn2}"
    assert ike_fn1, "outside on fn1: no IKE at G"
    # inside on ivn: the i-HA's reply to 10.1.4.100 carries extension 149 on the wire
    replies = decode(iha_pcap, f"mip.type == 3 && ip.src == {I_HA} && ip.dst == {IVN_COA}",
                     ["frame.time_epoch", "mip.code", "mip.ext.type"])
    assert replies and all("149" in r["mip.ext.type"] for r in replies), f"i-HA replies on ivn: {replies}"
    # outside on fn1: x-MIP, then IKE, then i-MIP (times from the three captures on one clock)
    x_reply = [float(r["frame.time_epoch"][0]) for r in decode(
        xha_pcap, f"mip.type == 3 && ip.src == {X_HA} && ip.dst == 192.0.2.100", ["frame.time_epoch"])
        if fn1["t_down"] <= float(r["frame.time_epoch"][0]) < fn1["t_ready"]]
    i_req = [float(r["frame.time_epoch"][0]) for r in decode(
        iha_pcap, f"mip.type == 1 && ip.src == {vip} && ip.dst == {I_HA}", ["frame.time_epoch"])
        if fn1["t_down"] <= float(r["frame.time_epoch"][0]) < fn1["t_ready"]]
    t_ike = ike_fn1[0]["t"]
    assert x_reply and i_req, f"x-MIP replies {x_reply}, i-MIP requests {i_req} while going outside"
    assert x_reply[0] < t_ike < i_req[0], f"order x-MIP {x_reply[0]}, IKE {t_ike}, i-MIP {i_req[0]}"
    silent = decode(iha_pcap, f"ip.dst == {UNTRUSTED}", ["ip.src"])
    asked = decode(iha_pcap, f"ip.src == {UNTRUSTED} && udp.dstport == 434", ["ip.src"])
    assert asked and silent == [], f"the untrusted request: {len(asked)} seen, {len(silent)} answers"
    (case_dir / "detection.json").write_text(json.dumps(
        {"stays": stays, "ike_fn1": len(ike_fn1), "order_s": {"x_mip_reply": x_reply[0] - fn1["t_up"],
                                                              "first_ike": t_ike - fn1["t_up"],
                                                              "i_mip_request": i_req[0] - fn1["t_up"]},
         "tcp_max_gap_s": k["max_gap"],
         # not deregistered yet: what the x-HA holds while the node is inside, and whether the x-MIP
         # requests the node sends from the intranet reach the x-HA at all
         "x_ha_binding_at_home": x_binding_inside,
         "x_mip_requests_from_intranet_at_x_ha": len(decode(xha_pcap, "mip.type == 1 && ip.src == 10.1.0.0/16",
                                                            ["ip.src"]))}, indent=1))
