"""SGW-R: the gateway as responder, what IKE_AUTH configures: traffic selectors (RFC 7296 2.9, 3.13)
and the configuration payload of a remote-access client (2.19, 3.15, 4)."""
import ipaddress
import os
import struct

from testbed.conformance.ike import constants as c
from testbed.conformance.ike import messages as m
from testbed.conformance.ike_env import notify_names
from testbed.conformance.parts import part, should

OUTSIDE = "198.51.100.0/24"       # a network no policy of the gateway covers
INTERNAL_ADDRESS_EXPIRY = 5       # obsolete CP attribute (RFC 7296 1.7)
UNKNOWN_CP_ATTR = 16400           # a CP attribute type of the private-use range (3.15.1)


def said(resp) -> str:
    return resp.summary() if resp is not None else "no answer"


def cp_payload(cfg_type: int, attrs: list[tuple[int, bytes]], reserved: bytes = bytes(3)) -> m.Payload:
    """A CP payload built octet by octet (RFC 7296 3.15, 3.15.1): CFG Type, RESERVED, attributes
    (the type's first bit is the attribute's Reserved bit)."""
    body = bytes([cfg_type]) + reserved + b"".join(struct.pack("!HH", t, len(v)) + v for t, v in attrs)
    return m.Payload(c.CP, body)


def request(ike, s, spi: bytes, cp=None, tsi=None, tsr=None, tsi_payload=None) -> list:
    """IDi, AUTH, [CP], SAi2, TSi, TSr of a first IKE_AUTH request."""
    idp = m.idi(ike.peer.identity)
    pl = [idp, m.auth(c.AUTH_PSK, s.auth_value(ike.peer.psk, True, idp.body))]
    pl += [cp] if cp is not None else []
    pl += [m.sa([s.child_algs.proposal(spi)]), tsi_payload or m.tsi(tsi or ["0.0.0.0/0"]), m.tsr(tsr or ["0.0.0.0/0"])]
    return pl


def auth(ike, s, payloads: list, spi: bytes):
    resp = ike.exchange(s, s.auth_request(payloads=payloads, child_spi=spi))
    if resp is not None:
        s.handle_auth_response(resp.raw, psk=ike.peer.psk)
    return resp


def selectors(resp, ptype: int) -> list[dict]:
    p = resp.get(ptype) if resp is not None else None
    return p.fields.get("selectors", []) if p is not None else []


def addr(x: str) -> int:
    return int(ipaddress.ip_address(x))


def within(sel: dict, net: str) -> bool:
    n = ipaddress.ip_network(net)
    return int(n[0]) <= addr(sel["start"]) <= addr(sel["end"]) <= int(n[-1])


def covers(sel: dict, address: str, protocol: int = 0) -> bool:
    return (addr(sel["start"]) <= addr(address) <= addr(sel["end"]) and sel["protocol"] in (0, protocol)
            and sel["start_port"] == 0 and sel["end_port"] == 65535)


def ts_text(sels: list[dict]) -> str:
    return ", ".join(f"{x.get('start')}-{x.get('end')} p{x['protocol']} {x['start_port']}-{x['end_port']}" for x in sels)


def cp_attrs(resp) -> list[tuple[int, bytes]]:
    """(type with its Reserved bit, value) of the response's CP payload, read from its body."""
    cp = resp.get(c.CP) if resp is not None else None
    if cp is None:
        return []
    out, pos, body = [], 4, cp.body
    while pos + 4 <= len(body):
        t, n = struct.unpack("!HH", body[pos:pos + 4])
        out.append((t, body[pos + 4:pos + 4 + n]))
        pos += 4 + n
    return out


def addresses(resp) -> list[str]:
    return [str(ipaddress.IPv4Address(v)) for t, v in cp_attrs(resp) if t & 0x7FFF == c.INTERNAL_IP4_ADDRESS and len(v) == 4]


# ---------------------------------------------------------------------------------------- traffic selectors

@part("IKE.SGW-R.TS.1", "TSr wider than the policy (10.0.0.0/8) is narrowed to an acceptable subset of it",
      ["rfc7296-2.9-c"], needs=["ikev2.cp"])
