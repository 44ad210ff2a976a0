"""HA: the Registration Reply's IP and UDP fields (RFC 5944 3.8.3.1, 3.1): addresses and ports,
the UDP checksum of replies and of requests (zero accepted, wrong discarded); the HA speaks only
when spoken to (3.8)."""
import time

from testbed.conformance import netns
from testbed.conformance.inbox import quiet_until_marker
from testbed.conformance.mip.udp import parse_ipv4_udp
from testbed.conformance.mip_env import describe_check
from testbed.conformance.parts import part, should


@part("MIP.HA.UDP.1", "The reply goes from the request's destination address to the request's source address",
      ["rfc5944-3.8.2.2-b", "rfc5944-3.8.3-c"])
def test_reply_addresses(ha_tester, steps):
    mn = ha_tester.mn()
    item, check = ha_tester.registered(mn, steps=steps)
    steps.record("IP addresses of the reply", f"{ha_tester.ha} -> {ha_tester.coa}", f"{item.src} -> {item.dst}",
                 ok=(item.src, item.dst) == (ha_tester.ha, ha_tester.coa))
    assert item.src == ha_tester.ha, f"source {item.src}"
    assert item.dst == ha_tester.coa, f"destination {item.dst}"


@part("MIP.HA.UDP.2", "The reply comes from port 434 to the request's source port 434",
      ["rfc5944-3.8.3-c"])
def test_reply_ports_434(ha_tester, steps):
    mn = ha_tester.mn()
    item, _ = ha_tester.registered(mn, steps=steps)
    steps.record("UDP ports of the reply", "434 -> 434", f"{item.sport} -> {item.dport}",
                 ok=(item.sport, item.dport) == (434, 434))
    assert (item.sport, item.dport) == (434, 434), f"ports {item.sport} -> {item.dport}"


@part("MIP.HA.UDP.3", "A request from an ephemeral port is answered from 434 to that port",
      ["rfc5944-3.8.3-c", "rfc5944-3.8.2.2-b"])
def test_reply_to_ephemeral_port(ha_tester, steps):
    from testbed.conformance.mip import SocketTransport
    mn = ha_tester.mn()
    s = netns.udp_socket(ha_tester.world.pid("r"), "0.0.0.0", 0, reuse=False)
    try:
        tp = SocketTransport(udp=s)
        port = s.getsockname()[1]
        data = mn.request(time.time(), ha_tester.coa, flags="D")
        tp.send_udp(ha_tester.ha, data, 434)
        item = tp.wait_for(lambda i: i.kind == "udp" and i.data[:1] == b"\x03", 1.0)
    finally:
        s.close()
    steps.record(f"request from r port {port}", f"reply from 434 to {port}",
                 f"{item.sport} -> port {port}" if item else "no reply", ok=bool(item and item.sport == 434))
    assert item is not None, f"no reply at port {port}"
    assert item.sport == 434, f"reply from port {item.sport}"
    check = mn.check_reply(item.data, time.time())
    assert check.accepted, describe_check(check)


def _reply_checksum(ha_tester, steps, request_checksum: str):
    """Send a request with the given UDP checksum kind from a raw socket; return the reply's checksum
    state as a raw socket at r saw it (or None)."""
    import select
    mn = ha_tester.mn()
    raw_in = netns.raw_socket(ha_tester.world.pid("r"), 17)
    raw_in.setblocking(False)

    def recv(timeout: float) -> list:
        if not select.select([raw_in], [], [], timeout)[0]:
            return []
        d = parse_ipv4_udp(raw_in.recv(65535))
        return [d] if d.ok else []

    def reply_to(ident: int):
        return lambda d: d.sport == 434 and d.payload[:1] == b"\x03" and \
            int.from_bytes(d.payload[16:20], "big") == ident & 0xFFFFFFFF
    try:
        data = mn.request(time.time(), ha_tester.coa, flags="D")
        ha_tester.send_packet(ha_tester.udp_packet(data, checksum=request_checksum))
        ident = mn.pending_identification
        # a request to be discarded: a valid one of the marker node follows, and the wait ends once
        # it is answered (a silence window ended by a marker: testbed/conformance/inbox.py)
        answered = ha_tester.marker_request() if request_checksum == "wrong" else None
        marker = reply_to(answered.identification) if answered is not None else None
        seen = quiet_until_marker(recv, reply_to(ident), marker, 1.0).item
    finally:
        raw_in.close()
    ha_tester.mn_place.transport.recv(0.05)  # the socket's copy, into the ladder
    return mn, seen


def _offloaded(d) -> bool:
    """The checksum field holds only the pseudo-header sum: the sender's kernel left the rest to
    checksum offload, which a virtual link never performs (CHECKSUM_PARTIAL seen on a raw socket);
    a real interface completes it, and the receiving kernel trusts it."""
    import struct
    from testbed.conformance.mip.ipv4 import ip
    words = struct.unpack("!6H", ip(d.src).packed + ip(d.dst).packed + struct.pack("!BBH", 0, 17, 8 + len(d.payload)))
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return d.checksum == total


