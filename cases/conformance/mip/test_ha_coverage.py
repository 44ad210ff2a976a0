"""HA: coverage of RFC 3519 (the 'R' flag case: the tunnel waits for the node's first keepalive,
GRE and minimal encapsulation in UDP, the keepalive interval), RFC 3024 (forward and reverse tunnels
symmetric: a reverse tunnel in the negotiated encapsulation) and RFC 2003 (ICMP errors from within
the tunnel: what is relayed to the original sender, tunnel path MTU soft state).

The tester is the mobile node behind the NAT (nh, 10.77.0.10, seen as 203.0.113.10) and, for the
keepalive of the 'R' flag case, a second UDP socket there on an ephemeral port (the NAT maps it to
another public port); the mobile node at r (192.0.2.100); a router inside the tunnel at ar1
(192.0.2.1, between the HA and r) that sends ICMP errors about the tunnelled packets; the
correspondent h (10.1.2.10), which sends to the home address and receives what the HA relays."""
import struct
import time

from testbed.conformance import netns
from testbed.conformance.mip import SocketTransport, TunnelData, UdpTunnelRequest
from testbed.conformance.mip.ipv4 import build_ipv4, internet_checksum, parse_ipv4
from testbed.conformance.mip.messages import EXT_UDP_TUNNEL_REPLY
from testbed.conformance.mip.tunnels import gre_encapsulate, icmp_echo, icmp_error, minimal_encapsulate
from testbed.conformance.mip_env import Place, describe_check
from testbed.conformance.parts import inconclusive, part, should

NAT = ["mip.nat-traversal"]


# ---- helpers ---------------------------------------------------------------------------------------

def _extra_place(ha_tester, name: str, node: str, address: str) -> Place:
    """A place with a UDP socket on an ephemeral port at `node` (closed and transcribed with the
    tester's own places)."""
    s = netns.udp_socket(ha_tester.world.pid(node), "0.0.0.0", 0, reuse=False)
    s.setblocking(False)
    p = Place(name, node, address, SocketTransport(udp=s), [s])
    ha_tester._places[name] = p
    return p


def _keepalive(home: str, ha: str, seq: int = 1, inner_src: str | None = None) -> bytes:
    """RFC 3519 4.9: MIP tunnel data carrying an ICMP echo request home address -> HA."""
    return TunnelData(4, icmp_echo(inner_src or home, ha, ident=0x3519, seq=seq, data=b"keepalive")).encode()


def _r_flag_registered(ha_tester, steps):
    """Preamble of the 'R' flag case: a co-located registration relayed through a foreign agent
    behind the NAT (sent from nh:434, care-of address nh's 10.77.0.10), UDP Tunnel Request with R.
    INCONCLUSIVE unless accepted with an assenting UDP Tunnel Reply."""
    mn = ha_tester.mn()
    _, check = ha_tester.registered(mn, place=ha_tester.nat_place, steps=steps, flags="D",
                                    extensions_before=[UdpTunnelRequest(registration_via_fa=True)])
    ext = check.reply.find(EXT_UDP_TUNNEL_REPLY)
    steps.record("UDP Tunnel Reply to the request with R", "assenting (code < 64)", ext)
    if ext is None or ext.code >= 64:
        inconclusive(f"the HA did not assent to UDP tunnelling for a request with R: {ext}")
    ha_tester.nat_place.transport.recv(0.05)
    return mn


def _udp_at(place, timeout: float) -> list:
    """Every MIP tunnel data message (type 4) arriving at a place within `timeout`."""
    got, end = [], time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        got += [i for i in place.transport.recv(left) if i.kind == "udp" and i.data[:1] == b"\x04"]
    return got


# ---- RFC 3519: the 'R' flag case ------------------------------------------------------------------

@part("MIP.HA.COV.1", "With R in the UDP Tunnel Request, nothing is tunnelled to the node before its first keepalive",
      ["rfc3519-4.6-g"], needs=NAT)