def test_ts_narrowed(ike, steps):
    s, _ = ike.init()
    spi = os.urandom(4)
    resp = auth(ike, s, request(ike, s, spi, cp=m.cp_request(), tsr=["10.0.0.0/8"]), spi)
    tsr = selectors(resp, c.TSR)
    steps.record("IKE_AUTH: CP, TSi 0.0.0.0/0, TSr 10.0.0.0/8", "a child SA with TSr narrowed within 10.0.0.0/8",
                 f"{said(resp)} TSr [{ts_text(tsr)}]")
    if should(resp is not None and resp.get(c.SA) is not None and tsr, f"the selectors narrowed (got {said(resp)})"):
        assert all(within(x, "10.0.0.0/8") for x in tsr), f"TSr [{ts_text(tsr)}] is not a narrowing of 10.0.0.0/8"


@part("IKE.SGW-R.TS.2", "New child SA with specific first selectors (the client's address and H, ICMP): the narrowed "
      "selectors still include them", ["rfc7296-2.9-b"], needs=["ikev2.cp"])
def test_ts_first_selectors_kept(ike, steps):
    s = ike.establish()
    vip, h = s.virtual_ip[0], ike.peer.inside_host
    first_i = m.TrafficSelector(vip, vip, 1, 0, 65535)
    first_r = m.TrafficSelector(h, h, 1, 0, 65535)
    resp = ike.exchange(s, s.create_child_request(tsi=[first_i, "0.0.0.0/0"], tsr=[first_r, "0.0.0.0/0"]))
    tsi, tsr = selectors(resp, c.TSI), selectors(resp, c.TSR)
    steps.record(f"CREATE_CHILD_SA: TSi ({vip} ICMP, 0.0.0.0/0), TSr ({h} ICMP, 0.0.0.0/0)",
                 f"TSi covering {vip} ICMP, TSr covering {h} ICMP",
                 f"{said(resp)} TSi [{ts_text(tsi)}] TSr [{ts_text(tsr)}]")
    assert resp is not None and resp.get(c.SA) is not None, f"the child SA was refused: {said(resp)}"
    assert any(covers(x, vip, 1) for x in tsi), f"TSi [{ts_text(tsi)}] leaves out the first selector {vip} ICMP"
    assert any(covers(x, h, 1) for x in tsr), f"TSr [{ts_text(tsr)}] leaves out the first selector {h} ICMP"


@part("IKE.SGW-R.TS.3", "TSr entirely outside the policy: no child SA (TS_UNACCEPTABLE); the IKE SA should stay",
      ["rfc7296-1.3.1-c"], needs=["ikev2.cp"])
def test_ts_unacceptable(ike, steps):
    s, _ = ike.init()
    spi = os.urandom(4)
    resp = auth(ike, s, request(ike, s, spi, cp=m.cp_request(), tsr=[OUTSIDE]), spi)
    steps.record(f"IKE_AUTH: CP, TSi 0.0.0.0/0, TSr {OUTSIDE} (outside every policy)", "N(TS_UNACCEPTABLE), no SA",
                 said(resp))
    assert resp is not None and resp.ok, f"no readable IKE_AUTH response: {said(resp)}"
    assert resp.get(c.SA) is None, f"a child SA for selectors outside the policy: TSr [{ts_text(selectors(resp, c.TSR))}]"
    should(c.N_TS_UNACCEPTABLE in resp.notify_types(), f"TS_UNACCEPTABLE said (got {notify_names(resp)})")
    if resp.get(c.AUTH) is not None:
        info = ike.exchange(s, s.informational_request([]), timeout=1.0)
        steps.record("empty INFORMATIONAL on the IKE SA", "answered", said(info))
        should(info is not None and info.response, "the IKE SA survives the refused child SA")
    else:
        should(False, "the IKE SA survives the refused child SA (the IKE_AUTH response has no AUTH)")


@part("IKE.SGW-R.TS.4", "A non-zero RESERVED field in TSi is ignored", ["rfc7296-3.13-a"], needs=["ikev2.cp"])
def test_ts_reserved_ignored(ike, steps):
    s, _ = ike.init()
    spi = os.urandom(4)
    p = m.tsi(["0.0.0.0/0"])
    p = p.with_(body=p.body[:1] + b"\xa5\xa5\xa5" + p.body[4:])
    resp = auth(ike, s, request(ike, s, spi, cp=m.cp_request(), tsi_payload=p), spi)
    steps.record("IKE_AUTH with TSi RESERVED 0xa5a5a5", "a child SA as usual", said(resp))
    assert resp is not None and resp.get(c.SA) is not None, f"the request was not served: {said(resp)}"


