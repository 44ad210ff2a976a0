"""The foreign agent's deviations the black-box parts (cases/conformance/mip_fa/) found, each pinned
in memory: the sans-I/O core (nodes/mip/fa.py), the link socket's UDP checksum check
(nodes/runtime/host/rawip.py) and what a stopping daemon takes back (nodes/daemons/foreign_agent.py).
One test (or a few) per part, named after it."""
from __future__ import annotations

import struct
from ipaddress import IPv4Address as A

from nodes.daemons.foreign_agent import take_back
from nodes.mip.actions import AddHostRoute, DeliverIp, RemoveHostRoute, SendIp, SendUdp
from nodes.mip.auth import SecurityAssociation
from nodes.mip.fa import ForeignAgent, ForeignAgentConfig
from nodes.runtime.host import rawip
from nodes.runtime.mip.actions import MipExecutor
from nodes.runtime.host.netlink_batch import NetlinkBatch
from nodes.wire.ipv4 import IPv4, ip_in_ip, ipv4_udp
from nodes.wire.mip import (
    EXT_ENCAPSULATING_DELIVERY, EXT_FA_HA_AUTH, EXT_MN_FA_AUTH, EXT_MN_HA_AUTH, EncapsulatingDeliveryStyle,
    RegistrationReply, RegistrationRequest, RequestFlags, UnknownExtension, encode_extension, ntp_now,
)

from fakelink import feed, udp_from

T0 = 1_700_000_000.0
FA = A("192.0.2.1")
HA = A("10.1.1.2")
HOME = A("10.1.1.100")
HOME_FA_SA = A("10.1.1.101")  # shares an MN-FA association with the FA
CN = A("10.1.2.10")
MN_HA = SecurityAssociation(1000, b"0123456789abcdef")
FA_HA = SecurityAssociation(2000, b"fa-ha-shared-key")
MN_FA = SecurityAssociation(3000, b"mn-fa-shared-key")
MAC = "02:4d:4e:00:00:01"


def _fa(**kw) -> ForeignAgent:
    cfg = dict(iface="fn1", ha_associations={HA: FA_HA}, mn_associations={HOME_FA_SA: MN_FA})
    cfg.update(kw)
    return ForeignAgent(ForeignAgentConfig(FA, **cfg))


def _request(home=HOME, lifetime=300, flags=0, coa=FA, ha=HA, now=T0, after=(), mn_fa=True) -> bytes:
    """A request signed MN-HA, then `after` (raw extension bytes), then MN-FA for HOME_FA_SA."""
    req = RegistrationRequest(flags, lifetime, home, ha, coa, ntp_now(now), [])
    data = MN_HA.sign(req.encode()) + b"".join(after)
    if home == HOME_FA_SA and mn_fa:
        data = MN_FA.sign(data, EXT_MN_FA_AUTH)
    return data


def _send(fa, data: bytes, now=T0, home=HOME, ttl=255) -> list:
    return feed(fa, "receive_datagram", data, udp_from(home, 434, FA, ttl=ttl, lladdr=MAC), now=now)


def _relayed(actions) -> list:
    return [a for a in actions if isinstance(a, SendUdp) and a.dst == HA]


def _to_mn(actions, home=HOME) -> list:
    return [a for a in actions if isinstance(a, SendUdp) and a.dst == home]


def _reply(data: bytes, home=HOME, code=0, lifetime=300, fa_ha: int = 1, after=()) -> bytes:
    """The HA's reply to relayed request bytes `data`: MN-HA, `after`, then `fa_ha` FA-HA extensions."""
    req = RegistrationRequest.decode(data)
    out = MN_HA.sign(RegistrationReply(code, lifetime, home, HA, req.identification).encode()) + b"".join(after)
    for _ in range(fa_ha):
        out = FA_HA.sign(out, EXT_FA_HA_AUTH)
    return out


def _answer(fa, reply: bytes, now=T0 + 0.1) -> list:
    return feed(fa, "receive_datagram", reply, udp_from(HA, 434, FA), now=now)