def test_r_flag_waits_for_keepalive(ha_tester, steps):
    mn = _r_flag_registered(ha_tester, steps)
    ka = _extra_place(ha_tester, "keepalive", "nh", ha_tester.nat_inside)
    _, marker = ha_tester.send_to_home(str(mn.home_address))
    early = ha_tester.tunnelled_at(ha_tester.nat_place, marker, 0.4)
    steps.record("datagram h -> home address before any keepalive", "not tunnelled (no tunnel yet)",
                 early.summary() if early else "nothing at nh:434", ok=early is None)
    assert early is None, ("the HA tunnelled to the registration's NAT port before the node's first keepalive "
                           f"(R set): {early.summary()}")
    ka.transport.send_udp(ha_tester.ha, _keepalive(str(mn.home_address), ha_tester.ha), 434)
    _, got = ha_tester.data_to_coa(str(mn.home_address), ka)
    steps.record("keepalive from nh (another NAT port), then a datagram h -> home", "tunnelled in UDP to the "
                 "keepalive's address and port", got.summary() if got else "nothing", ok=got is not None)
    assert got is not None, "after the first keepalive the HA still tunnels nothing to the node"


@part("MIP.HA.COV.2", "With R, the first keepalive's outer source address and port become the UDP tunnel's destination",
      ["rfc3519-4.6-j", "rfc3519-4.6-h", "rfc3519-4.6-i"], needs=NAT)
def test_r_flag_keepalive_sets_destination(ha_tester, steps):
    mn = _r_flag_registered(ha_tester, steps)
    ka = _extra_place(ha_tester, "keepalive", "nh", ha_tester.nat_inside)
    port = ka.transport.udp.getsockname()[1]
    ka.transport.send_udp(ha_tester.ha, _keepalive(str(mn.home_address), ha_tester.ha), 434)
    steps.record(f"keepalive from nh:{port} (NAT: the registration's public address, another port), inner "
                 f"{mn.home_address} -> {ha_tester.ha}")
    packet, marker = ha_tester.send_to_home(str(mn.home_address))
    got = ha_tester.tunnelled_at(ka, marker, 0.6)
    at_434 = ha_tester.tunnelled_at(ha_tester.nat_place, marker, 0.05) if got is None else None
    steps.record("datagram h -> home address", f"in UDP at nh:{port} (the keepalive's mapping)",
                 got.summary() if got else (f"at nh:434 (the registration's mapping): {at_434.summary()}"
                                            if at_434 else "nothing"), ok=got is not None)
    assert got is not None, ("the HA did not send the tunnel to the keepalive's address and port "
                             f"({'it went to the registration request port' if at_434 else 'nothing came'})")
    assert got.kind == "udp", f"arrived as {got.kind}"


@part("MIP.HA.COV.3", "With R, a keepalive from another address than the registration's source is discarded",
      ["rfc3519-4.6-h", "rfc3519-6.1.2-a"], needs=NAT)
def test_r_flag_keepalive_wrong_address(ha_tester, steps):
    mn = _r_flag_registered(ha_tester, steps)
    home = str(mn.home_address)
    ha_tester.mn_place.transport.recv(0.02)
    ha_tester.send(_keepalive(home, ha_tester.ha), ha_tester.mn_place)  # from r:434, 192.0.2.100, not NAT'ed
    steps.record(f"keepalive from {ha_tester.coa}:434 (not the registration's source {ha_tester.nat_public})")
    _, marker = ha_tester.send_to_home(home)
    got = _udp_at(ha_tester.mn_place, 0.4)
    steps.record("datagram h -> home address; what reaches r in UDP", "nothing (no tunnel, no echo reply to r)",
                 [f"{i.src}:{i.sport} {len(i.data)} bytes" for i in got], ok=not got)
    assert not got, (f"the HA took a keepalive from {ha_tester.coa} (not the registration's source address): "
                     f"{len(got)} tunnel data message(s) sent there")
    _, check = ha_tester.register(mn, place=ha_tester.nat_place, flags="D",
                                  extensions_before=[UdpTunnelRequest(registration_via_fa=True)])
    steps.record("re-registration from behind the NAT (still alive?)", "accepted", describe_check(check),
                 ok=bool(check and check.accepted))
    assert check is not None and check.accepted, f"the HA no longer answers: {describe_check(check)}"


@part("MIP.HA.COV.4", "With R, a keepalive whose inner source is not the home address does not set the tunnel",
      ["rfc3519-4.6-i"], needs=NAT)