@part("IKE.SGW-R.TS.5", "The responder's selectors are well formed: RESERVED zero, ports 0-65535 for any protocol",
      ["rfc7296-3.13-a", "rfc7296-3.13.1-a", "rfc7296-3.13.1-b"], needs=["ikev2.cp"])
def test_ts_format(ike, steps):
    s, _ = ike.init()
    spi = os.urandom(4)
    resp = auth(ike, s, request(ike, s, spi, cp=m.cp_request()), spi)
    assert resp is not None and resp.get(c.SA) is not None, f"no child SA: {said(resp)}"
    for ptype in (c.TSI, c.TSR):
        p = resp.get(ptype)
        sels = p.fields.get("selectors", [])
        steps.record(f"{c.payload_name(ptype)} of the IKE_AUTH response", "RESERVED 0; protocol 0 with ports 0-65535",
                     f"RESERVED {p.body[1:4].hex()} [{ts_text(sels)}]")
        assert p.body[1:4] == bytes(3), f"{c.payload_name(ptype)} RESERVED {p.body[1:4].hex()}"
        for x in sels:
            if x["protocol"] == 0:
                assert (x["start_port"], x["end_port"]) == (0, 65535), f"protocol 0 with ports {ts_text([x])}"


# ---------------------------------------------------------------------------------------- configuration payload

@part("IKE.SGW-R.CP.1", "CFG_REQUEST for INTERNAL_IP4_ADDRESS: CFG_REPLY with an address, and TSi narrowed to it",
      ["rfc7296-4-h", "rfc7296-4-i"], needs=["ikev2.cp"])
def test_cp_address_given(ike, steps):
    s, _ = ike.init()
    spi = os.urandom(4)
    resp = auth(ike, s, request(ike, s, spi, cp=m.cp_request(dns=False)), spi)
    cp = resp.get(c.CP) if resp is not None else None
    got, tsi = addresses(resp), selectors(resp, c.TSI)
    steps.record("IKE_AUTH: CP(CFG_REQUEST: INTERNAL_IP4_ADDRESS)", "CP(CFG_REPLY) with one INTERNAL_IP4_ADDRESS",
                 f"{said(resp)} addresses {got} TSi [{ts_text(tsi)}]")
    assert cp is not None, f"no CP in the IKE_AUTH response: {said(resp)}"
    assert cp.fields["cfg_type"] == c.CFG_REPLY, f"CFG Type {cp.fields['cfg_type']}, CFG_REPLY (2) expected"
    assert len(got) == 1, f"INTERNAL_IP4_ADDRESS values {got}, one address expected"
    assert tsi and all(addr(x["start"]) <= addr(got[0]) <= addr(x["end"]) for x in tsi[:1]), \
        f"TSi [{ts_text(tsi)}] does not cover the assigned address {got[0]}"


@part("IKE.SGW-R.CP.2", "Without a CFG_REQUEST the response carries no CFG_REPLY", ["rfc7296-2.19-e"], needs=["ikev2.cp"])
def test_no_cp_without_request(ike, steps):
    s, _ = ike.init()
    spi = os.urandom(4)
    resp = auth(ike, s, request(ike, s, spi, cp=None), spi)
    steps.record("IKE_AUTH without CP", "no CP payload in the response", said(resp))
    assert resp is not None and resp.ok, f"no readable IKE_AUTH response: {said(resp)}"
    assert resp.get(c.CP) is None, f"a CP payload answered a request without CFG_REQUEST: {said(resp)}"


@part("IKE.SGW-R.CP.3", "Without a CFG_REQUEST the IKE SA is authenticated; a child SA refused for it says "
      "FAILED_CP_REQUIRED", ["rfc7296-2.19-f"], needs=["ikev2.cp"])