def _register(fa, home=HOME, lifetime=300, flags=0, after=(), now=T0) -> list:
    relayed = _relayed(_send(fa, _request(home, lifetime, flags, now=now, after=after), now=now, home=home))
    assert relayed, "not relayed"
    return _answer(fa, _reply(relayed[0].payload, home, lifetime=lifetime), now=now + 0.1)


def _types(payload: bytes, cls=RegistrationRequest) -> list:
    return [e.type for e in cls.decode(payload).extensions]


# ---- relaying requests ------------------------------------------------------------------------------------

def test_relay_5_extension_after_mn_ha_is_removed():
    fa = _fa()
    data = _request(after=[encode_extension(UnknownExtension(200, b"conformance"))])
    relayed = _relayed(_send(fa, data))
    assert relayed, "a request with a skippable unknown extension was not relayed"
    assert 200 not in _types(relayed[0].payload)
    end = data.index(bytes((200,)), 24)  # where ext 200 began: the bytes through MN-HA are unchanged
    assert relayed[0].payload[:end] == data[:end]


def test_relay_15_no_fa_ha_on_a_deregistration():
    fa = _fa()
    assert EXT_FA_HA_AUTH not in _types(_relayed(_send(fa, _request(lifetime=0)))[0].payload)
    # care-of address = home address is a deregistration too (3.5.4), even with a lifetime
    fa = _fa()
    relayed = _relayed(_send(fa, _request(coa=HOME, flags=RequestFlags.D)))
    assert EXT_FA_HA_AUTH not in _types(relayed[0].payload)


def test_relay_14_fa_ha_still_appended_to_an_ordinary_registration():
    relayed = _relayed(_send(_fa(), _request()))[0].payload
    assert _types(relayed)[-1] == EXT_FA_HA_AUTH


def test_relay_16_no_fa_ha_for_a_care_of_address_not_advertised():
    relayed = _relayed(_send(_fa(), _request(flags=RequestFlags.D, coa=A("192.0.2.77"))))
    assert relayed and EXT_FA_HA_AUTH not in _types(relayed[0].payload)


def test_reverse_9_encapsulating_delivery_style_is_consumed_and_used():
    fa = _fa()
    ext130 = encode_extension(EncapsulatingDeliveryStyle())
    relayed = _relayed(_send(fa, _request(flags=RequestFlags.T, after=[ext130])))
    assert relayed and EXT_ENCAPSULATING_DELIVERY not in _types(relayed[0].payload)
    back = _to_mn(_answer(fa, _reply(relayed[0].payload)))
    assert back and EXT_ENCAPSULATING_DELIVERY not in _types(back[0].payload, RegistrationReply)
    assert fa.visitors[HOME].encapsulating
    # the visitor tunnels its datagram to us (RFC 3024 5.2): it goes on to the HA in the reverse tunnel
    inner = ipv4_udp(HOME, CN, 7777, 7777, b"encapsulated")
    out = feed(fa, "receive_tunnelled", ip_in_ip(HOME, FA, inner), now=T0 + 1)
    sent = [a for a in out if isinstance(a, SendIp)]
    assert sent and IPv4.decode(sent[0].packet).dst == HA and IPv4.decode(sent[0].packet).payload == inner


def test_auth_1_mn_fa_is_not_relayed_to_the_home_agent():
    relayed = _relayed(_send(_fa(), _request(home=HOME_FA_SA), home=HOME_FA_SA))
    assert relayed, "a request with a valid MN-FA was not relayed"
    assert EXT_MN_FA_AUTH not in _types(relayed[0].payload)


def test_auth_5_two_mn_fa_extensions_are_refused_with_67():
    fa = _fa()
    data = _request(home=HOME_FA_SA, after=[])
    data = MN_FA.sign(MN_FA.sign(data[:data.rindex(bytes((EXT_MN_FA_AUTH, 20)))], EXT_MN_FA_AUTH), EXT_MN_FA_AUTH)
    assert _types(data).count(EXT_MN_FA_AUTH) == 2
    actions = _send(fa, data, home=HOME_FA_SA)
    assert not _relayed(actions), "a request with two MN-FA extensions was relayed"
    assert [RegistrationReply.decode(a.payload).code for a in _to_mn(actions, HOME_FA_SA)] == [67]