@part("MIP.HA.UDP.4", "The reply's UDP checksum is right (or zero)",
      ["rfc5944-3.1-d"])
def test_reply_checksum(ha_tester, steps):
    _, seen = _reply_checksum(ha_tester, steps, "right")
    state = "no reply" if seen is None else "right (left to checksum offload)" if (
        seen.checksum_state == "wrong" and _offloaded(seen)) else seen.checksum_state
    steps.record("UDP checksum of the reply (raw socket at r)", "right or zero", state,
                 ok=seen is not None and state != "wrong")
    assert seen is not None, "no reply"
    assert state != "wrong", f"checksum {seen.checksum:#06x} is wrong"
    should(seen.checksum_state != "zero", "registration messages should carry a nonzero UDP checksum")


@part("MIP.HA.UDP.5", "A request with a zero UDP checksum (none computed) is accepted",
      ["rfc5944-3.1-e"])
def test_zero_checksum_accepted(ha_tester, steps):
    mn, seen = _reply_checksum(ha_tester, steps, "zero")
    ok = seen is not None and seen.payload[1] in (0, 1)
    steps.record("request with UDP checksum 0", "accepted", f"code {seen.payload[1]}" if seen else "no reply", ok=ok)
    should(ok, "a request with a zero UDP checksum should be accepted")


@part("MIP.HA.UDP.6", "A request with a wrong non-zero UDP checksum is silently discarded",
      ["rfc5944-3.8.2.1-a", "rfc5944-3.1-d"])
def test_wrong_checksum_discarded(ha_tester, steps):
    mn, seen = _reply_checksum(ha_tester, steps, "wrong")
    steps.record("request with a wrong UDP checksum", "no reply", "reply" if seen else "nothing", ok=seen is None)
    assert seen is None, f"a request with a wrong UDP checksum was answered (code {seen.payload[1]})"
    marker = ha_tester.marker_binding()
    ok = ha_tester.nothing_tunnelled(str(mn.home_address), wait=0.3, marker_home=marker)
    steps.record(f"datagram from h to the home address (then one to {marker}, bound at r: the wait ends once that "
                 "one is tunnelled)", "not tunnelled", "nothing" if ok else "tunnelled", ok=ok)
    assert ok, "the discarded request created a binding"
    ha_tester.registered(ha_tester.mn(), steps=steps)


@part("MIP.HA.UDP.7", "Registration replies are never sent inside a tunnel: the reply is plain UDP 434 from the HA",
      ["rfc3519-4.2-a", "rfc5944-3.8.3-c"])
def test_reply_not_tunnelled(ha_tester, steps):
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps)
    item, check = ha_tester.register(mn)
    steps.record("re-registration while a binding exists", "a plain reply on UDP 434 from the HA",
                 f"{item.kind} from {item.src}:{item.sport}" if item else "no reply",
                 ok=bool(item and item.kind == "udp" and item.src == ha_tester.ha))
    assert item is not None and check.accepted, describe_check(check)
    tunnelled = [i for i in ha_tester.mn_place.transport.log if i.kind == "ip" and i.direction == "received"]
    assert not tunnelled, f"{len(tunnelled)} tunnelled packet(s) arrived around the registration"


@part("MIP.HA.NOREQ.1", "The HA sends no registration message on its own (none in half a second of silence)",
      ["rfc5944-3.8-a"])
def test_no_unsolicited(ha_tester, steps):
    got = ha_tester.any_registration(timeout=0.5)
    steps.record("listen at r without sending", "nothing", len(got), ok=not got)
    assert not got, f"{len(got)} unsolicited registration message(s)"


@part("MIP.HA.NOREQ.2", "While a node is registered the HA sends it no Registration Request nor an extra reply",
      ["rfc5944-3.8-a", "rfc5944-3.8.2.2-c"])
def test_no_unsolicited_when_bound(ha_tester, steps):
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps)
    got = ha_tester.any_registration(timeout=0.5)
    fa_got = ha_tester.any_registration(ha_tester.fa_place, timeout=0.05)
    steps.record("listen at r and ar1 after the reply", "nothing more", f"{len(got)} at r, {len(fa_got)} at ar1",
                 ok=not got and not fa_got)
    assert not got and not fa_got, "the HA sent registration messages nobody asked for"


@part("MIP.HA.NOREQ.3", "One request gets one reply",
      ["rfc5944-3.8-a", "rfc5944-3.8.2.2-a"])
def test_one_reply(ha_tester, steps):
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps)
    more = ha_tester.any_registration(timeout=0.3)
    steps.record("further replies to the same request", "none", len(more), ok=not more)
    assert not more, f"{len(more)} further replies"
