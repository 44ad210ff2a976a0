"""MVN: the mobile VPN node of RFC 5265 (kind mobile-vpn-node) against the tester as internal home
agent (i-HA, 10.1.1.2 in iha); the external home agent (x-HA, 203.0.113.71) and the VPN gateway
(203.0.113.70) are this project's helper roles. Inside: the intranet's visited subnet ivn (the node's
co-located address 10.1.4.100; the tester plays a foreign agent there where a part says). Outside:
fn1 (co-located 192.0.2.100, access mode cvc). RFC 5265 sections 2-4: inside/outside detection by a
registration with the i-HA that answers with the Trusted Networks Configured extension (149)."""
import struct
from ipaddress import IPv4Address, IPv4Network

from testbed.conformance.mip.auth import EXT_MN_HA_AUTH
from testbed.conformance.mip.messages import D, T, TrustedNetworksConfigured, flag_letters
from testbed.conformance.mip.ipv4 import parse_ipv4
from testbed.conformance.mip.tunnels import ipip_decapsulate, ipip_encapsulate
from testbed.conformance.mip_mn_env import CORRESPONDENT, AtHa, Frame, echo_reply_in, pingable
from testbed.conformance.parts import inconclusive, part, should
from testbed.processes import patience

I_HA = IPv4Address("10.1.1.2")
X_HA = IPv4Address("203.0.113.71")
GW = IPv4Address("203.0.113.70")
X_HOA = IPv4Address("203.0.113.130")
IVN_COA = IPv4Address("10.1.4.100")
FN1_COA = IPv4Address("192.0.2.100")
POOL = IPv4Network("10.1.3.0/24")
INTRANET = IPv4Network("10.0.0.0/8")
IKE_PORTS = (500, 4500)
DETECT_WINDOW = 2.0  # conformance-mn-rfc5265's detect_window (s): no i-HA reply within it means outside
OUTSIDE_WITHIN = DETECT_WINDOW + 1.5  # how long after attaching IKE may take to start when the node is outside


def _inner_ike(packet: bytes) -> bool:
    p = parse_ipv4(packet, strict_length=False)
    if not p.ok or p.value.protocol != 17 or len(p.value.payload) < 4:
        return False
    return struct.unpack_from("!H", p.value.payload, 2)[0] in IKE_PORTS


def is_ike(i) -> bool:
    """A frame from the node that carries IKE toward the gateway: plain, in IP-in-IP (the x-MIP
    tunnel) or in RFC 3519 tunnel data."""
    if not isinstance(i, Frame) or i.ip is None:
        return False
    if i.udp is not None:
        if i.udp.dport in IKE_PORTS:
            return True
        return i.udp.dport == 434 and i.udp.payload[:1] == b"\x04" and _inner_ike(i.udp.payload[4:])
    if i.ip.protocol == 4:
        return _inner_ike(i.ip.payload)
    return False


def to_x_ha(i, registrations_only: bool = False) -> bool:
    return (isinstance(i, Frame) and i.request is not None and i.ip.dst == X_HA
            and (not registrations_only or i.request.lifetime > 0))


def i_ha_request(src=None, sport=None):
    def match(i) -> bool:
        return (isinstance(i, AtHa) and i.request is not None and (src is None or IPv4Address(i.src) == IPv4Address(src))
                and (sport is None or i.sport == sport))
    return match


def _probe(vt, seg: str = "ivn", src=IVN_COA, timeout: float = 3.0) -> AtHa:
    """Preamble: the station on `seg` (a fresh attachment), the node's registration request at the
    i-HA from `src`."""
    vt.place(seg, fresh=True)
    timeout = patience(timeout)
    at = vt.take(i_ha_request(src), timeout)
    if at is None:
        inconclusive(f"no registration request at the i-HA from {src} within {timeout} s of attaching to {seg}")
    return at


def _answer(vt, at: AtHa, code: int = 0, tnc: bool = True, lifetime=None, what: str = "", late_ok: bool = False,
            **kw) -> bytes:
    """The i-HA's reply to `at`. A valid one with 149 that would leave later than the node's detection
    window after its request arrived (the tester starved of CPU) cannot show inside behaviour: the
    part is INCONCLUSIVE then, unless it answers late on purpose (`late_ok`)."""
    import time
    late = time.time() - at.time
    if tnc and code == 0 and not kw and not late_ok and late > DETECT_WINDOW - 0.1:
        inconclusive(f"the tester's reply would leave {late:.2f} s after the request arrived, past the node's "
                     f"{DETECT_WINDOW:g} s detection window (the machine is too loaded for this part)")
    before = [TrustedNetworksConfigured()] if tnc else []
    data = vt.answer(at.data, code, lifetime=lifetime, extensions_before=before, **kw)
    vt.ha_reply(at, data, what=f"{'with' if tnc else 'without'} extension 149 {what}")
    return data