def test_self_1_home_agent_field_naming_this_agent_gets_194():
    for fa, ha in ((_fa(), FA), (_fa(local_addresses=[A("10.9.9.1")]), A("10.9.9.1"))):
        actions = _send(fa, _request(ha=ha))
        assert not [a for a in actions if isinstance(a, SendUdp) and a.dst == ha], "forwarded to itself"
        assert [RegistrationReply.decode(a.payload).code for a in _to_mn(actions)] == [194]


# ---- the FA's own denials ---------------------------------------------------------------------------------

def test_deny_7_code_76_at_most_one_per_second():
    fa = _fa()
    codes = []
    for i, at in enumerate((T0, T0 + 0.005, T0 + 0.01, T0 + 1.02)):
        actions = _send(fa, _request(flags=RequestFlags.T, now=at + i * 1e-6), now=at, ttl=64)
        assert not _relayed(actions)
        codes.append([RegistrationReply.decode(a.payload).code for a in _to_mn(actions)])
    assert codes == [[76], [], [], [76]]


def test_deny_11_denial_lifetime_is_the_requested_one():
    actions = _send(_fa(), _request(lifetime=123, coa=A("198.51.100.99")))
    rep = RegistrationReply.decode(_to_mn(actions)[0].payload)
    assert (rep.code, rep.lifetime) == (77, 123)
    fa = _fa(max_lifetime=300)  # 69 still carries the longest lifetime we accept
    rep = RegistrationReply.decode(_to_mn(_send(fa, _request(lifetime=400)))[0].payload)
    assert (rep.code, rep.lifetime) == (69, 300)


# ---- replies ----------------------------------------------------------------------------------------------

def test_reply_13_two_fa_ha_extensions_are_not_an_acceptance():
    fa = _fa()
    relayed = _relayed(_send(fa, _request()))[0].payload
    actions = _answer(fa, _reply(relayed, fa_ha=2))
    assert [RegistrationReply.decode(a.payload).code for a in _to_mn(actions)] == [68]
    assert HOME not in fa.visitors and not [a for a in actions if isinstance(a, AddHostRoute)]


def test_reply_14_accepted_deregistration_without_fa_ha_is_relayed():
    fa = _fa()
    _register(fa)
    assert HOME in fa.visitors
    relayed = _relayed(_send(fa, _request(lifetime=0, now=T0 + 5), now=T0 + 5))[0].payload
    actions = _answer(fa, _reply(relayed, lifetime=0, fa_ha=0), now=T0 + 5.1)
    assert [RegistrationReply.decode(a.payload).code for a in _to_mn(actions)] == [0]
    assert HOME not in fa.visitors and [a for a in actions if isinstance(a, RemoveHostRoute)]


def test_reply_11_an_ordinary_reply_without_fa_ha_is_still_refused():
    fa = _fa()
    relayed = _relayed(_send(fa, _request()))[0].payload
    assert [RegistrationReply.decode(a.payload).code for a in _to_mn(_answer(fa, _reply(relayed, fa_ha=0)))] == [68]


def test_auth_6_relayed_reply_carries_a_valid_mn_fa():
    fa = _fa()
    relayed = _relayed(_send(fa, _request(home=HOME_FA_SA), home=HOME_FA_SA))[0].payload
    back = _to_mn(_answer(fa, _reply(relayed, home=HOME_FA_SA)), HOME_FA_SA)
    rep = RegistrationReply.decode(back[0].payload)
    assert [e.type for e in rep.extensions] == [EXT_MN_HA_AUTH, EXT_MN_FA_AUTH]
    assert MN_FA.verifies(back[0].payload, rep.extensions[-1])


