"""Attacks from the Internet (draft-gupta section 4): the attacker spoofing R_e cannot get a
packet to H (drop counted at G); a captured ESP packet replayed is dropped; a modified one is dropped;
an unsolicited TCP SYN from the Internet to R gets nothing back; the attacker cannot use R as a proxy
into the intranet (section 4 (b)); R does not forward.

The attacker is node atk (198.51.100.66) on the Internet segment. It forges packets with R's outer
address as source through a raw socket (IPPROTO_RAW: the IP header is ours, the kernel only fills in
the checksum), so what leaves atk is exactly what the case built or captured. Each attack runs while
R is idle, so H's link (h-srv) must stay silent: any IP packet at H during an attack got through G.
A capture on G's Internet side (g-dmz) shows that the forged packets did arrive at G_e, so a silent
H means G dropped them, not that they were lost on the way.

G's drop counters are checked where the gateway role reports them (`drop_total`, as ours does); the
profile that reports none gets a warning instead of the check.
"""
import struct
import sys
import time
import pytest

from testbed.ipsec_checks import PLAN, check_tunnel, role_of
from testbed.capture import decode
from testbed.daemons import start_daemon
from testbed.conformance.ics import expect_per_statement
from testbed.report.verdicts import downgraded

H = str(PLAN.address("h"))
G_E = str(PLAN.address("g", "dmz"))
ATK = str(PLAN.address("atk"))
ECHO = 7

# runs in atk: send every hex line of a file as one raw IPv4 packet (header included)
SEND_RAW = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
n = 0
for line in open(sys.argv[1]):
    b = bytes.fromhex(line.strip())
    if b:
        s.sendto(b, (socket.inet_ntoa(b[16:20]), 0))
        n += 1
        time.sleep(float(sys.argv[2]))
print(n)
"""


# ---- helpers ------------------------------------------------------------------------------------
def r_address(world) -> str:
    return str(PLAN.attachments[world.attached["r"]].address)


def send_raw(world, node: str, packets: list[bytes], name: str, gap: float = 0.01) -> int:
    """Send `packets` (raw IPv4, any source address) from `node`; returns how many left."""
    path = world.log_dir / f"{node}.{name}.hex"
    path.write_text("".join(p.hex() + "\n" for p in packets))
    res = world.run_in(node, [sys.executable, "-c", SEND_RAW, str(path), str(gap)], timeout=30, check=True)
    return int(res.stdout.strip())


def ip4(src: str, dst: str, proto: int, payload: bytes, ident: int = 0x5151) -> bytes:
    """An IPv4 header (checksum left to the kernel's raw socket) and `payload`."""
    import socket
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0, 64, proto, 0,
                       socket.inet_aton(src), socket.inet_aton(dst)) + payload


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload  # checksum 0: none (IPv4)


def esp_of(packet: bytes) -> tuple[int, bytes] | None:
    """(offset of the ESP header, ESP bytes) of an outer IPv4 packet carrying ESP, plain (protocol 50)
    or in UDP 4500 (not IKE's non-ESP marker, not a keepalive); None otherwise."""
    ihl = (packet[0] & 0x0F) * 4
    if packet[9] == 50:
        return ihl, packet[ihl:]
    if packet[9] == 17 and struct.unpack_from("!H", packet, ihl + 2)[0] == 4500:
        esp = packet[ihl + 8:]
        if len(esp) > 8 and esp[:4] != b"\0\0\0\0":
            return ihl + 8, esp
    return None


def captured_esp(pcap, src: str, dst: str) -> list[bytes]:
    """The outer IPv4 packets with ESP from `src` to `dst` in a pcap, in order."""
    from scapy.layers.inet import IP
    from scapy.utils import rdpcap
    out = []
    for p in rdpcap(str(pcap)):
        if IP in p and p[IP].src == src and p[IP].dst == dst:
            raw = bytes(p[IP])
            if esp_of(raw) is not None:
                out.append(raw)
    return out