def test_r_flag_keepalive_wrong_inner(ha_tester, steps):
    mn = _r_flag_registered(ha_tester, steps)
    ka = _extra_place(ha_tester, "keepalive", "nh", ha_tester.nat_inside)
    other = "10.1.1.101"
    ka.transport.send_udp(ha_tester.ha, _keepalive(str(mn.home_address), ha_tester.ha, inner_src=other), 434)
    steps.record(f"keepalive from nh (NAT, another port) with inner source {other} (not the home address)")
    _, marker = ha_tester.send_to_home(str(mn.home_address))
    got = ha_tester.tunnelled_at(ka, marker, 0.4)
    steps.record("datagram h -> home address", "not tunnelled to that keepalive's port",
                 got.summary() if got else "nothing there", ok=got is None)
    assert got is None, "a keepalive whose inner source is not the home address set the tunnel's destination"


# ---- RFC 3519: keepalive interval, GRE and minimal encapsulation in UDP -------------------------------

@part("MIP.HA.COV.5", "The keepalive interval the HA assigns does not change when the NAT mapping changes",
      ["rfc3519-4.10-d"], needs=NAT)
def test_keepalive_interval_constant(ha_tester, steps):
    mn = ha_tester.mn()
    utr = [UdpTunnelRequest()]
    _, first = ha_tester.registered(mn, place=ha_tester.nat_place, steps=steps, extensions_before=utr)
    other = _extra_place(ha_tester, "remapped", "nh", ha_tester.nat_inside)
    intervals = [first.reply.find(EXT_UDP_TUNNEL_REPLY)]
    for place in (other, other, ha_tester.nat_place):
        _, check = ha_tester.registered(mn, place=place, steps=steps, extensions_before=utr)
        intervals.append(check.reply.find(EXT_UDP_TUNNEL_REPLY))
    values = [e.keepalive if e is not None else None for e in intervals]
    steps.record("four registrations from behind the NAT, the second and third from another NAT port "
                 "(a lost mapping)", "the same keepalive interval in every UDP Tunnel Reply", values,
                 ok=None not in values and len(set(values)) == 1)
    assert None not in values, f"a reply without a UDP Tunnel Reply: {values}"
    assert len(set(values)) == 1, f"the assigned keepalive interval changed: {values}"


def _udp_encapsulation(ha_tester, steps, flags: str, kind: str, next_header: int):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, place=ha_tester.nat_place, flags=flags,
                                  extensions_before=[UdpTunnelRequest(encapsulation=0)])
    ext = check.reply.find(EXT_UDP_TUNNEL_REPLY) if check and check.reply else None
    steps.record(f"request from behind the NAT, flags {flags}, UDP Tunnel Request with Encapsulation 0",
                 f"refused (139 or 142), or accepted with {kind} in UDP", f"{describe_check(check)}; {ext}")
    assert check is not None, "no reply"
    if not check.accepted:
        should(check.code in (139, 142), f"refusal code {check.code}, expected 139 or 142")
        return
    assert ext is not None and ext.code < 64, f"accepted from behind a NAT without an assenting UDP Tunnel Reply: {ext}"
    _, got = ha_tester.data_to_coa(str(mn.home_address), ha_tester.nat_place)
    steps.record("datagram h -> home address", f"UDP tunnel data, next header {next_header} ({kind})",
                 got.summary() if got else "nothing", ok=bool(got and got.details.get("next_header") == next_header))
    assert got is not None, "nothing tunnelled to the node"
    assert got.kind == "udp" and got.details.get("next_header") == next_header, \
        f"{kind} negotiated (Encapsulation 0), the tunnel carries {got.kind} next header {got.details.get('next_header')}"


@part("MIP.HA.COV.6", "G with Encapsulation 0 and UDP tunnelling accepted: data comes GRE-in-UDP (or the request is refused)",
      ["rfc3519-4.1-b"], needs=NAT + ["mip.gre"])
def test_gre_in_udp(ha_tester, steps):
    _udp_encapsulation(ha_tester, steps, "DG", "GRE", 47)


@part("MIP.HA.COV.7", "M with Encapsulation 0 and UDP tunnelling accepted: data comes minimal-in-UDP (or the request is refused)",
      ["rfc3519-4.1-c"], needs=NAT + ["mip.minimal-encapsulation"])