def test_silent_3_visitor_lives_the_requested_lifetime_when_the_reply_grants_more():
    fa = _fa()
    relayed = _relayed(_send(fa, _request(lifetime=1)))[0].payload
    _answer(fa, _reply(relayed, lifetime=60), now=T0 + 0.1)
    assert fa.visitors[HOME].lifetime == 1
    assert [a for a in feed(fa, "handle_timer", now=T0 + 1.2) if isinstance(a, RemoveHostRoute)]
    assert HOME not in fa.visitors


# ---- delivery ---------------------------------------------------------------------------------------------

def test_deliver_15_inner_ttl_zero_is_discarded():
    fa = _fa()
    _register(fa)
    inner = IPv4(CN, HOME, 17, b"\0" * 8, ttl=0).encode()
    assert feed(fa, "receive_tunnelled", ip_in_ip(HA, FA, inner), now=T0 + 1) == []
    assert fa.counters["drop:inner-ttl-zero"] == 1
    ok = IPv4(CN, HOME, 17, b"\0" * 8, ttl=1).encode()
    assert [type(a) for a in feed(fa, "receive_tunnelled", ip_in_ip(HA, FA, ok), now=T0 + 1)] == [DeliverIp]


# ---- the link socket's UDP checksum (RELAY.10) ------------------------------------------------------------

def _udp_ip(checksum_field: int | None = None) -> IPv4:
    packet = ipv4_udp(HOME, FA, 434, 434, b"\x01" + b"\0" * 23)
    ip = IPv4.decode(packet)
    if checksum_field is not None:
        ip.payload = ip.payload[:6] + struct.pack("!H", checksum_field) + ip.payload[8:]
    return ip


def test_relay_10_udp_checksum_checked_where_complete():
    good = _udp_ip()
    assert struct.unpack("!H", good.payload[6:8])[0] != 0
    assert rawip.udp_checksum_ok(good) and rawip.parse_udp(good, verify_checksum=True) is not None
    wrong = _udp_ip(struct.unpack("!H", good.payload[6:8])[0] ^ 0x0101)
    assert not rawip.udp_checksum_ok(wrong)
    assert rawip.parse_udp(wrong, verify_checksum=True) is None
    assert rawip.parse_udp(wrong) is not None  # unverified unless asked (other users of parse_udp)
    assert rawip.udp_checksum_ok(_udp_ip(0))  # zero: no checksum computed (RFC 768)


def test_relay_10_partial_checksum_frames_are_recognised():
    status = struct.pack("=IIIHHHH", rawip.TP_STATUS_CSUMNOTREADY | 1, 60, 60, 0, 14, 0, 0)
    assert rawip.csum_partial([(rawip.SOL_PACKET, rawip.PACKET_AUXDATA, status)])
    complete = struct.pack("=IIIHHHH", 1, 60, 60, 0, 14, 0, 0)
    assert not rawip.csum_partial([(rawip.SOL_PACKET, rawip.PACKET_AUXDATA, complete)])
    assert not rawip.csum_partial([])


# ---- a stopping daemon takes back what its visitors hold --------------------------------------------------

class _Kernel:
    def __init__(self):
        self.done = []

    def __call__(self, requests):
        self.done += [r.what for r in requests]
        return []


def test_stop_takes_back_host_routes_neighbours_and_rules():
    fa = _fa()
    _register(fa, HOME, flags=RequestFlags.T)
    _register(fa, A("10.1.1.102"), now=T0 + 0.2)
    kernel, hooked = _Kernel(), []
    ex = MipExecutor(lambda *a, **k: None, raw=None, links={}, default_iface="fn1",
                     host=NetlinkBatch(kernel, lambda name: 7))
    ex.on_host_route = hooked.append
    ex.learn("fn1", HOME, MAC)
    take_back(fa, ex, "fn1", T0 + 1)
    assert fa.visitors == {} and fa.pending == {}
    for home in (HOME, A("10.1.1.102")):
        assert f"route del {home}/32" in kernel.done and f"neighbour del {home}" in kernel.done
    assert sorted(a.addr for a in hooked if isinstance(a, RemoveHostRoute)) == [HOME, A("10.1.1.102")]
    assert "fn1" not in ex.neighbours