def _serve(vt, duration: float, tnc: bool = True, lifetime=None, src=None) -> list:
    """Answer every request at the i-HA (from `src`) for `duration` seconds; returns them."""
    import time
    end, got = time.monotonic() + duration, []
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return got
        at = vt.take(i_ha_request(src), left)
        if at is not None:
            got.append(at)
            _answer(vt, at, 0, tnc, lifetime)


def _no_ike(vt, steps, seconds: float, what: str) -> list:
    got = vt.collect(seconds, is_ike)
    steps.record(what, f"no IKE toward the gateway within {seconds} s", [g.summary() for g in got[:3]], ok=not got)
    return got


def _ike(vt, steps, seconds: float, what: str):
    f = vt.take(is_ike, seconds)
    steps.record(what, "IKE toward the gateway (the VPN comes up)", f.summary() if f else "none", ok=f is not None)
    return f


# ---- inside/outside detection on the intranet's visited subnet (ivn) ------------------------------------

@part("MIP.MVN.DETECT.1", "On a new link the node asks the i-HA with a registration from the link's own address",
      ["rfc5265-3-a", "rfc5265-3.2-a", "rfc5265-2.1-a", "rfc5265-4.1-a"], needs=["mip.rfc5265"])
def test_detection_request(vtester, steps):
    at = _probe(vtester)
    req = at.request
    steps.record("attach to ivn (co-located 10.1.4.100)", f"a request to the i-HA from {IVN_COA}, care-of {IVN_COA}",
                 at.summary(), ok=(req.care_of_address, req.home_address) == (IVN_COA, vtester.home))
    assert req.care_of_address == IVN_COA, f"care-of address {req.care_of_address}, expected the link's {IVN_COA}"
    assert req.home_address == vtester.home and req.home_agent == I_HA, \
        f"home {req.home_address}, HA {req.home_agent}: not the i-HoA / i-HA"


@part("MIP.MVN.DETECT.2", "The detection request is authenticated with the i-MIP security association",
      ["rfc5265-3.2-a", "rfc5944-3.3-b"], needs=["mip.rfc5265"])
def test_detection_authenticated(vtester, steps):
    at = _probe(vtester)
    ok = at.request.verify(at.data, vtester.sa.key, EXT_MN_HA_AUTH, vtester.sa.spi)
    steps.record("the request at the i-HA", f"MN-HA SPI {vtester.sa.spi} verifies", f"verifies {ok}", ok=ok)
    assert ok, "the detection request's MN-HA authenticator does not verify with the i-MIP key"


@part("MIP.MVN.DETECT.3", "After the i-HA's reply with extension 149 the node deregisters from the x-HA",
      ["rfc5265-3.3-d", "rfc5265-4.1-f"], needs=["mip.rfc5265"])
def test_inside_deregisters_x_ha(vtester, steps):
    at = _probe(vtester)
    vtester.drain()
    _answer(vtester, at)
    got = vtester.collect(1.5, lambda i: to_x_ha(i) or vtester.ha_request(i))
    for g in got:
        if isinstance(g, AtHa):
            _answer(vtester, g, late_ok=True)  # its later requests, answered after the fact
    dereg = [g for g in got if isinstance(g, Frame) and g.request.lifetime == 0]
    steps.record("i-HA reply with 149 (code 0)", "a deregistration (lifetime 0) to the x-HA",
                 [g.summary() for g in got if isinstance(g, Frame)], ok=bool(dereg))
    should(dereg, "no deregistration from the x-HA once inside")


@part("MIP.MVN.DETECT.4", "Inside (the i-HA answered with 149) the node does not bring up the VPN",
      ["rfc5265-4.1-f", "rfc5265-3.3-b"], needs=["mip.rfc5265"])