def test_cp_required(ike, steps):
    s, _ = ike.init()
    spi = os.urandom(4)
    resp = auth(ike, s, request(ike, s, spi, cp=None), spi)
    steps.record("IKE_AUTH without CP, TSi/TSr 0.0.0.0/0", "IDr, AUTH and a child SA, or N(FAILED_CP_REQUIRED)",
                 said(resp))
    assert resp is not None and resp.get(c.AUTH) is not None and s.peer_auth_ok, \
        f"the IKE SA was not authenticated: {said(resp)}"
    if resp.get(c.SA) is None:
        assert c.N_FAILED_CP_REQUIRED in resp.notify_types(), \
            f"the child SA was refused without FAILED_CP_REQUIRED: {notify_names(resp)}"


@part("IKE.SGW-R.CP.4", "In the IKE_AUTH response the CP payload comes before the SA payload", ["rfc7296-2.19-b"],
      needs=["ikev2.cp"])
def test_cp_before_sa(ike, steps):
    s, _ = ike.init()
    spi = os.urandom(4)
    resp = auth(ike, s, request(ike, s, spi, cp=m.cp_request()), spi)
    order = [p.type for p in (resp.inner or [])] if resp is not None else []
    steps.record("IKE_AUTH with CP(CFG_REQUEST)", "CP before SA", said(resp))
    assert c.CP in order and c.SA in order, f"CP and SA expected: {said(resp)}"
    assert order.index(c.CP) < order.index(c.SA), f"the CP payload follows the SA payload: {said(resp)}"


@part("IKE.SGW-R.CP.5", "An unknown attribute in CFG_REQUEST is ignored: the address is still given",
      ["rfc7296-3.15.1-e"], needs=["ikev2.cp"])
def test_cp_unknown_attribute(ike, steps):
    s, _ = ike.init()
    spi = os.urandom(4)
    cp = cp_payload(c.CFG_REQUEST, [(UNKNOWN_CP_ATTR, b"\x01\x02"), (c.INTERNAL_IP4_ADDRESS, b"")])
    resp = auth(ike, s, request(ike, s, spi, cp=cp), spi)
    steps.record(f"IKE_AUTH: CFG_REQUEST with attribute {UNKNOWN_CP_ATTR} (unknown) and INTERNAL_IP4_ADDRESS",
                 "CFG_REPLY with an address", f"{said(resp)} addresses {addresses(resp)}")
    assert resp is not None and resp.get(c.SA) is not None, f"the request was not served: {said(resp)}"
    assert addresses(resp), "no INTERNAL_IP4_ADDRESS in the reply"


@part("IKE.SGW-R.CP.6", "The obsolete INTERNAL_ADDRESS_EXPIRY (5) in CFG_REQUEST is ignored and not returned",
      ["rfc7296-1.7-d"], needs=["ikev2.cp"])
def test_cp_address_expiry_ignored(ike, steps):
    s, _ = ike.init()
    spi = os.urandom(4)
    cp = cp_payload(c.CFG_REQUEST, [(c.INTERNAL_IP4_ADDRESS, b""), (INTERNAL_ADDRESS_EXPIRY, b"")])
    resp = auth(ike, s, request(ike, s, spi, cp=cp), spi)
    types = [t & 0x7FFF for t, _ in cp_attrs(resp)]
    steps.record("IKE_AUTH: CFG_REQUEST with INTERNAL_IP4_ADDRESS and INTERNAL_ADDRESS_EXPIRY",
                 "CFG_REPLY with an address, without attribute 5", f"{said(resp)} attribute types {types}")
    assert resp is not None and resp.get(c.SA) is not None, f"the request was not served: {said(resp)}"
    assert addresses(resp), "no INTERNAL_IP4_ADDRESS in the reply"
    assert INTERNAL_ADDRESS_EXPIRY not in types, "INTERNAL_ADDRESS_EXPIRY returned"


@part("IKE.SGW-R.CP.7", "A non-zero RESERVED field in the CP payload is ignored", ["rfc7296-3.15-a"],
      needs=["ikev2.cp"])