def reencapsulate(packet: bytes, esp: bytes | None = None) -> bytes:
    """`packet` with its ESP replaced by `esp` (same size; default: unchanged) and the UDP checksum
    cleared (0: none, valid in IPv4). A capture on a veth shows the checksum of an offloaded datagram
    unfinished, so a packet replayed from a capture needs this to be the packet that crossed the wire."""
    off, old = esp_of(packet)
    esp = old if esp is None else esp
    assert len(esp) == len(old)
    out = bytearray(packet[:off] + esp)
    if packet[9] == 17:
        out[off - 2:off] = b"\0\0"
    return bytes(out)


def drop_total(status: dict) -> int | None:
    v = status.get("drop_total")
    return v if isinstance(v, int) else None


def check_drops(gw, before: dict, after: dict, at_least: int, what: str) -> None:
    """G counted at least `at_least` more drops, where its role reports drop counters at all."""
    b, a = drop_total(before), drop_total(after)
    if b is None or a is None:
        downgraded(f"the gateway role {gw.role.name} ({gw.role.impl}) reports no drop counters "
                   f"(status has no drop_total): that G counted the drops of {what} is not checked; "
                   f"only that nothing got through is")
        return
    assert a - b >= at_least, (f"G counted {a - b} drops for {what}, expected at least {at_least}; "
                               f"drops before {before.get('drops')}, after {after.get('drops')}")


def silent(cap, what: str) -> None:
    """Nothing (no IP packet at all) was captured: R was idle, so nothing may reach H."""
    cap.stop()
    seen = cap.packets("ip", ["ip.src", "ip.dst", "ip.proto", "_ws.col.Info"])
    assert seen == [], f"{what}: packets reached H ({len(seen)}): {seen[:5]}"


def client_child(roles, scenario) -> tuple[dict, dict]:
    t = check_tunnel(roles, scenario)
    return t["client"]["ike_sas"][0], t["client_child"]


# ---- 4 (a): G lets nothing unauthenticated through --------------------------------------------------
@pytest.mark.scenario("remote-access-basic")
@pytest.mark.req("gupta-4a-unauthorized", "rfc4303-3.4.2-sa-lookup", "rfc4303-3.4.4-icv")
def test_spoofed_packets_from_r_address_do_not_reach_h(world, capture, roles, scenario):
    """The attacker forges R's outer address: ESP with the live SPI and garbage, ESP with an unknown
    SPI, both plain and in UDP 4500, and a cleartext packet for H inside UDP 4500. G_e receives them
    all; none reaches H; the tunnel keeps working."""
    _, child = client_child(roles, scenario)
    gw = role_of(roles, "vpn-gateway")
    r = r_address(world)
    rport = 4500  # R's NAT-T port, as if R had moved to UDP encapsulation
    live = bytes.fromhex(child["spi_out"])  # G's inbound SPI of R's SA
    forged = []
    for n, spi in enumerate((live, live, b"\xde\xad\xbe\xef", b"\x00\x00\x01\x00")):
        body = spi + struct.pack("!I", 1 + n * 1000) + bytes(range(96))
        forged.append(ip4(r, G_E, 17, udp(rport, 4500, body)))
        forged.append(ip4(r, G_E, 50, body))
    inner = ip4("100.64.0.1", H, 1, b"\x08\x00\xf7\xff\x00\x00\x00\x00")  # an ICMP echo request for H
    forged.append(ip4(r, G_E, 17, udp(rport, 4500, inner)))

    at_h = capture("h", "h-srv", bpf="ip", name="h-during-spoof")
    at_g = capture("g", "g-dmz", bpf=f"src host {r}", name="g-dmz-during-spoof")
    before = gw.status()
    sent = send_raw(world, "atk", forged, "spoofed")
    time.sleep(0.3)
    after = gw.status()
    at_g.stop()
    silent(at_h, "spoofed packets from R's address")

    arrived = at_g.packets(f"ip.src == {r} && ip.dst == {G_E} && ip.id == 0x5151", ["ip.proto"])
    assert len(arrived) == sent == len(forged), \
        f"only {len(arrived)} of {sent} forged packets arrived at G_e (the attack was not delivered)"
    check_drops(gw, before, after, len(forged), "the spoofed packets")
    assert world.ping("r", H, timeout=3), "the tunnel stopped working after the spoofed packets"