def test_inside_no_vpn(vtester, steps):
    at = _probe(vtester)
    _answer(vtester, at)
    got = vtester.collect(2.0, is_ike)
    steps.record("i-HA reply with 149", "no IKE within 2 s", [g.summary() for g in got[:3]], ok=not got)
    should(not got, f"the node brought up IKE though inside: {got[0].summary() if got else ''}")


@part("MIP.MVN.DETECT.5", "Upon the i-HA's reply the node stops retransmitting its detection request",
      ["rfc5265-3.3-c"], needs=["mip.rfc5265"])
def test_probe_stops(vtester, steps):
    at = _probe(vtester)
    _answer(vtester, at)
    got = vtester.collect(1.5, i_ha_request(IVN_COA, at.sport))
    steps.record(f"i-HA reply to the request from port {at.sport}", "no further request from that port",
                 [g.summary() for g in got], ok=not got)
    assert not got, f"the detection request was retransmitted after the i-HA's reply: {got[0].summary()}"


@part("MIP.MVN.DETECT.6", "Upon the i-HA's reply the node stops registering with the x-HA",
      ["rfc5265-3.3-c"], needs=["mip.rfc5265"])
def test_x_ha_registrations_stop(vtester, steps):
    at = _probe(vtester)
    _answer(vtester, at)
    t_reply = vtester.log[-1][0]
    got = vtester.collect(2.2, lambda i: to_x_ha(i, registrations_only=True) and i.time > t_reply + 0.05)
    steps.record("i-HA reply with 149", "no registration (lifetime > 0) to the x-HA afterwards",
                 [g.summary() for g in got], ok=not got)
    assert not got, f"registration request(s) to the x-HA after the i-HA's reply: {got[0].summary()}"


@part("MIP.MVN.DETECT.7", "An i-HA reply without extension 149 does not make the node go without the VPN",
      ["rfc5265-4.1-b", "rfc5265-3.2.3-a"], needs=["mip.rfc5265"])
def test_reply_without_tnc(vtester, steps):
    at = _probe(vtester)
    _answer(vtester, at, tnc=False)
    f = _ike(vtester, steps, OUTSIDE_WITHIN, "i-HA reply code 0 without extension 149")
    assert f is not None, "no IKE after an i-HA reply without the Trusted Networks Configured extension"


@part("MIP.MVN.DETECT.8", "Without any i-HA reply the node decides it is outside and brings up the VPN",
      ["rfc5265-3-a", "rfc5265-3.2.3-a", "rfc5265-4.1-b"], needs=["mip.rfc5265"])
def test_no_reply_outside(vtester, steps):
    _probe(vtester)
    f = _ike(vtester, steps, OUTSIDE_WITHIN, "the i-HA does not answer")
    assert f is not None, "no IKE when the i-HA stays silent"


@part("MIP.MVN.DETECT.9", "A reply with 149 but a wrong authenticator does not count: the node stays with the VPN",
      ["rfc5265-3.2.3-a", "rfc5265-4.1-b"], needs=["mip.rfc5265"])
def test_tnc_unauthentic(vtester, steps):
    at = _probe(vtester)
    _answer(vtester, at, auth={"corrupt": True}, what="(MN-HA corrupted)")
    f = _ike(vtester, steps, OUTSIDE_WITHIN, "i-HA reply with 149, MN-HA corrupted")
    assert f is not None, "an unauthentic reply with 149 kept the node from bringing up the VPN"


@part("MIP.MVN.DETECT.10", "A denial carrying 149 is not a successful registration: the node stays with the VPN",
      ["rfc5265-3.2.3-a"], needs=["mip.rfc5265"])
def test_tnc_on_denial(vtester, steps):
    at = _probe(vtester)
    _answer(vtester, at, code=129, what="code 129 (administratively prohibited)")
    f = _ike(vtester, steps, OUTSIDE_WITHIN, "i-HA denial 129 with 149")
    assert f is not None, "the node took a denial carrying 149 for a successful inside registration (no VPN)"


@part("MIP.MVN.DETECT.11", "A reply with 149 for another identification is ignored: the node stays with the VPN",
      ["rfc5265-3.2.3-a", "rfc5944-3.6.2.1-c"], needs=["mip.rfc5265"])
def test_tnc_wrong_identification(vtester, steps):
    at = _probe(vtester)
    _answer(vtester, at, identification=at.request.identification ^ 0x10, what="(identification changed)")
    f = _ike(vtester, steps, OUTSIDE_WITHIN, "i-HA reply with 149 for another identification")
    assert f is not None, "a reply to another request kept the node from bringing up the VPN"