def test_minimal_in_udp(ha_tester, steps):
    _udp_encapsulation(ha_tester, steps, "DM", "minimal encapsulation", 55)


# ---- RFC 3024: forward and reverse tunnels are symmetric ---------------------------------------------

def _symmetric(ha_tester, steps, flags: str, encap, name: str):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, flags=flags)
    steps.record(f"request with {flags} (reverse tunnel, {name} forward)", "137 (or 139), or accepted",
                 describe_check(check))
    assert check is not None, "no reply"
    if not check.accepted:
        assert check.code in (137, 139), \
            f"a reverse tunnel the HA cannot give in {name} must be refused with 137: {describe_check(check)}"
        return
    inner, marker = ha_tester.inner_from_home(str(mn.home_address))
    ha_tester.send_packet(encap(inner, ha_tester.coa, ha_tester.ha))
    got = ha_tester.at_correspondent(marker, 0.8)
    steps.record(f"{name} reverse tunnel r -> HA, inner home -> h", "decapsulated and delivered to h",
                 "delivered" if got else "nothing", ok=got is not None)
    assert got is not None, (f"accepted T with {name} negotiated, but a {name} reverse tunnel is not decapsulated: "
                             "a reverse tunnel it cannot provide in the forward tunnel's configuration must be "
                             "refused with 137")


@part("MIP.HA.COV.8", "T with G: the HA either refuses with 137 or decapsulates GRE reverse tunnels",
      ["rfc3024-4.3.1-b", "rfc3024-3.4-c"], needs=["mip.reverse-tunnel", "mip.gre"])
def test_reverse_gre_symmetric(ha_tester, steps):
    _symmetric(ha_tester, steps, "DTG", lambda i, s, d: gre_encapsulate(i, s, d, forwarding=False), "GRE")


@part("MIP.HA.COV.9", "T with M: the HA either refuses with 137 or decapsulates minimal-encapsulation reverse tunnels",
      ["rfc3024-4.3.1-b", "rfc3024-3.4-c"], needs=["mip.reverse-tunnel", "mip.minimal-encapsulation"])
def test_reverse_minimal_symmetric(ha_tester, steps):
    _symmetric(ha_tester, steps, "DTM", lambda i, s, d: minimal_encapsulate(i, s, d), "minimal encapsulation")


# ---- RFC 2003: ICMP errors from within the tunnel ----------------------------------------------------

ROUTER = "ar1"  # between the HA and r: a router inside the tunnel, not its exit point
MTU = 1300  # the tunnel MTU a router inside the tunnel reports
BIG = 1300  # payload of the DF datagram that then exceeds it: 1328 bytes, 1348 tunnelled


def _tunnelled_packet(ha_tester, steps, claimed_length: int | None = None):
    """Preamble: registered co-located at r; a (small, DF) datagram h -> home address and the tunnel
    packet as it reached r. Returns (home, the tunnel packet to quote). With `claimed_length`, the
    quoted outer header says the tunnel packet was that long (a Datagram Too Big is about a packet
    above the MTU; small real packets keep the tunnel usable whatever path MTU the HA's node
    remembers from an earlier part)."""
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps)
    home = str(mn.home_address)
    _, got = ha_tester.data_to_coa(home, df=True)
    if got is None:
        inconclusive("nothing tunnelled to r")
    steps.record("datagram h -> home address (DF)", "tunnelled to r", got.summary())
    ha_tester.cn_place.transport.recv(0.02)
    packet = got.received.data
    if claimed_length is not None:
        header = packet[:20]
        header = header[:2] + struct.pack("!H", claimed_length) + header[4:6] + struct.pack("!H", 0x4000) + \
            header[8:10] + b"\0\0" + header[12:]
        header = header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:]
        packet = header + packet[20:]
    return home, packet


def _from_router(ha_tester, steps, message: bytes, what: str) -> None:
    router = str(ha_tester.plan.address(ROUTER, "fn1"))
    s = netns.raw_socket(ha_tester.world.pid(ROUTER), 255, header_included=True)
    try:
        s.sendto(build_ipv4(router, ha_tester.ha, 1, message, ttl=64), (ha_tester.ha, 0))
    finally:
        s.close()
    steps.record(f"{what}, from {router} (inside the tunnel) to the HA, quoting the tunnel packet")