def test_cp_reserved_ignored(ike, steps):
    s, _ = ike.init()
    spi = os.urandom(4)
    cp = cp_payload(c.CFG_REQUEST, [(c.INTERNAL_IP4_ADDRESS, b"")], reserved=b"\xa5\xa5\xa5")
    resp = auth(ike, s, request(ike, s, spi, cp=cp), spi)
    steps.record("IKE_AUTH: CFG_REQUEST with RESERVED 0xa5a5a5", "CFG_REPLY with an address",
                 f"{said(resp)} addresses {addresses(resp)}")
    assert resp is not None and resp.get(c.SA) is not None, f"the request was not served: {said(resp)}"
    assert addresses(resp), "no INTERNAL_IP4_ADDRESS in the reply"


@part("IKE.SGW-R.CP.8", "The CFG_REPLY is sent with RESERVED zero and every attribute's Reserved bit clear",
      ["rfc7296-3.15-a", "rfc7296-3.15.1-a"], needs=["ikev2.cp"])
def test_cp_reply_reserved_zero(ike, steps):
    s, _ = ike.init()
    spi = os.urandom(4)
    resp = auth(ike, s, request(ike, s, spi, cp=m.cp_request()), spi)
    cp = resp.get(c.CP) if resp is not None else None
    attrs = cp_attrs(resp)
    steps.record("IKE_AUTH with CP(CFG_REQUEST)", "RESERVED 000000, attribute types below 0x8000",
                 f"RESERVED {cp.body[1:4].hex()} types {[hex(t) for t, _ in attrs]}" if cp else said(resp))
    assert cp is not None, f"no CP: {said(resp)}"
    assert cp.body[1:4] == bytes(3), f"CP RESERVED {cp.body[1:4].hex()}"
    assert all(t & 0x8000 == 0 for t, _ in attrs), f"attribute Reserved bit set: {[hex(t) for t, _ in attrs]}"


@part("IKE.SGW-R.CP.9", "Asked for a netmask too: the reply holds at most one INTERNAL_IP4_NETMASK, and only with an "
      "address", ["rfc7296-3.15.1-b"], needs=["ikev2.cp"])
def test_cp_netmask(ike, steps):
    s, _ = ike.init()
    spi = os.urandom(4)
    resp = auth(ike, s, request(ike, s, spi, cp=m.cp_request(netmask=True)), spi)
    types = [t & 0x7FFF for t, _ in cp_attrs(resp)]
    steps.record("IKE_AUTH: CFG_REQUEST with INTERNAL_IP4_ADDRESS, INTERNAL_IP4_NETMASK, INTERNAL_IP4_DNS",
                 "at most one NETMASK, with an ADDRESS", f"{said(resp)} attribute types {types}")
    assert resp is not None and resp.get(c.CP) is not None, f"no CP: {said(resp)}"
    n = types.count(c.INTERNAL_IP4_NETMASK)
    assert n <= 1, f"{n} INTERNAL_IP4_NETMASK attributes"
    assert n == 0 or c.INTERNAL_IP4_ADDRESS in types, "INTERNAL_IP4_NETMASK without INTERNAL_IP4_ADDRESS"


@part("IKE.SGW-R.CP.10", "A CFG_SET in INFORMATIONAL is answered; a CFG_ACK, if any, lists attributes with empty values",
      ["rfc7296-3.15.1-f", "rfc7296-3.15.1-h"], needs=["ikev2.cp"])
def test_cfg_set_ack(ike, steps):
    s = ike.establish()
    cp = cp_payload(c.CFG_SET, [(c.INTERNAL_IP4_DNS, ipaddress.IPv4Address("192.0.2.53").packed)])
    resp = ike.exchange(s, s.informational_request([cp]))
    ack = resp.get(c.CP) if resp is not None else None
    attrs = cp_attrs(resp)
    steps.record("INFORMATIONAL: CP(CFG_SET, INTERNAL_IP4_DNS 192.0.2.53)", "a response; no CP or CFG_ACK with "
                 "zero-length values", f"{said(resp)}" + (f" CFG type {ack.fields['cfg_type']} {attrs}" if ack else ""))
    assert resp is not None and resp.response, "the INFORMATIONAL request was not answered"
    if ack is not None:
        assert ack.fields["cfg_type"] == c.CFG_ACK, f"CFG Type {ack.fields['cfg_type']} answering CFG_SET, CFG_ACK (4) expected"
        assert all(v == b"" for _, v in attrs), f"CFG_ACK attributes with values: {attrs}"