@part("MIP.MVN.DETECT.12", "Detection requests to the i-HA are not sent less than one second apart",
      ["rfc5944-3.6.3-c"], needs=["mip.rfc5265"])
def test_probe_interval(vtester, steps):
    vtester.place("ivn")
    first = vtester.take(lambda i: isinstance(i, Frame) and i.request is not None and i.ip.dst == I_HA, 3.0)
    if first is None:
        inconclusive("no request to the i-HA on ivn")
    got = vtester.collect(1.2, lambda i: isinstance(i, Frame) and i.request is not None and i.ip.dst == I_HA)
    gaps = [round(g.time - first.time, 3) for g in got]
    steps.record("on ivn, the i-HA does not answer", "no request within 1 s of the first", f"later requests at +{gaps} s",
                 ok=all(x >= 0.99 for x in gaps))
    assert all(x >= 0.99 for x in gaps), f"registration requests to the i-HA {gaps} s after the first one"


@part("MIP.MVN.DETECT.13", "Inside, the node re-registers with the i-HA periodically",
      ["rfc5265-2.1-b", "rfc5265-3.2.4-a", "rfc5265-3.3-e"], needs=["mip.rfc5265"])
def test_inside_reregisters(vtester, steps):
    at = _probe(vtester)
    _answer(vtester, at, lifetime=2)
    got = _serve(vtester, 3.6, lifetime=2, src=IVN_COA)
    times = [round(g.time - at.time, 2) for g in got]
    steps.record("inside; every i-HA reply with 149 and lifetime 2 s", "requests again within the lifetime",
                 f"requests at +{times} s", ok=bool(times) and max(times) >= 2.0)
    assert times and max(times) >= 2.0, f"no re-registration with the i-HA after +2 s (requests at +{times} s)"


@part("MIP.MVN.DETECT.14", "Inside, a re-registration the i-HA does not answer restarts detection (the x-HA is asked again)",
      ["rfc5265-3.3-f", "rfc5265-3.2.4-b"], needs=["mip.rfc5265"])
def test_failed_reregistration_restarts(vtester, steps):
    at = _probe(vtester)
    _answer(vtester, at, lifetime=1)
    _serve(vtester, 0.8, lifetime=1, src=IVN_COA)
    vtester.drain()
    got = vtester.take(lambda i: to_x_ha(i, registrations_only=True) or is_ike(i), 4.0)
    steps.record("inside with lifetime 1 s, then the i-HA falls silent",
                 "the node leaves the inside mode: registers with the x-HA or brings up IKE within 4 s",
                 got.summary() if got else "none", ok=got is not None)
    assert got is not None, "the node stayed inside though its re-registrations with the i-HA went unanswered"


@part("MIP.MVN.DETECT.15", "A link change restarts detection: a request to the i-HA from the new link's address",
      ["rfc5265-3.2.2-a", "rfc5265-3.2.4-f", "rfc5265-3.2.1-a"], needs=["mip.rfc5265"])
def test_link_change_redetects(vtester, steps):
    at = _probe(vtester)
    _answer(vtester, at)
    vtester.collect(0.5, lambda i: False)
    vtester.place("fn1")
    f = vtester.take(lambda i: isinstance(i, Frame) and i.segment == "fn1" and i.request is not None
                     and i.ip.dst == I_HA, 3.0)
    steps.record("inside on ivn, then moved to fn1", f"a request to the i-HA from {FN1_COA} on fn1",
                 f.summary() if f else "none", ok=f is not None and f.ip.src == FN1_COA)
    assert f is not None, "no new detection request to the i-HA after the link changed"
    assert f.ip.src == FN1_COA, f"the new detection request comes from {f.ip.src}, not from the new link's address"


@part("MIP.MVN.DETECT.16", "An i-HA reply with 149 that comes after the window still moves the node inside",
      ["rfc5265-3.5-d", "rfc5265-3.3-g"], needs=["mip.rfc5265"])