def _icmp_at_cn(ha_tester, timeout: float) -> list:
    """ICMP errors (types 3, 4, 5, 11, 12) arriving at h within `timeout`: (type, code, rest, body)."""
    got, end = [], time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        for i in ha_tester.cn_place.transport.recv(left):
            if i.kind == "icmp" and len(i.data) >= 8 and i.data[0] in (3, 4, 5, 11, 12):
                got.append((i.data[0], i.data[1], i.data[4:8], i.data[8:]))
    return got


def _relayed(ha_tester, steps, home: str, timeout: float = 0.5, **kw) -> list:
    """ICMP errors at h: right after the tunnel's error, and after one more datagram (RFC 2003 5:
    soft state reported to the next sender)."""
    got = _icmp_at_cn(ha_tester, 0.15)
    ha_tester.send_to_home(home, **kw)
    got += _icmp_at_cn(ha_tester, timeout)
    return got


@part("MIP.HA.COV.10", "An ICMP Time Exceeded from within the tunnel is reported to the sender as Host Unreachable",
      ["rfc2003-4.4-a"])
def test_icmp_time_exceeded(ha_tester, steps):
    home, tunnel = _tunnelled_packet(ha_tester, steps)
    _from_router(ha_tester, steps, icmp_error(11, 0, tunnel), "ICMP Time Exceeded (11/0)")
    got = _relayed(ha_tester, steps, home)
    steps.record("ICMP at h (the original sender)", "Destination Unreachable, Host Unreachable (3/1)",
                 [(t, c) for t, c, *_ in got], ok=(3, 1) in [(t, c) for t, c, *_ in got])
    assert (3, 1) in [(t, c) for t, c, *_ in got], \
        f"no Host Unreachable (3/1) to the sender after a Time Exceeded from the tunnel: {[(t, c) for t, c, *_ in got]}"
    assert (11, 0) not in [(t, c) for t, c, *_ in got], "the Time Exceeded was relayed as it is"


@part("MIP.HA.COV.11", "An ICMP Datagram Too Big from within the tunnel is relayed to the sender",
      ["rfc2003-4.1-f"])
def test_icmp_too_big_relayed(ha_tester, steps):
    home, tunnel = _tunnelled_packet(ha_tester, steps, claimed_length=1400)
    _from_router(ha_tester, steps, icmp_error(3, 4, tunnel, struct.pack("!HH", 0, MTU)),
                 f"ICMP Datagram Too Big (3/4) about a 1400-byte tunnel packet, next-hop MTU {MTU}")
    got = _relayed(ha_tester, steps, home, df=True, size=BIG)
    too_big = [struct.unpack("!HH", r)[1] for t, c, r, _ in got if (t, c) == (3, 4)]
    steps.record("ICMP at h (at once, or for the next DF datagram of 1328 bytes)",
                 f"Datagram Too Big (3/4) with an MTU of at most {MTU}", f"MTUs {too_big}",
                 ok=bool(too_big) and min(too_big) <= MTU)
    assert too_big, f"the Datagram Too Big from the tunnel was not relayed: {[(t, c) for t, c, *_ in got]}"
    assert min(too_big) <= MTU, f"relayed with MTU {too_big}: more than the tunnel's {MTU}"
    should(min(too_big) <= MTU - 20, f"the MTU relayed should be the tunnel's minus the 20-byte outer header: {too_big}")


@part("MIP.HA.COV.12", "After a Datagram Too Big from the tunnel, a later DF datagram above the tunnel MTU gets a Datagram Too Big",
      ["rfc2003-5.1-a"])