@pytest.mark.scenario("remote-access-basic")
@pytest.mark.req("gupta-4a-unauthorized", "rfc4303-3.4.3-replay", "rfc4303-3.4.4-icv")
def test_replayed_and_modified_esp_do_not_reach_h(world, capture, roles, scenario):
    """ESP packets R sent to H (echo requests), captured on the Internet side and sent again by the
    attacker with R's address: G_e gets them, H sees no duplicate. The same packets with a fresh
    sequence number (ICV no longer matches), and with a ciphertext byte flipped too, do not reach H
    either; and since G moves its replay window only after the ICV checks, R's next packets still pass."""
    client_child(roles, scenario)
    gw = role_of(roles, "vpn-gateway")
    r = r_address(world)
    harvest = capture("g", "g-dmz", bpf=f"host {r}", name="g-dmz-harvest")
    at_h = capture("h", "h-srv", bpf="ip", name="h-legitimate")
    out = world.run_in("r", ["ping", "-n", "-c", "4", "-i", "0.2", "-W", "2", H], timeout=10)
    assert out.returncode == 0, f"R does not reach H through the tunnel: {out.stdout}"
    pcap = harvest.stop()
    at_h.stop()
    requests = at_h.packets(f"icmp.type == 8 && ip.dst == {H}", ["icmp.ident", "icmp.seq"])
    assert len(requests) == 4, f"H should have seen R's 4 echo requests: {requests}"
    esp = captured_esp(pcap, r, G_E)
    assert len(esp) >= 4, f"fewer ESP packets from R to G_e ({len(esp)}) than echo requests"

    # 1. replay, byte for byte
    at_h = capture("h", "h-srv", bpf="ip", name="h-during-replay")
    at_g = capture("g", "g-dmz", bpf=f"src host {r}", name="g-dmz-during-replay")
    before = gw.status()
    send_raw(world, "atk", [reencapsulate(p) for p in esp], "replayed")
    time.sleep(0.3)
    after = gw.status()
    at_g.stop()
    silent(at_h, "replayed ESP")
    harvested, arrived = esp_sequences(pcap, r), esp_sequences(at_g.path, r)
    assert harvested and set(harvested) <= set(arrived), \
        f"the replayed packets did not all arrive at G_e: sent sequence numbers {harvested}, seen {arrived}"
    check_drops(gw, before, after, len(esp), "the replayed ESP")

    # 2. modified: a fresh sequence number (covered by the ICV), then also a flipped ciphertext byte
    modified = []
    for n, p in enumerate(esp):
        off, body = esp_of(p)
        fresh = body[:4] + struct.pack("!I", 100000 + n) + body[8:]
        modified.append(reencapsulate(p, fresh))
        flipped = bytearray(fresh)
        flipped[-20] ^= 0xFF  # inside the ciphertext (the ICV is the last 16 bytes)
        modified.append(reencapsulate(p, bytes(flipped)))
    at_h = capture("h", "h-srv", bpf="ip", name="h-during-modified")
    at_g = capture("g", "g-dmz", bpf=f"src host {r}", name="g-dmz-during-modified")
    before = gw.status()
    send_raw(world, "atk", modified, "modified")
    time.sleep(0.3)
    after = gw.status()
    at_g.stop()
    silent(at_h, "modified ESP")
    forged_seqs = [n for n in esp_sequences(at_g.path, r) if n >= 100000]
    assert len(forged_seqs) == len(modified), \
        f"only {len(forged_seqs)} of {len(modified)} modified packets arrived at G_e: {forged_seqs}"
    check_drops(gw, before, after, len(modified), "the modified ESP")

    assert world.ping("r", H, timeout=3), \
        "R no longer reaches H after the forged sequence numbers: did G move its replay window before the ICV check?"


def esp_sequences(pcap, src: str) -> list[int]:
    """The ESP sequence numbers from `src` to G_e in a pcap, as tshark decodes them."""
    rows = decode(pcap, f"ip.src == {src} && ip.dst == {G_E} && esp", ["esp.sequence"])
    return sorted(int(x["esp.sequence"][0]) for x in rows if x["esp.sequence"])