def test_late_reply(vtester, steps):
    at = _probe(vtester)
    late = DETECT_WINDOW + 0.4
    vtester.collect(late, lambda i: False)
    later = [i for i in vtester.inbox if vtester.ha_request(i) and IPv4Address(i.src) == IVN_COA]
    _answer(vtester, later[-1] if later else at, what=f"({late:g} s late)", late_ok=True)
    got = vtester.collect(1.5, lambda i: to_x_ha(i) and i.request.lifetime == 0)
    steps.record(f"the i-HA answers with 149 only after {late:g} s (window {DETECT_WINDOW:g} s)",
                 "the node switches inside: x-HA deregistration",
                 [g.summary() for g in got], ok=bool(got))
    should(got, "a late reply with 149 did not move the node inside")


@part("MIP.MVN.DETECT.17", "After the x-HA's reply the node still retransmits its request to the i-HA for a while",
      ["rfc5265-3.3-a"], needs=["mip.rfc5265"])
def test_i_ha_retransmitted_after_x_ha(vtester, steps):
    vtester.place("ivn")
    x = vtester.take(lambda i: to_x_ha(i, registrations_only=True), 3.0)
    if x is None:
        inconclusive("no registration with the x-HA from ivn")
    got = vtester.collect(1.5, lambda i: vtester.ha_request(i) and IPv4Address(i.src) == IVN_COA)
    after = [g for g in got if g.time > x.time + 0.1]
    steps.record("the x-HA (helper) answers at once, the i-HA stays silent",
                 "a request to the i-HA after the x-HA's reply", [g.summary() for g in got], ok=bool(after))
    assert after, "no request to the i-HA after the x-HA had answered"


# ---- outside: fn1, access mode cvc --------------------------------------------------------------------------

def _outside(vt, timeout: float = 7.0):
    """Preamble: on fn1; x-MIP with the x-HA, IKE with the gateway, then the i-MIP request through the
    VPN at the i-HA (from the VPN-TIA). Returns (x-MIP frame, first IKE frame, i-MIP request)."""
    vt.place("fn1")
    timeout = patience(timeout)
    items = vt.collect_until(lambda i: isinstance(i, AtHa) and i.request is not None and IPv4Address(i.src) in POOL,
                             timeout)
    imip = items[-1] if items and isinstance(items[-1], AtHa) and IPv4Address(items[-1].src) in POOL else None
    if imip is None:
        inconclusive(f"no i-MIP request through the VPN at the i-HA within {timeout} s of attaching to fn1")
    # frames on the taps may still be queued behind the i-HA's socket: take them, in arrival order
    items = sorted(items + vt.catch_up(imip.time), key=lambda i: i.time)
    x = next((i for i in items if to_x_ha(i, registrations_only=True)), None)
    ike = next((i for i in items if is_ike(i)), None)
    return x, ike, imip, items


@part("MIP.MVN.OUT.1", "Outside the node brings up x-MIP, then IKE, then i-MIP, in that order",
      ["rfc5265-4.1-c", "rfc5265-2.3-b", "rfc5265-3-a"], needs=["mip.rfc5265"])
def test_outside_order(vtester, steps):
    x, ike, imip, _ = _outside(vtester)
    tx = x.time if x else None
    ti = ike.time if ike else None
    steps.record("attach to fn1 (outside)", "x-MIP request < first IKE < i-MIP request at the i-HA",
                 f"x-MIP {tx}, IKE {ti}, i-MIP {imip.time}", ok=bool(x and ike and tx < ti < imip.time))
    assert x is not None, "no x-MIP registration before the i-MIP request"
    assert ike is not None, "no IKE before the i-MIP request"
    assert tx < ti < imip.time, f"order x-MIP {tx:.3f}, IKE {ti:.3f}, i-MIP {imip.time:.3f}"


@part("MIP.MVN.OUT.2", "The i-MIP request registers the VPN-TIA as co-located care-of address, sent from it",
      ["rfc5265-4.1-c", "rfc5265-2.3-b"], needs=["mip.rfc5265"])
def test_imip_care_of_vpn_tia(vtester, steps):
    _, _, imip, _ = _outside(vtester)
    req = imip.request
    steps.record("the i-MIP request at the i-HA", "care-of address = its source, in the VPN pool, D set",
                 f"{imip.summary()} flags {flag_letters(req.flags)}",
                 ok=str(req.care_of_address) == imip.src and bool(req.flags & D))
    assert str(req.care_of_address) == imip.src, f"care-of {req.care_of_address}, source {imip.src}"
    assert req.home_address == vtester.home and req.home_agent == I_HA, "not the i-HoA / i-HA"
    should(req.flags & D, f"D clear in a co-located i-MIP registration (flags {flag_letters(req.flags)})")


