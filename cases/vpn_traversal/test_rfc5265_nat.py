"""RFC 5265 behind a NAT (access mode cvc in fn3, behind the netfilter NAPT router): x-MIP crosses the
NAT with RFC 3519 UDP tunnelling, and the IPsec layer inside it needs no NAT traversal of its own
(RFC 5265 section 2, access mode cvc; draft-ietf-mip4-vpn-problem-statement guideline 5.9)."""
import hashlib
import json
import socket
import subprocess

import pytest

from testbed.capture import decode
from testbed.mip_checks import NAT_PUBLIC, binding, session_caught_up, wait_for
from testbed.rfc5265_checks import assert_no_ike_per_move, assert_only_x_mip_moved, outside_moves
from testbed.traversal_checks import rfc5265_layers_up, start_session

X_HA, GW = "203.0.113.71", "203.0.113.70"
NAT_COA = "10.77.0.100"
STOPS = [("fn1", "192.0.2.100"), ("fn3", NAT_COA)]  # from fn3: behind the NAT -> fn1 -> behind the NAT
IKE_PORT, NAT_T_PORT = 500, 4500
N_NAT_SOURCE, N_NAT_DESTINATION = 16388, 16389  # RFC 7296 NAT_DETECTION_SOURCE_IP / _DESTINATION_IP


def _behind_nat(mvn):
    s = rfc5265_layers_up(mvn)
    return s if s and s["mip"]["care_of_address"] == NAT_COA and s["i_mip"]["care_of_address"] == s["vpn"]["virtual_ip"] else None


def _nat_d(spi_i: str, spi_r: str, address: str, port: int) -> str:
    """RFC 7296 2.23: SHA-1(SPIi | SPIr | IP address | port), as tshark prints bytes (hex)."""
    data = bytes.fromhex(spi_i) + bytes.fromhex(spi_r) + socket.inet_aton(address) + port.to_bytes(2, "big")
    return hashlib.sha1(data).hexdigest()


