"""RFC 5265 (Mobile IPv4 traversal across IPsec-based VPN gateways), access mode cvc, outside the
intranet: x-MIP with a co-located care-of address to the external HA in the DMZ (x-HA), IKE from the
x-HoA carried in the x-MIP tunnel, i-MIP to the internal HA (i-HA) through the VPN tunnel with the
VPN-TIA as co-located care-of address (RFC 5265 section 2, its network environment and access
modes; draft-ietf-mip4-vpn-problem-statement guidelines 5.1 and 5.6)."""
import json
import time

import pytest

from testbed.capture import decode
from testbed.ipsec_checks import tshark_esp_sa_options
from testbed.mip_checks import H, binding, wait_for
from testbed.rfc5265_checks import assert_no_ike_per_move, assert_only_x_mip_moved, ip_layers
from testbed.traversal_checks import rfc5265_layers_up, start_probe, start_session, visit

STOPS = [("fn2", "192.0.2.228"), ("fn1", "192.0.2.100")]  # from fn1: fn1 -> fn2 -> fn1
X_HA, GW, I_HA = "203.0.113.71", "203.0.113.70", "10.1.1.2"
FIRST_COA = "192.0.2.100"


@pytest.mark.req("ps-5.6-handoff-without-ike", "ps-5.1-preserve-vpn")
@pytest.mark.scenario("rfc5265-cvc")
@pytest.mark.impl_matrix("gw")  # guideline 5.1/5.4: an unmodified gateway of every installed implementation
def test_cvc_outside_handoffs_without_ike(world, scenario, capture, case_dir, request):
    """RFC 5265 section 2, access mode cvc: x-MIP with a co-located care-of address, then IKE from
    the x-HoA, then i-MIP through the tunnel with the VPN-TIA as co-located care-of address (the T
    bit set); outside, a handoff redoes only the x-MIP registration (the IPsec SA is bound to the
    x-HoA); the i-MIP registration travels protected by the VPN. Problem statement guidelines 5.1
    (the VPN gateway unmodified) and 5.6 (no IKE on a handoff). Verdicts: the node names its mode and three layers; IKE
    leaves from the x-HoA and G's IKE peer is the x-HoA (G is the plain remote-access gateway); the
    i-HA binds the i-HoA to the VPN-TIA and its reply carries the Trusted Networks Configured
    extension (149); the moves fn1 -> fn2 -> fn1 show ZERO IKE messages at G_e (tshark) and in the
    node's count, one x-MIP registration each and no i-MIP one, the same IKE SA; a TCP session to H
    from the i-HoA and a 1 kHz probe H -> i-HoA survive (outage per move kept); between the x-HA and
    G (G_e's capture) no Mobile IP travels in clear, and with the child SA's keys tshark finds the
    i-MIP registration there inside ESP; at the x-HA it decodes the cvc layering both ways:
    IP(CoA -> x-HA) / IP(x-HoA -> G) / ESP / IP(VPN-TIA -> i-HA) / IP(i-HoA -> H)."""
    # the captures run before the node starts: its IKE and its i-MIP registration are on them
    at_g = capture("g", "g-dmz", name="g-dmz")  # G's side of the DMZ: the leg between the x-HA and G
    at_xha = capture("xha", "xha-dmz", name="xha-dmz")
    roles = request.getfixturevalue("roles")
    mvn, gw, xha, iha = roles["mn"], roles["gw"], roles["x-ha"], roles["i-ha"]
    cfg = scenario.roles["mn"].config
    x_hoa, i_hoa = cfg["mn"]["home_address"], cfg["inner"]["home_address"]

    s = wait_for(lambda: rfc5265_layers_up(mvn), timeout=15, what="x-MIP, the VPN tunnel and i-MIP all up")
    assert s["mode"] == "rfc5265-cvc" and set(s["layers"]) == {"x-mip", "vpn", "i-mip"}, s["layers"]
    vip = s["vpn"]["virtual_ip"]
    assert s["vpn"]["local_address"] == x_hoa, f"IKE must leave from the x-HoA: {s['vpn']['local_address']}"
    sa = wait_for(lambda: [x for x in gw.status()["ike_sas"] if x["state"] == "ESTABLISHED"], what="G's IKE SA")[0]
    assert sa["remote_host"] == x_hoa, f"G's IKE peer must be the x-HoA: {sa['remote_host']}"
    inner = s["layers"]["i-mip"]
    assert inner["care_of_address"] == vip and inner["tunnel"] == "ipip", inner
    assert inner["trusted_network"], "the i-HA's reply must carry the Trusted Networks Configured extension (149)"
    ib = binding(iha, i_hoa)
    assert ib is not None and ib["care_of_address"] == vip, f"the i-HA must bind {i_hoa} to the VPN-TIA {vip}: {ib}"
    xb = binding(xha, x_hoa)
    assert xb is not None and xb["care_of_address"] == FIRST_COA, f"the x-HA's binding: {xb}"

    keeper = start_session(world, bind=i_hoa)
    rx, _tx = start_probe(world, i_hoa)
    before = mvn.status()
    moves = []
    for net, coa in STOPS:
        x_req = mvn.status()["mip"]["counters"].get("requests", 0)
        mv = visit(world, mvn, rx, keeper, net, coa)
        st = mv.pop("status")
        mv["x_mip_requests"] = st["mip"]["counters"].get("requests", 0) - x_req
        moves.append(mv)
        assert binding(xha, x_hoa)["care_of_address"] == coa
    t_end = time.time()
    after, k = assert_only_x_mip_moved(mvn, gw, iha, i_hoa, vip, sa["name"], keeper,
                                       before["i_mip"]["counters"].get("requests", 0))
    assert all(mv["x_mip_requests"] >= 1 for mv in moves), moves

    g_pcap = at_g.stop()
    xha_pcap = at_xha.stop()
    assert_no_ike_per_move(g_pcap, mvn, moves, t_end, "fn2")

    # no clear Mobile IP between the x-HA and G; the i-MIP registration is there, inside ESP
    clear = decode(g_pcap, "mip || udp.port == 434 || ip.proto == 4", ["ip.src", "ip.dst"])
    assert clear == [], f"Mobile IP in clear between the x-HA and G: {clear[:3]} ({len(clear)} packets)"
    child = [c for c in after["vpn"]["ike_sas"][0]["child_sas"] if c["state"] == "INSTALLED"][0]
    opts = tshark_esp_sa_options(child, x_hoa, GW)
    assert opts, f"the VPN layer reports no child SA keys: {child}"
    i_mip = [r for r in ip_layers(g_pcap, opts, "esp && mip") if vip in r["src"] and I_HA in r["dst"]]
    assert i_mip and i_mip[0]["src"][0] == x_hoa, f"no i-MIP registration VPN-TIA -> i-HA inside ESP from the x-HoA: {i_mip[:1]}"
    rows = ip_layers(xha_pcap, opts, "esp")
    out_chain = [FIRST_COA, x_hoa, vip, i_hoa], [X_HA, GW, I_HA, H]
    in_chain = [X_HA, GW, I_HA, H], [FIRST_COA, x_hoa, vip, i_hoa]
    outbound = [r for r in rows if (r["src"], r["dst"]) == out_chain]
    inbound = [r for r in rows if (r["src"], r["dst"]) == in_chain]
    assert outbound and inbound, (f"the cvc layering IP(CoA -> x-HA) / IP(x-HoA -> G) / ESP / IP(VPN-TIA -> i-HA) / "
                                  f"IP(i-HoA -> H) (and back) must decode: {rows[:4]}")
    overhead = sorted({r["ip_len"][0] - r["ip_len"][3] for r in outbound})
    (case_dir / "traversal.json").write_text(json.dumps(
        {"moves": moves, "tcp_max_gap_s": k["max_gap"], "cvc_overhead_bytes": overhead}, indent=1))