@part("MIP.MVN.OUT.3", "The i-MIP request through the VPN sets T (reverse tunnelling)", ["rfc5265-2.3-a"],
      needs=["mip.rfc5265"])
def test_imip_t_bit(vtester, steps):
    _, _, imip, _ = _outside(vtester)
    req = imip.request
    steps.record("the i-MIP request", "T set", f"flags {flag_letters(req.flags)}", ok=bool(req.flags & T))
    should(req.flags & T, f"T clear in the i-MIP request (flags {flag_letters(req.flags)})")


@part("MIP.MVN.OUT.4", "The i-MIP request is authenticated with the i-MIP security association",
      ["rfc5265-4.1-c", "rfc5944-3.3-b"], needs=["mip.rfc5265"])
def test_imip_authenticated(vtester, steps):
    _, _, imip, _ = _outside(vtester)
    ok = imip.request.verify(imip.data, vtester.sa.key, EXT_MN_HA_AUTH, vtester.sa.spi)
    steps.record("the i-MIP request", "MN-HA verifies with the i-MIP key", f"verifies {ok}", ok=ok)
    assert ok, "the i-MIP request's MN-HA does not verify"


@part("MIP.MVN.OUT.5", "IKE goes from the x-HoA inside the x-MIP tunnel, not from the care-of address",
      ["rfc5265-4.1-c"], needs=["mip.rfc5265"])
def test_ike_from_x_hoa(vtester, steps):
    _, ike, _, _ = _outside(vtester)
    if ike is None:
        inconclusive("no IKE seen on fn1")
    inner_src = None
    if ike.ip.protocol == 4:
        inner_src = IPv4Address(ike.ip.payload[12:16])
    elif ike.udp is not None and ike.udp.dport == 434:
        inner_src = IPv4Address(ike.udp.payload[4 + 12:4 + 16])
    steps.record("the first IKE packet on fn1", f"tunnelled to the x-HA, inner source {X_HOA}", ike.summary(),
                 ok=inner_src == X_HOA and ike.ip.dst == X_HA)
    assert inner_src is not None, f"IKE sent outside the x-MIP tunnel: {ike.summary()}"
    assert inner_src == X_HOA and ike.ip.dst == X_HA, f"inner source {inner_src}, outer to {ike.ip.dst}"


@part("MIP.MVN.OUT.6", "Outside, the x-MIP registration goes co-located from the link's address to the x-HA",
      ["rfc5265-4.1-c", "rfc5944-3.6.1.1-a"], needs=["mip.rfc5265"])
def test_x_mip_request(vtester, steps):
    vtester.place("fn1")
    x = vtester.take(lambda i: to_x_ha(i, registrations_only=True), 3.0)
    if x is None:
        inconclusive("no x-MIP registration on fn1")
    req = x.request
    steps.record("attach to fn1", f"{FN1_COA} -> x-HA, care-of {FN1_COA}, home {X_HOA}", x.summary(),
                 ok=(x.ip.src, req.care_of_address, req.home_address) == (FN1_COA, FN1_COA, X_HOA))
    assert (x.ip.src, req.care_of_address, req.home_address) == (FN1_COA, FN1_COA, X_HOA), x.summary()


@part("MIP.MVN.OUT.7", "Outside, the i-HA's tunnelled data reaches the node through the VPN and the answer comes back reverse-tunnelled",
      ["rfc5265-2.3-b", "rfc5265-4.1-g"], needs=["mip.rfc5265"])
def test_data_through_vpn(vtester, steps):
    _, _, imip, _ = _outside(vtester)
    _answer(vtester, imip, tnc=True, late_ok=True)  # not a detection: no window
    vtester.collect(0.3, lambda i: False)
    ident = vtester.next_ident()
    vtester.ha_send_ip(ipip_encapsulate(pingable(CORRESPONDENT, vtester.home, ident), I_HA, imip.src),
                       "IP-in-IP to the VPN-TIA")

    def back(i) -> bool:
        if not isinstance(i, AtHa) or i.kind != "ip" or i.protocol != 4:
            return False
        d = ipip_decapsulate(i.data)
        return d.ok and echo_reply_in(d.value.inner, ident)
    got = vtester.take(back, 1.5)
    steps.record(f"i-MIP accepted; echo request H -> i-HoA tunnelled to {imip.src}",
                 "the echo reply reverse-tunnelled from the VPN-TIA", got.summary() if got else "none",
                 ok=got is not None and got.src == imip.src)
    assert got is not None, "no echo reply through the VPN and the i-MIP reverse tunnel"


