"""RFC 5265 section 2: the tunnelling overhead of each access mode, measured on the mobile node's
own link (the first link) against the RFC's figures: f 0, c 20, fvc 77, cvc 97 bytes (an IP-in-IP
header is 20 bytes; the RFC counts 57 for the IPsec layer, outer IP header and ESP).

How: from the i-HoA the node sends UDP datagrams of 100 bytes to H; on the node's own link (capture on r) tshark decodes each datagram's IP headers
outside in (ESP decrypted with the keys the node reports), and the overhead is the outer IP
length less the inner packet's. Verdicts: f 0 bytes (the packet goes to the agent as it is) and
c 20 exactly; fvc and cvc: every IP-in-IP layer exactly 20 bytes, the IPsec layer exactly what
ESP needs for the negotiated transform and this packet (RFC 4303 padding), and the total equal
to the RFC's figure with the IPsec layer's measured bytes in place of its 57 (so the difference
to 77 and 97 is the transform's, and stated)."""
import json
import time

import pytest

from testbed import handoff
from testbed.ipsec_checks import tshark_esp_sa_options
from testbed.mip_checks import H, wait_for
from testbed.rfc5265_checks import ip_layers, settled

RFC_OVERHEAD = {"f": 0, "c": 20, "fvc": 77, "cvc": 97}
RFC_IPSEC = 57  # the RFC's figure for the IPsec layer (outer IP header + ESP)
IP_IN_IP = 20
# mode -> (scenario, network, x-MIP or i-MIP care-of address, the layers outside in between the
# first link's outer header and the inner packet: "ipip" or "esp")
MODES = {"f": ("rfc5265-fvc", "ivn", "10.1.4.1", []),
         "c": ("rfc5265-cvc", "ivn", "10.1.4.100", ["ipip"]),
         "fvc": ("rfc5265-fvc", "fn1", "192.0.2.1", ["esp", "ipip"]),
         "cvc": ("rfc5265-cvc", "fn1", "192.0.2.100", ["ipip", "esp", "ipip"])}
# ESP in tunnel mode (RFC 4303, 4106): SPI + sequence number 8, then IV, padding to the block,
# pad length and next header 2, ICV; per transform: (IV, ICV, block)
ESP_SHAPE = {"AES_GCM_16": (8, 16, 4), "AES_CBC": (16, 16, 16)}
PAYLOAD = 100  # bytes of UDP payload in each measured datagram (inner packet 128 bytes)
SENT = 5


def _esp_overhead(child: dict, inner_len: int) -> int:
    iv, icv, block = ESP_SHAPE[child["encr_alg"]]
    padded = -(-(inner_len + 2) // block) * block
    return IP_IN_IP + 8 + iv + padded + icv - inner_len


@pytest.mark.req("rfc5265-overhead")
@pytest.mark.scenario("rfc5265-fvc")
@pytest.mark.parametrize("mode", ["f", "fvc"])
def test_overhead_per_mode_with_agents(scenario, mode, case_dir, request):
    """RFC 5265 section 2, overhead with a foreign agent's care-of address: mode f adds 0 bytes on the
    node's link (the packet goes to the agent as it is); fvc adds the RFC's 77 (x-MIP IP-in-IP 20,
    the IPsec layer what ESP needs for the transform in place of its 57), measured as the module says."""
    check_overhead(scenario, mode, case_dir, request)


@pytest.mark.req("rfc5265-overhead")
@pytest.mark.scenario("rfc5265-cvc")
@pytest.mark.parametrize("mode", ["c", "cvc"])
def test_overhead_per_mode_colocated(scenario, mode, case_dir, request):
    """RFC 5265 section 2, overhead with a co-located care-of address: mode c adds exactly 20 bytes
    (IP-in-IP); cvc adds the RFC's 97 (two IP-in-IP layers of 20 and the IPsec layer what ESP needs
    for the transform in place of its 57), measured as the module says."""
    check_overhead(scenario, mode, case_dir, request)


def check_overhead(scenario, mode, case_dir, request):
    """Each access mode's overhead, as the module's docstring says."""
    want_scenario, net, coa, layers = MODES[mode]
    assert scenario.name == want_scenario, f"mode {mode} is measured in scenario {want_scenario}"
    world, capture = request.getfixturevalue("world"), request.getfixturevalue("capture")
    mvn = request.getfixturevalue("roles")["mn"]
    i_hoa = scenario.roles["mn"].config["inner"]["home_address"]
    outside = mode in ("fvc", "cvc")
    wait_for(lambda: settled(mvn, "fvc" if "f" in mode else "cvc"), timeout=15, what="outside on fn1 at the start")
    if not outside:
        handoff.move(world, "r", net, configure=False)
    s = wait_for(lambda: settled(mvn, mode, coa), timeout=15, what=f"mode {mode} on {net}")
    at_r = capture("r", "r-eth0", name="r-link")
    world.run_in("r", ["python3", "-c", (
        "import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        f"s.bind(('{i_hoa}', 0)); [(s.sendto(b'R' * {PAYLOAD}, ('{H}', 9)), time.sleep(0.05)) for _ in range({SENT})]")],
        check=True)
    time.sleep(0.3)  # the last datagram onto the capture
    opts = []
    if outside:
        child = [c for c in s["vpn"]["ike_sas"][0]["child_sas"] if c["state"] == "INSTALLED"][0]
        opts = tshark_esp_sa_options(child, s["vpn"]["local_address"], s["vpn"]["gateway"])
        assert opts, f"the node reports no child SA keys: {child}"
    rows = [r for r in ip_layers(at_r.stop(), opts, f"!icmp && udp.dstport == 9 && udp.length == {PAYLOAD + 8}")
            if r["src"][-1] == i_hoa and r["dst"][-1] == H]
    assert len(rows) >= SENT - 1, f"the datagrams i-HoA -> H on the node's link: {rows}"
    want_headers = 1 + len(layers)
    shapes = {tuple(r["ip_len"]) for r in rows}
    assert all(len(r["ip_len"]) == want_headers for r in rows), \
        f"mode {mode}: expected {want_headers} IP headers outside in, got {[(r['src'], r['dst']) for r in rows]}"
    (lengths,) = shapes  # every datagram has the same shape
    inner = lengths[-1]
    assert inner == 20 + 8 + PAYLOAD, lengths
    per_layer = [lengths[i] - lengths[i + 1] for i in range(len(layers))]
    overhead = lengths[0] - inner
    figures = {"mode": mode, "ip_lengths_outside_in": list(lengths), "layers": layers, "per_layer": per_layer,
               "overhead": overhead, "rfc": RFC_OVERHEAD[mode]}
    esp = None
    for kind, added, below in zip(layers, per_layer, lengths[1:]):
        if kind == "ipip":
            assert added == IP_IN_IP, f"mode {mode}: an IP-in-IP layer adds {added} bytes, not 20: {figures}"
        else:
            esp = _esp_overhead(child, below)
            assert added == esp, f"mode {mode}: the IPsec layer adds {added} bytes, ESP needs {esp}: {figures}"
    figures["ipsec_layer"] = esp
    figures["rfc_with_measured_ipsec"] = RFC_OVERHEAD[mode] - (RFC_IPSEC - esp if esp is not None else 0)
    assert overhead == figures["rfc_with_measured_ipsec"], f"mode {mode}: {figures}"
    (case_dir / f"overhead-{mode}.json").write_text(json.dumps(figures, indent=1))