# ---- 4 (b): R is no way into the intranet ------------------------------------------------------------
@pytest.mark.scenario("remote-access-basic")
@pytest.mark.impl_matrix("client")
@pytest.mark.req("gupta-4b-no-unsolicited")
def test_unsolicited_syn_to_r_gets_nothing_back(request, world, capture, roles, scenario):
    """With the tunnel up, TCP SYNs from the Internet to R get no answer, neither to a port where a
    service of R's user listens (the seed's proxy example) nor to a closed port (no RST either).
    A client whose conformance statement expects otherwise is reported as its finding (strict)."""
    client = role_of(roles, "vpn-client")
    expect_per_statement(request, client.role.impl, "GUPTA.4B.UNSOLICITED-SYN")
    check_tunnel(roles, scenario)
    r = r_address(world)
    start_daemon(world, "r", "instruments.sink", name="user-service", args=["--tcp", "8080"])
    at_r = capture("r", "any", bpf="tcp or icmp", name="r-any-syn")
    results = [world.reach("atk", "tcp", r, port, timeout=1) for port in (8080, 23)]
    at_r.stop()
    assert [x["result"] for x in results] == ["timeout", "timeout"], \
        f"R answered unsolicited connection attempts from the Internet: {results}"
    syns = at_r.packets(f"ip.src == {ATK} && tcp.flags.syn == 1", ["tcp.dstport"])
    assert {x["tcp.dstport"][0] for x in syns} >= {"8080", "23"}, f"the SYNs did not reach R: {syns}"
    answers = at_r.packets(f"ip.src == {r} && ip.dst == {ATK}", ["ip.proto", "tcp.flags", "_ws.col.Info"])
    assert answers == [], f"R answered the attacker (on some interface, the tunnel's included): {answers}"


@pytest.mark.scenario("remote-access-on-inet")
@pytest.mark.req("gupta-4b-no-forwarding", "gupta-4b-no-unsolicited")
def test_attacker_cannot_use_r_as_a_router_into_the_intranet(world, capture, roles, scenario):
    """R sits on the attacker's own segment with its tunnel up. The attacker routes the intranet via R
    and tries ICMP, TCP and UDP to H: the packets reach R and go no further."""
    check_tunnel(roles, scenario)
    r = r_address(world)
    start_daemon(world, "h", "instruments.sink", args=["--tcp", str(ECHO), "--udp", str(ECHO)])
    assert world.ping("r", H, timeout=3), "R itself does not reach H through its tunnel"
    world.run_in("atk", ["ip", "route", "replace", "10.1.0.0/16", "via", r], check=True)

    at_h = capture("h", "h-srv", bpf="ip", name="h-during-proxy")
    at_r = capture("r", "any", bpf=f"host {ATK}", name="r-any-proxy")
    pinged = world.ping("atk", H, timeout=1)
    tcp = world.reach("atk", "tcp", H, ECHO, timeout=1)
    udp_ = world.reach("atk", "udp", H, ECHO, timeout=1)
    at_r.stop()
    silent(at_h, "the attacker's packets routed via R")
    assert not pinged and tcp["result"] != "ok" and udp_["result"] != "ok", \
        f"the attacker reached H through R: ping {pinged}, tcp {tcp}, udp {udp_}"
    came = at_r.packets(f"ip.src == {ATK} && ip.dst == {H}", ["ip.proto"])
    assert {x["ip.proto"][0] for x in came} >= {"1", "6", "17"}, f"the attacker's packets did not reach R: {came}"


@pytest.mark.scenario("remote-access-basic")
@pytest.mark.req("gupta-4b-no-forwarding")
def test_r_does_not_forward(world, roles, scenario):
    """IP forwarding is off in R while the tunnel is up, on every interface (the tunnel's included)."""
    t = check_tunnel(roles, scenario)
    pattern = r"^net\.ipv4\.(ip_forward|conf\..*\.forwarding)$"
    out = world.run_in("r", ["sysctl", "-a", "-r", pattern], check=True).stdout
    values = dict(line.split(" = ", 1) for line in out.strip().splitlines())
    tun = t["client"].get("tunnel_interface")
    assert "net.ipv4.ip_forward" in values and (tun is None or f"net.ipv4.conf.{tun}.forwarding" in values), values
    on = {k: v for k, v in values.items() if v.strip() != "0"}
    assert on == {}, f"forwarding is on in R while its tunnel is up: {on}"