@part("MIP.MVN.OUT.8", "Outside, nothing for the intranet leaves the node in the clear",
      ["rfc5265-4.1-g", "rfc5265-2.3-b"], needs=["mip.rfc5265"])
def test_no_plaintext(vtester, steps):
    _, _, imip, items = _outside(vtester)
    _answer(vtester, imip, tnc=True, late_ok=True)  # not a detection: no window
    ident = vtester.next_ident()
    vtester.ha_send_ip(ipip_encapsulate(pingable(CORRESPONDENT, vtester.home, ident), I_HA, imip.src))
    later = vtester.collect(1.0, lambda i: isinstance(i, Frame) and i.segment == "fn1")
    clear = []
    for f in items + later:
        if not isinstance(f, Frame) or f.ip is None:
            continue
        dst = f.ip.dst
        inner = f.ip.payload if f.ip.protocol == 4 else None
        if inner and len(inner) >= 20:
            dst = IPv4Address(inner[16:20])
        if dst in INTRANET and not (f.request is not None and f.ip.dst == I_HA):  # the detection request may go
            clear.append(f)
    steps.record("on fn1 from attachment to the i-MIP data exchange", "no packet for 10/8 except the detection request",
                 [f.summary() for f in clear[:3]], ok=not clear)
    assert not clear, f"a packet for the intranet left in the clear: {clear[0].summary()}"


# ---- mode f: a foreign agent (the tester) on the intranet's visited subnet -------------------------------

def _fa_probe(vt):
    """Preamble: on ivn, the tester's agent advertises R F (registration through it required, the
    node's co-located address there notwithstanding); the node's i-MIP request to it."""
    vt.attach("ivn")
    a = vt.agent("ivn")
    vt.advertise(a, "RF", prefix_length=24)
    f = vt.take(lambda i: isinstance(i, Frame) and i.request is not None and i.ip.dst == a.address
                and i.request.home_address == vt.home, 3.0)
    if f is None:
        inconclusive("no i-MIP request through the agent on ivn")
    return a, f


@part("MIP.MVN.F.1", "With a foreign agent on the intranet link, the detection request goes through the agent",
      ["rfc5265-2.2-a", "rfc5265-3-a"], needs=["mip.rfc5265"])
def test_mode_f_request(vtester, steps):
    a, f = _fa_probe(vtester)
    req = f.request
    steps.record(f"advertisement F from {a.address} on ivn", "a request to the agent: care-of the agent's, i-HoA, i-HA",
                 f.summary(), ok=(req.care_of_address, req.home_agent) == (a.address, I_HA))
    assert req.care_of_address == a.address, f"care-of {req.care_of_address}, the agent advertises {a.address}"
    assert req.home_agent == I_HA, f"home agent {req.home_agent}"


@part("MIP.MVN.F.2", "The request through the intranet's foreign agent has TTL 255", ["rfc3024-3.2-b", "rfc5265-2.2-a"],
      needs=["mip.rfc5265"])
def test_mode_f_ttl(vtester, steps):
    a, f = _fa_probe(vtester)
    steps.record("request to the agent on ivn", "TTL 255", f.summary(), ok=f.ip.ttl == 255)
    assert f.ip.ttl == 255, f"TTL {f.ip.ttl}"


@part("MIP.MVN.F.3", "Through the intranet's agent, an i-HA reply with 149 means inside: no VPN",
      ["rfc5265-2.2-a", "rfc5265-4.1-f"], needs=["mip.rfc5265"])
def test_mode_f_inside(vtester, steps):
    a, f = _fa_probe(vtester)
    data = vtester.answer(f.udp.payload, 0, extensions_before=[TrustedNetworksConfigured()])
    vtester.fa_reply(f, data, agent=a, what="relayed i-HA reply with 149")
    got = vtester.collect(2.0, is_ike)
    steps.record("the agent relays the i-HA's reply with 149", "no IKE within 2 s", [g.summary() for g in got[:3]],
                 ok=not got)
    should(not got, f"IKE though inside through the agent: {got[0].summary() if got else ''}")