def test_tunnel_pmtu_soft_state(ha_tester, steps):
    home, tunnel = _tunnelled_packet(ha_tester, steps, claimed_length=1400)
    _from_router(ha_tester, steps, icmp_error(3, 4, tunnel, struct.pack("!HH", 0, MTU)),
                 f"ICMP Datagram Too Big (3/4) about a 1400-byte tunnel packet, next-hop MTU {MTU}")
    _icmp_at_cn(ha_tester, 0.15)  # whatever was relayed at once
    # h's own stack may have learnt a smaller path MTU from an earlier part's Datagram Too Big: forget it,
    # so the DF datagram leaves h and the judgement is the HA's
    ha_tester.world.run_in("h", ["ip", "route", "flush", "cache"])
    ha_tester.send_to_home(home, df=True, size=BIG)
    got = _icmp_at_cn(ha_tester, 0.5)
    too_big = [struct.unpack("!HH", r)[1] for t, c, r, _ in got if (t, c) == (3, 4)]
    steps.record(f"a DF datagram h -> home address, 1328 bytes (fits the links to the HA, not the tunnel's {MTU})",
                 f"Datagram Too Big (3/4) to h with an MTU of at most {MTU}", f"MTUs {too_big}",
                 ok=bool(too_big) and min(too_big) <= MTU)
    assert too_big, "no Datagram Too Big for a DF datagram exceeding the tunnel MTU learnt from the tunnel"
    assert min(too_big) <= MTU, f"Datagram Too Big with MTU {too_big}: not the tunnel's learnt MTU"


def _not_relayed(ha_tester, steps, icmp_type: int, code: int, rest: bytes, name: str):
    home, tunnel = _tunnelled_packet(ha_tester, steps)
    _from_router(ha_tester, steps, icmp_error(icmp_type, code, tunnel, rest), f"ICMP {name} ({icmp_type}/{code})")
    got = _relayed(ha_tester, steps, home)
    same = [(t, c) for t, c, *_ in got if (t, c) == (icmp_type, code)]
    steps.record("ICMP at h (the original sender), then one more datagram", f"no {name} relayed",
                 [(t, c) for t, c, *_ in got], ok=not same)
    assert not same, f"the {name} from within the tunnel was relayed to the original sender"
    _, alive = ha_tester.data_to_coa(home)
    steps.record("another datagram h -> home address", "still tunnelled to r", alive.summary() if alive else "nothing",
                 ok=alive is not None)
    assert alive is not None, "the tunnel no longer carries data"


@part("MIP.HA.COV.13", "An ICMP Port Unreachable from within the tunnel is not relayed to the sender",
      ["rfc2003-4.1-e"])
def test_icmp_port_unreachable(ha_tester, steps):
    _not_relayed(ha_tester, steps, 3, 3, b"\0\0\0\0", "Port Unreachable")


@part("MIP.HA.COV.14", "An ICMP Source Route Failed from within the tunnel is not relayed to the sender",
      ["rfc2003-4.1-h"])
def test_icmp_source_route_failed(ha_tester, steps):
    _not_relayed(ha_tester, steps, 3, 5, b"\0\0\0\0", "Source Route Failed")


@part("MIP.HA.COV.15", "An ICMP Redirect from within the tunnel is not relayed to the sender",
      ["rfc2003-4.3-a"])
def test_icmp_redirect(ha_tester, steps):
    _not_relayed(ha_tester, steps, 5, 1, bytes([192, 0, 2, 99]), "Redirect")


@part("MIP.HA.COV.16", "A Network or Protocol Unreachable from within the tunnel is relayed, if at all, with code 0 or 1",
      ["rfc2003-4.1-b", "rfc2003-4.1-a", "rfc2003-4.1-d"])
def test_icmp_unreachable_codes(ha_tester, steps):
    home, tunnel = _tunnelled_packet(ha_tester, steps)
    _from_router(ha_tester, steps, icmp_error(3, 0, tunnel), "ICMP Network Unreachable (3/0)")
    got = _relayed(ha_tester, steps, home)
    _from_router(ha_tester, steps, icmp_error(3, 2, tunnel), "ICMP Protocol Unreachable (3/2)")
    got += _relayed(ha_tester, steps, home)
    codes = [c for t, c, *_ in got if t == 3]
    steps.record("Destination Unreachable at h", "codes 0 or 1 only (the home address is on the HA's network)",
                 codes, ok=all(c in (0, 1) for c in codes))
    assert all(c in (0, 1) for c in codes), f"relayed Destination Unreachable with codes {codes}"
    should(codes, "Network and Protocol Unreachable from the tunnel should be reported to the sender")