def _ike_sa_init(pcap) -> list[dict]:
    """The IKE_SA_INIT messages of a capture as tshark decodes them, with their notifies (type, data)."""
    out = subprocess.run(["tshark", "-n", "-r", str(pcap), "-Y", "isakmp.exchangetype == 34", "-T", "fields",
                          "-E", "occurrence=a", "-E", "aggregator=,", "-e", "ip.src", "-e", "udp.srcport",
                          "-e", "ip.dst", "-e", "udp.dstport", "-e", "isakmp.ispi", "-e", "isakmp.rspi",
                          "-e", "isakmp.flag_r", "-e", "isakmp.notify.msgtype", "-e", "isakmp.notify.data"],
                         capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        src, sport, dst, dport, ispi, rspi, response, types, data = (line.split("\t") + [""] * 9)[:9]
        notifies = {}
        for t, d in zip(types.split(","), data.split(",")):
            if t and int(t) in (N_NAT_SOURCE, N_NAT_DESTINATION):
                notifies[int(t)] = d
        rows.append({"src": src, "sport": int(sport.split(",")[0]), "dst": dst, "dport": int(dport.split(",")[0]),
                     "ispi": ispi, "rspi": rspi, "response": response.split(",")[0] in ("1", "True"),
                     "nat_d": notifies})
    return rows


@pytest.mark.req("ps-5.9-nat-traversal", "ps-5.6-handoff-without-ike")
@pytest.mark.scenario("rfc5265-cvc-nat")
@pytest.mark.impl_matrix("gw")
def test_cvc_behind_the_nat_ipsec_needs_no_nat_traversal(world, scenario, roles, capture, case_dir):
    """Guideline 5.9 of draft-ietf-mip4-vpn-problem-statement (Implications of Intervening NAT
    Gateways): "The solution MUST be able to leverage the existing MIPv4 and IPsec NAT traversal
    solutions." RFC 5265 section 2, access mode cvc, with the node behind the NAT of fn3 from the
    start: x-MIP registers its co-located care-of address 10.77.0.100 and the x-HA, seeing the
    NAT's public address as the request's source, tunnels with RFC 3519 (UDP 434) to the mapping;
    IKE and ESP from the x-HoA ride inside that UDP tunnel, so between the x-HoA and G there is no
    NAT: the IPsec layer needs no NAT traversal. What the wire shows: at the x-HA, the IKE_SA_INIT
    from the x-HoA to G on UDP 500 arrives as RFC 3519 tunnel data from the NAT's public address
    (tshark decodes IP / UDP 434 / MIP tunnel data / IP(x-HoA -> G) / UDP 500 / IKEv2); at G_e, the
    NAT_DETECTION_SOURCE_IP and _DESTINATION_IP hashes of both IKE_SA_INIT messages match the
    addresses and ports G sees (x-HoA:500, G:500): no NAT-D mismatch, G's IKE SA is not UDP
    encapsulated, no packet on UDP 4500 and ESP as IP protocol 50. A gateway that forces UDP
    encapsulation by faking its own NAT_DETECTION_SOURCE_IP (a data plane without plain ESP) gets
    exactly that checked instead: every other hash matches, its own does not, and IKE and ESP use
    UDP 4500 (marked in the timeline as the gateway's choice, not a NAT's). The moves NAT -> fn1 -> NAT
    show ZERO IKE messages at G_e (the NAT's new mapping is the x-MIP layer's business), and a TCP
    session to H on the i-HoA survives them."""
    at_g = capture("g", "g-dmz", name="g-dmz")
    at_xha = capture("xha", "xha-dmz", name="xha-dmz")
    mvn, gw, xha, iha = roles["mn"], roles["gw"], roles["x-ha"], roles["i-ha"]
    cfg = scenario.roles["mn"].config
    x_hoa, i_hoa = cfg["mn"]["home_address"], cfg["inner"]["home_address"]
    s = wait_for(lambda: _behind_nat(mvn), timeout=15, what="behind the NAT: x-MIP (RFC 3519), VPN and i-MIP up (cvc)")
    vip = s["vpn"]["virtual_ip"]
    assert s["access_mode"] == "cvc" and s["mip"]["tunnel"] == "udp", f"x-MIP must use RFC 3519: {s['layers']['x-mip']}"
    xb = binding(xha, x_hoa)
    assert xb["care_of_address"] == NAT_COA, f"the x-HA's binding: {xb}"
    sa = wait_for(lambda: [x for x in gw.status()["ike_sas"] if x["state"] == "ESTABLISHED"], what="G's IKE SA")[0]
    # a gateway may force UDP encapsulation itself by faking its NAT-D (a data plane that
    # has no ESP without UDP does); that is the gateway's choice, not a NAT's, and said so below
    forced = sa.get("nat_fake", False)
    assert sa["remote_host"] == x_hoa, f"G's IKE SA must be with the x-HoA: {sa}"
    assert forced or not sa["encap"], f"G's IKE SA is UDP-encapsulated though no NAT is between x-HoA and G: {sa}"

    run = outside_moves(world, mvn, i_hoa, STOPS)
    moves = run["moves"]
    _after, k = assert_only_x_mip_moved(mvn, gw, iha, i_hoa, vip, sa["name"], run["keeper"], run["i_requests"])
    wait_for(lambda: _behind_nat(mvn), timeout=5, what="behind the NAT again with all three layers")
    g_pcap, xha_pcap = at_g.stop(), at_xha.stop()
    assert_no_ike_per_move(g_pcap, mvn, moves, run["t_end"], "fn1")

    # at the x-HA: IKE on 500 from the x-HoA, inside RFC 3519 tunnel data from the NAT's public address
    tunnelled = decode(xha_pcap, f"mip.nattt.nexthdr && isakmp.exchangetype == 34 && ip.src == {NAT_PUBLIC}",
                       ["ip.src", "ip.dst", "udp.srcport", "udp.dstport"])
    assert tunnelled, "no IKE_SA_INIT inside RFC 3519 tunnel data from the NAT's public address at the x-HA"
    first = tunnelled[0]
    assert first["ip.src"] == [NAT_PUBLIC, x_hoa] and first["ip.dst"] == [X_HA, GW], first
    assert first["udp.dstport"] == ["434", str(IKE_PORT)] and first["udp.srcport"][1] == str(IKE_PORT), first
    # at G_e: NAT-D hashes that match (no NAT between the x-HoA and G), no UDP 4500, ESP in the clear
    inits = _ike_sa_init(g_pcap)
    request = next(m for m in inits if not m["response"])
    response = next(m for m in inits if m["response"] and m["ispi"] == request["ispi"])
    for m, spi_r in ((request, "00" * 8), (response, response["rspi"])):
        assert set(m["nat_d"]) == {N_NAT_SOURCE, N_NAT_DESTINATION}, f"NAT-D notifies missing: {m}"
        want = {N_NAT_SOURCE: _nat_d(m["ispi"], spi_r, m["src"], m["sport"]),
                N_NAT_DESTINATION: _nat_d(m["ispi"], spi_r, m["dst"], m["dport"])}
        if forced and m is response:  # G's own source hash is the faked one; what G saw of R must match
            want[N_NAT_SOURCE] = m["nat_d"][N_NAT_SOURCE]
            assert response["nat_d"][N_NAT_SOURCE] != _nat_d(m["ispi"], spi_r, m["src"], m["sport"]), \
                "G reports a faked NAT but its NAT_DETECTION_SOURCE_IP matches its address"
        assert m["nat_d"] == want, f"NAT-D mismatch in {'response' if m['response'] else 'request'}: {m} != {want}"
    assert (request["src"], request["sport"], request["dst"], request["dport"]) == (x_hoa, IKE_PORT, GW, IKE_PORT)
    on_4500 = decode(g_pcap, f"udp.port == {NAT_T_PORT}", ["ip.src"])
    esp = decode(g_pcap, f"ip.proto == 50 && ip.src == {x_hoa}", ["ip.src"])
    if forced:
        world.mark("udp-encapsulation-forced-by-g", finding="G fakes its NAT-D (kernel-libipsec): IKE and ESP "
                   "move to UDP 4500 though no NAT is between the x-HoA and G", on_4500=len(on_4500))
        assert on_4500 and not esp, f"G forces UDP encapsulation: UDP 4500 packets {len(on_4500)}, plain ESP {len(esp)}"
    else:
        assert on_4500 == [] and esp, f"UDP 4500 packets: {len(on_4500)}, ESP (protocol 50) from the x-HoA: {len(esp)}"
    (case_dir / "nat.json").write_text(json.dumps(
        {"moves": moves, "tcp_max_gap_s": k["max_gap"], "x_ha_binding": xb, "nat_d": {"request": request,
                                                                                       "response": response}},
        indent=1))


G_I = "10.1.0.1"  # the gateway's intranet address: NAPT's source for everything from the tunnel
I_HA = "10.1.1.2"


@pytest.mark.req("ps-5.9-nat-traversal", "rfc5265-napt-internal-presence")
@pytest.mark.scenario("rfc5265-cvc-napt")
@pytest.mark.impl_matrix("gw")
def test_i_mip_through_a_napt_gateway_uses_rfc_3519(world, scenario, roles, capture, case_dir):
    """draft-gupta Appendix A (internal presence by NAPT: G rewrites what leaves the tunnel to G_i's
    address) meets RFC 5265 section 2, access mode cvc: the i-HA sees the i-MIP registration come
    from G_i, not from the VPN-TIA it names as care-of address, i.e. a NAT, and can only reach the node
    with RFC 3519 UDP tunnelling to G_i's mapped port, which G's NAPT turns back into the tunnel.
    Guideline 5.9 of draft-ietf-mip4-vpn-problem-statement: "The solution MUST be able to leverage the
    existing MIPv4 and IPsec NAT traversal solutions." Verdicts: at the i-HA (tshark) the request
    names the VPN-TIA as care-of address and arrives from G_i, the reply carries the UDP Tunnel Reply
    extension (44) and 149; the i-HA's binding and the node's i-MIP layer use the UDP tunnel; a TCP
    session to H on the i-HoA works, its packets travelling between the i-HA and G_i as RFC 3519
    tunnel data (UDP 434) on the home subnet."""
    at_iha = capture("iha", "iha-home", name="iha-home")
    mvn, iha = roles["mn"], roles["i-ha"]
    i_hoa = scenario.roles["mn"].config["inner"]["home_address"]
    s = wait_for(lambda: rfc5265_layers_up(mvn), timeout=15, what="x-MIP, the VPN (NAPT gateway) and i-MIP all up")
    vip = s["vpn"]["virtual_ip"]
    i = s["i_mip"]
    assert i["care_of_address"] == vip and i["tunnel"] == "udp", f"i-MIP must use RFC 3519 through the NAPT: {i}"
    b = binding(iha, i_hoa)
    assert (b["care_of_address"], b["kind"], b["remote"]) == (vip, "udp", G_I), f"the i-HA's binding: {b}"
    keeper = start_session(world, bind=i_hoa)
    k = session_caught_up(keeper, timeout=8)
    pcap = at_iha.stop()
    requests = decode(pcap, f"mip.type == 1 && mip.coa == {vip} && ip.src == {G_I} && ip.dst == {I_HA}", ["ip.src"])
    replies = decode(pcap, f"mip.type == 3 && ip.src == {I_HA} && ip.dst == {G_I}", ["mip.code", "mip.ext.type"])
    assert requests, f"no i-MIP request naming the VPN-TIA {vip} from G_i at the i-HA"
    assert replies and {"44", "149"} <= set(replies[0]["mip.ext.type"]), f"the i-HA's reply: {replies[:1]}"
    data = decode(pcap, f"mip.nattt.nexthdr && tcp.port == 7 && ((ip.src == {I_HA} && ip.dst == {G_I}) || "
                        f"(ip.src == {G_I} && ip.dst == {I_HA}))", ["ip.src"])
    assert data, "the TCP session's packets must travel as RFC 3519 tunnel data between the i-HA and G_i"
    (case_dir / "napt.json").write_text(json.dumps({"i_ha_binding": b, "tunnel_data_packets": len(data),
                                                    "tcp_max_gap_s": k["max_gap"]}, indent=1))
