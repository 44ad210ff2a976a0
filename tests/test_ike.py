"""IKEv2 initiator and responder cores joined by an in-memory link (tests/ike_fakelink.py)."""
from __future__ import annotations

import pytest
from ike_fakelink import FakeLink, Pool

from nodes.core import Addr, seeded_random
from nodes.ipsec.ike import (DeleteChildSa, Established, Failed, IkeConfig, IkeCore, IkeSaClosed, IkeSaRekeyed,
                             InstallChildSa, SendIke, UserPolicy)
from nodes.ipsec import ike_proposals as props
from nodes.wire import ikev2 as w
from nodes.wire.ikev2 import decode_message

CLIENT, GATEWAY, NAT = "198.51.100.10", "203.0.113.1", "192.0.2.99"


def gateway(ike=("aes128gcm16-prfsha256-ecp256-modp2048-curve25519",), esp=("aes128gcm16", "aes256-sha256"),
            pool=None, **kw) -> IkeCore:
    users = {
        "alice@example": UserPolicy(psk=b"alice-secret", subnets=["10.1.0.0/16"]),
        "bob@example": UserPolicy(password=b"bob-password", subnets=["10.1.0.0/16", "10.2.0.0/16"]),
    }
    return IkeCore(IkeConfig("gw.example", list(ike), list(esp), users=users, gateway_psk=b"gateway-key",
                             allocator=Pool("10.9.0.1", "10.9.0.2") if pool is None else pool,
                             dns=["10.1.0.53"], **kw))


def client(user="alice", ike=("aes128gcm16-prfsha256-ecp256",), esp=("aes128gcm16",), **kw) -> IkeCore:
    if user == "alice":
        kw.setdefault("psk", b"alice-secret")
    else:
        kw.setdefault("psk", b"gateway-key")
        kw.setdefault("eap_password", b"bob-password")
    return IkeCore(IkeConfig(f"{user}@example", list(ike), list(esp), remote_id="gw.example", **kw))


def connect(cl: IkeCore, gw: IkeCore, nat: bool = False, until: float = 60.0, **kw) -> FakeLink:
    link = FakeLink(cl, CLIENT, gw, GATEWAY, nat_addr=NAT if nat else None, **kw)
    link.call("a", "connect", GATEWAY, CLIENT)
    link.run(until=until)
    return link


def installed(link: FakeLink, side: str) -> list[InstallChildSa]:
    return link.of_type(side, InstallChildSa)


def assert_pair(a: InstallChildSa, b: InstallChildSa) -> None:
    """Two ends of one child SA: SPIs crossed, the keys of each direction identical."""
    assert (a.spi_in, a.spi_out) == (b.spi_out, b.spi_in)
    assert (a.encr_key_in, a.integ_key_in) == (b.encr_key_out, b.integ_key_out)
    assert (a.encr_key_out, a.integ_key_out) == (b.encr_key_in, b.integ_key_in)
    assert a.encr_key_in != a.encr_key_out and a.alg == b.alg


def established(link: FakeLink) -> tuple[InstallChildSa, InstallChildSa]:
    ca, cb = installed(link, "a"), installed(link, "b")
    assert len(ca) == 1 and len(cb) == 1, link.events
    assert_pair(ca[0], cb[0])
    assert link.of_type("a", Established) and link.of_type("b", Established)
    assert not link.of_type("a", Failed) and not link.of_type("b", Failed)
    return ca[0], cb[0]


# ----------------------------------------------------------------------------- establishment

@pytest.mark.parametrize("group", ["modp2048", "ecp256", "curve25519"])
@pytest.mark.parametrize("esp,keylen", [("aes128gcm16", 20), ("aes256-sha256", 32)])
@pytest.mark.parametrize("user", ["alice", "bob"])
def test_establish_psk_and_eap_md5(user, group, esp, keylen):
    link = connect(client(user, ike=[f"aes256-sha256-{group}"], esp=[esp]),
                   gateway(ike=["aes128gcm16-prfsha256-ecp256", f"aes256-sha256-{group}"]))
    a, b = established(link)
    assert len(a.encr_key_in) == keylen
    assert a.integ_key_in == b"" if "gcm" in esp else len(a.integ_key_in) == 32
    est = link.of_type("a", Established)[0]
    assert (est.virtual_ip, est.dns, est.peer_id) == ("10.9.0.1", ["10.1.0.53"], "gw.example")
    assert link.of_type("b", Established)[0].peer_id == f"{user}@example"
    assert [str(t.start) for t in a.ts_local] == ["10.9.0.1"] and a.ts_local == b.ts_remote
    assert not a.encap and a.local_port == 500
    st = link.a.status(0.0).as_dict()["ike_sas"][0]
    assert st["state"] == "established" and st["dh_group"] != 0
    assert st["children"][0]["encr_key_in"] == a.encr_key_in.hex()
    assert st["keys"]["sk_ei"] == link.b.status(0.0).as_dict()["ike_sas"][0]["keys"]["sk_ei"]


def test_nat_detected_moves_to_4500_and_follows_the_mapping():
    link = connect(client(), gateway(), nat=True)
    a, b = established(link)
    assert a.encap and b.encap and a.local_port == 4500 and b.local_port == 4500
    assert (b.peer_addr, b.peer_port) == (NAT, 14500)
    auth = [p for p in link.sent if p.to == "b" and p.dport == 4500]
    assert auth and all(p.data[:4] == w.NON_ESP_MARKER for p in auth)
    # the NAT detection travels with the child SA to the data plane (the core decides it, once)
    assert (a.nat_local, a.nat_remote, b.nat_local, b.nat_remote) == (True, False, False, True)


def test_a_host_behind_a_nat_does_not_follow_the_peers_new_port():
    """RFC 7296 2.23: the side behind the NAT (A here) knows it from the NAT_DETECTION notifies and
    keeps the peer's address and port when a valid request comes from another port (it answers
    there); the side in front of the NAT follows the mapping."""
    link = connect(client(), gateway(), nat=True)
    established(link)
    (ca,), (cb,) = link.a.sas.values(), link.b.sas.values()
    assert (ca.nat_local, ca.nat_remote, cb.nat_local, cb.nat_remote) == (True, False, False, True)
    link.b.check_liveness(now=link.now)
    dpd = next(a for a in link.b.drain_actions() if isinstance(a, SendIke))
    answer = link.deliver("a", dpd.data, GATEWAY, 4501, CLIENT, 4500)
    assert [(x.dst, x.dport) for x in answer if isinstance(x, SendIke)] == [(GATEWAY, 4501)]
    assert (ca.peer_addr, ca.peer_port) == (GATEWAY, 4500)


def test_ike_on_4500_without_a_nat_leaves_esp_unencapsulated():
    """RFC 7296 2.23: a peer may move IKE to 4500 with no NAT between (strongSwan does, for MOBIKE);
    ESP's encapsulation follows the NAT detection, not IKE's port (a kernel-XFRM peer drops
    UDP-encapsulated ESP on an SA it set up without a NAT)."""
    link = connect(client(), gateway())
    _, child = established(link)
    (sa,) = link.b.sas.values()
    assert not child.encap and not sa.encap and not (sa.nat_local or sa.nat_remote)
    link.a.check_liveness(now=link.now + 60)
    dpd = next(x for x in link.a.drain_actions() if isinstance(x, SendIke))
    answer = link.deliver("b", w.NON_ESP_MARKER + dpd.data, CLIENT, 4500, GATEWAY, 4500)
    assert [(x.dst, x.dport) for x in answer if isinstance(x, SendIke)] == [(CLIENT, 4500)]
    assert sa.local_port == 4500 and not sa.encap
    assert not any(getattr(x, "encap", False) for x in answer), answer


def test_forced_encapsulation_like_kernel_libipsec():
    link = connect(client(force_encap=True), gateway())
    a, b = established(link)
    assert a.encap and b.encap and a.peer_port == 4500


# ----------------------------------------------------------------------------- failures

@pytest.mark.parametrize("user,kw,reason", [
    ("alice", {"psk": b"wrong"}, "pre-shared key"),
    ("bob", {"eap_password": b"wrong"}, "EAP-MD5"),
    ("mallory", {"psk": b"alice-secret"}, "unknown identity"),
])
def test_authentication_failed_installs_nothing(user, kw, reason):
    link = connect(client(user, **kw), gateway())
    assert not installed(link, "a") and not installed(link, "b")
    fa, fb = link.of_type("a", Failed), link.of_type("b", Failed)
    assert fa and fa[0].notify == w.N_AUTHENTICATION_FAILED
    assert fb and reason in fb[0].reason
    assert not link.of_type("a", Established) and not link.a.sas


def test_client_rejects_gateway_with_wrong_key():
    link = connect(client("bob", psk=b"not-the-gateway-key"), gateway())
    assert link.of_type("a", Failed)[0].reason == "responder AUTH does not verify"
    assert not installed(link, "a") and not installed(link, "b")


def test_invalid_ke_payload_retry_with_the_responders_group():
    link = connect(client(ike=["aes128gcm16-prfsha256-curve25519-modp2048"]),
                   gateway(ike=["aes128gcm16-prfsha256-modp2048"]))
    established(link)
    inits = [p for p in link.sent if w.decode_header(p.data).exchange == w.IKE_SA_INIT]
    assert len(inits) == 4  # request, INVALID_KE, request with group 14, response
    reply = w.decode_message(inits[1].data)
    assert reply.notify(w.N_INVALID_KE_PAYLOAD).data == b"\x00\x0e"
    assert w.decode_message(inits[2].data).get(w.KeyExchange).group == 14


def test_no_proposal_chosen_for_ike_and_for_esp():
    link = connect(client(ike=["aes256gcm16-prfsha256-ecp256"]), gateway(ike=["aes128-sha256-ecp256"]))
    assert link.of_type("a", Failed)[0].notify == w.N_NO_PROPOSAL_CHOSEN and not link.b.sas
    link = connect(client(esp=["aes256gcm16"]), gateway(esp=["aes128gcm16"]))
    assert link.of_type("a", Failed)[0].notify == w.N_NO_PROPOSAL_CHOSEN
    assert not installed(link, "a") and not installed(link, "b")
    assert link.of_type("a", IkeSaClosed) and not link.a.sas and not link.b.sas  # client deleted the IKE SA


def test_address_pool_exhausted_gives_internal_address_failure():
    gw = gateway(pool=Pool("10.9.0.1"))
    first = connect(client(), gw)
    established(first)
    second = connect(client("bob"), gw)
    assert second.of_type("a", Failed)[0].notify == w.N_INTERNAL_ADDRESS_FAILURE
    assert not installed(second, "a") and not installed(second, "b")


def test_traffic_selector_narrowing_and_ts_unacceptable():
    link = connect(client("bob", remote_ts=["10.0.0.0/8"]), gateway())
    a, _ = established(link)
    assert [(str(t.start), str(t.end)) for t in a.ts_remote] == [("10.1.0.0", "10.1.255.255"),
                                                                  ("10.2.0.0", "10.2.255.255")]
    assert link.of_type("a", Established)[0].subnets == ["10.1.0.0/16", "10.2.0.0/16"]
    link = connect(client(remote_ts=["192.168.0.0/16"]), gateway())
    assert link.of_type("a", Failed)[0].notify == w.N_TS_UNACCEPTABLE
    assert not installed(link, "a") and not installed(link, "b")


# ----------------------------------------------------------------------------- after establishment

@pytest.mark.parametrize("esp", ["aes128gcm16", "aes128gcm16-curve25519"])
def test_child_rekey_with_and_without_pfs(esp):
    link = connect(client(esp=[esp]), gateway(esp=[esp]))
    old, _ = established(link)
    link.call("a", "rekey_child")
    link.run(until=link.now + 30)
    new_a, new_b = installed(link, "a")[1], installed(link, "b")[1]
    assert_pair(new_a, new_b)
    assert new_a.replaces == old.spi_in and new_b.replaces == old.spi_out
    assert new_a.encr_key_in != old.encr_key_in
    assert [d.spi_in for d in link.of_type("a", DeleteChildSa)] == [old.spi_in]
    assert [d.spi_in for d in link.of_type("b", DeleteChildSa)] == [old.spi_out]
    assert len(link.a.status(0.0).as_dict()["ike_sas"][0]["children"]) == 1


def test_ike_rekey_keeps_children_and_the_new_sa_works():
    link = connect(client(), gateway())
    child, _ = established(link)
    old_name = link.a.status(0.0).as_dict()["ike_sas"][0]["name"]
    link.call("a", "rekey_ike")
    link.run(until=link.now + 30)
    ra, rb = link.of_type("a", IkeSaRekeyed), link.of_type("b", IkeSaRekeyed)
    assert len(ra) == 1 and len(rb) == 1 and ra[0].old == old_name
    assert not link.of_type("a", IkeSaClosed) and not link.of_type("b", IkeSaClosed)
    assert not link.of_type("a", DeleteChildSa)
    sas_a, sas_b = link.a.status(0.0).as_dict()["ike_sas"], link.b.status(0.0).as_dict()["ike_sas"]
    assert len(sas_a) == 1 and len(sas_b) == 1 and sas_a[0]["name"] == ra[0].new
    assert sas_a[0]["keys"] == sas_b[0]["keys"] and sas_a[0]["children"][0]["spi_in"] == f"{child.spi_in:08x}"
    link.call("b", "rekey_child")  # now the gateway starts an exchange on the new IKE SA
    link.run(until=link.now + 30)
    assert_pair(installed(link, "a")[1], installed(link, "b")[1])


@pytest.mark.parametrize("side", ["a", "b"])
def test_a_child_rekey_queued_behind_an_ike_rekey_moves_to_the_new_ike_sa(side):
    """RFC 7296 2.8: both rekeys fall due at once; the child rekey waits behind the
    IKE rekey on the old IKE SA and must then run on the new one, not be lost."""
    timers = {"child_rekey_after": 10, "ike_rekey_after": 10}
    link = connect(client(**timers) if side == "a" else client(),
                   gateway(**timers) if side == "b" else gateway(), until=5)
    old, _ = established(link)
    link.run(until=15)
    assert len(link.of_type(side, IkeSaRekeyed)) == 1
    other = "b" if side == "a" else "a"
    rekeyed_a, rekeyed_b = installed(link, "a")[1:], installed(link, "b")[1:]
    assert len(rekeyed_a) == 1 and len(rekeyed_b) == 1, (rekeyed_a, rekeyed_b)
    assert_pair(rekeyed_a[0], rekeyed_b[0])
    assert rekeyed_a[0].replaces == old.spi_in
    assert [d.spi_in for d in link.of_type("a", DeleteChildSa)] == [old.spi_in]
    assert rekeyed_a[0].ike_sa == link.of_type("a", IkeSaRekeyed)[0].new  # on the new IKE SA
    assert len(link.of_type(other, IkeSaRekeyed)) == 1


def test_delete_closes_both_sides_and_releases_the_address():
    pool = Pool("10.9.0.1")
    link = connect(client(), gateway(pool=pool))
    a, b = established(link)
    link.call("a", "close")
    link.run(until=link.now + 30)
    assert link.of_type("a", IkeSaClosed) and link.of_type("b", IkeSaClosed)
    assert [d.spi_in for d in link.of_type("a", DeleteChildSa)] == [a.spi_in]
    assert [d.spi_in for d in link.of_type("b", DeleteChildSa)] == [b.spi_in]
    assert pool.released == ["10.9.0.1"] and not link.a.sas and not link.b.sas


def test_reset_forgets_every_sa_without_a_word_to_the_peer():
    """A tester's reset between test parts: the gateway's IKE and child SAs go, the address returns
    to the pool, and nothing is sent (the peer learns of it only by its next message)."""
    pool = Pool("10.9.0.1")
    link = connect(client(), gateway(pool=pool))
    _, b = established(link)
    sent_before = len(link.sent)
    link.call("b", "reset")
    assert [d.spi_in for d in link.of_type("b", DeleteChildSa)] == [b.spi_in]
    assert link.of_type("b", IkeSaClosed) and not link.b.sas and pool.released == ["10.9.0.1"]
    assert len(link.sent) == sent_before and not link.of_type("a", IkeSaClosed), "the peer was told"


def test_delete_single_child_from_the_gateway():
    link = connect(client(), gateway())
    a, b = established(link)
    link.call("b", "delete_child", b.spi_in)
    link.run(until=link.now + 30)
    assert [d.spi_in for d in link.of_type("a", DeleteChildSa)] == [a.spi_in]
    assert link.a.status(0.0).as_dict()["ike_sas"][0]["state"] == "established"


def test_dpd_notices_a_dead_gateway():
    link = connect(client(dpd_interval=10, retransmit_timeout=1, retransmit_tries=3), gateway())
    established(link)
    link.run(until=link.now + 25)  # liveness checks answered
    assert not link.of_type("a", IkeSaClosed)
    start = link.now
    link.dead.add("b")
    link.run(until=link.now + 100)
    closed = link.of_type("a", IkeSaClosed)
    assert closed and closed[0].reason == "peer unreachable"
    assert link.of_type("a", DeleteChildSa)
    assert link.now - start <= 10 + 1 + 2 + 4 + 8 + 1


def test_retransmission_under_loss_and_cached_responses():
    lost = {0, 3, 5}  # first IKE_SA_INIT request, first IKE_AUTH response, ...
    link = connect(client(retransmit_timeout=0.5), gateway(), drop=lambda p: p.n in lost)
    established(link)
    assert link.b.drops["retransmitted_request"] >= 1


def test_reordered_duplicates_are_harmless():
    dup = {"done": False}

    def hold(p):
        if not dup["done"] and p.to == "b" and w.decode_header(p.data[4:] if p.dport == 4500 else p.data).exchange \
                == w.IKE_AUTH:
            dup["done"] = True
            return True
        return False

    link = connect(client(retransmit_timeout=0.5, force_encap=True), gateway(), hold=hold)
    established(link)


def test_gives_up_when_nobody_answers():
    cl = client(retransmit_timeout=1, retransmit_tries=2)
    link = FakeLink(cl, CLIENT, gateway(), GATEWAY, dead={"b"})
    link.call("a", "connect", GATEWAY, CLIENT)
    link.run(until=100)
    assert link.of_type("a", Failed)[0].reason == "peer did not answer"
    assert len([p for p in link.sent if p.to == "b"]) == 3 and not cl.sas


def test_garbage_is_counted_not_fatal():
    link = connect(client(), gateway())
    established(link)
    for junk in (b"", b"\x00" * 3, b"\x00\x00\x00\x00" + b"x" * 40, b"\xff", bytes(60)):
        link.deliver("b", junk, CLIENT, 4500, GATEWAY, 4500)
        link.deliver("b", junk, CLIENT, 500, GATEWAY, 500)
    assert sum(link.b.drops.values()) >= 5
    link.call("a", "check_liveness")
    link.run(until=link.now + 10)
    assert link.b.status(0.0).as_dict()["ike_sas"][0]["state"] == "established" and not link.of_type("a", IkeSaClosed)


def _answers(actions) -> list:
    return [decode_message(a.data) for a in actions if hasattr(a, "data")]


def test_requests_outside_an_sa_get_an_unprotected_answer():
    """RFC 7296 1.5: a request of a higher major version gets INVALID_MAJOR_VERSION, an encrypted
    request for an unknown IKE SPI INVALID_IKE_SPI; SPIs, Message ID and exchange copied, R set; a
    response gets nothing (no message loop)."""
    gw = gateway()
    spi_i, spi_r = b"\x11" * 8, b"\x22" * 8

    def hdr(version: int, exchange: int, flags: int, mid: int, nxt: int = w.PT_SK) -> bytes:
        body = bytes([w.PT_NONE, 0, 0, 8]) + b"\0" * 4
        return spi_i + spi_r + bytes([nxt, version, exchange, flags]) + mid.to_bytes(4, "big") + (28 + len(body)).to_bytes(4, "big") + body
    for data, ntype in ((hdr(0x30, w.IKE_SA_INIT, w.FLAG_INITIATOR, 0, w.PT_NONE), w.N_INVALID_MAJOR_VERSION),
                        (hdr(0x20, w.INFORMATIONAL, w.FLAG_INITIATOR, 7), w.N_INVALID_IKE_SPI)):
        gw.receive_datagram(data, Addr(CLIENT, 500, GATEWAY, 500), 0.0)
        (answer,) = _answers(gw.drain_actions())
        assert (answer.spi_i, answer.spi_r, answer.exchange, answer.message_id) == (spi_i, spi_r, data[18], int.from_bytes(data[20:24], "big"))
        assert answer.response and [p.type for p in answer.payloads] == [ntype] and not answer.encrypted
    gw.receive_datagram(hdr(0x20, w.INFORMATIONAL, w.FLAG_RESPONSE, 7), Addr(CLIENT, 500, GATEWAY, 500), 0.0)
    assert _answers(gw.drain_actions()) == []


def test_esn_is_never_configured_nor_accepted():
    """The ESP SA has 32-bit sequence numbers only, so ESN (RFC 4303 appendix A) may be
    neither configured nor chosen from a peer's proposal that offers only ESN."""
    with pytest.raises(props.ProposalError, match="extended sequence numbers"):
        props.parse_suite("aes128gcm16-esn", w.PROTO_ESP)
    ours = props.parse_suites(["aes128gcm16", "aes256gcm16-noesn"], w.PROTO_ESP)
    assert not any(s.esn for s in ours)
    esn_only = w.Proposal(1, w.PROTO_ESP, b"\x00\x00\x00\x01",
                          [w.Transform(w.TT_ENCR, w.ENCR_AES_GCM_16, 128), w.Transform(w.TT_ESN, 1)])
    assert not any(props._matches(s, esn_only, w.PROTO_ESP, dh_required=False) for s in ours)


def test_cookie_demanded_when_half_open_and_the_initiator_retries_with_it():
    """RFC 7296 2.6: with cookies demanded (threshold 0), the first IKE_SA_INIT gets only N(COOKIE) and
    leaves no state; the initiator repeats the request with the cookie first and is served."""
    gw = gateway(cookie_threshold=0)
    link = connect(client(), gw)
    established(link)
    inits = [decode_message(p.data) for p in link.sent if p.to == "a" and p.data[18] == w.IKE_SA_INIT]
    assert [m.payloads[0].type for m in inits[:1] if isinstance(m.payloads[0], w.Notify)] == [w.N_COOKIE]
    retried = [decode_message(p.data) for p in link.sent if p.to == "b" and p.data[18] == w.IKE_SA_INIT]
    assert len(retried) == 2 and isinstance(retried[1].payloads[0], w.Notify) \
        and retried[1].payloads[0].type == w.N_COOKIE and retried[1].payloads[0].data == inits[0].payloads[0].data


def test_flood_of_spoofed_inits_costs_no_state_beyond_the_threshold():
    """Spoofed IKE_SA_INIT requests from many sources: half-open SAs stop at the threshold, the rest get a
    cookie (no DH, no state), a forged or replayed cookie is dropped, and a real client still gets in."""
    gw = gateway(cookie_threshold=4, half_open_max=8)
    spoofer = client()
    for n in range(50):
        spoofer.connect(GATEWAY, f"198.51.100.{n + 1}", now=0.0)
        (req,) = [a for a in spoofer.drain_actions() if isinstance(a, SendIke)]
        gw.receive_datagram(req.data, Addr(f"198.51.100.{n + 1}", 500, GATEWAY, 500), 0.0)
        gw.drain_actions()
    snap = gw.status(0.0).as_dict()
    assert snap["drops"].get("cookie", 0) == 46 and snap["half_open"] == 4, snap["drops"]
    forged = w.Message(b"\x01" * 8, bytes(8), w.IKE_SA_INIT, 0,
                       [w.Notify(w.N_COOKIE, b"\x00" * 17)] + decode_message(req.data).payloads, initiator=True)
    gw.receive_datagram(forged.encode(), Addr("198.51.100.200", 500, GATEWAY, 500), 0.0)
    assert gw.status(0.0).as_dict()["drops"].get("invalid_cookie") == 1
    established(connect(client(), gw))


def test_a_peer_asking_for_pfs_is_served_by_default_proposals():
    """A client whose ESP proposal carries a DH group (PFS, as strongSwan's with
    esp_proposals = aes128gcm16-ecp256) rekeys its child SA against a gateway configured with the
    default proposals, which name no group: the rekey carries a KE payload and succeeds."""
    gw = IkeCore(IkeConfig("gw.example", users={"alice@example": UserPolicy(psk=b"alice-secret")},
                           allocator=Pool("10.9.0.1", "10.9.0.2")))
    link = connect(client(esp=["aes128gcm16-ecp256"]), gw)
    old, _ = established(link)
    link.call("a", "rekey_child")
    link.run(until=link.now + 30)
    new_a, new_b = installed(link, "a")[1], installed(link, "b")[1]
    assert_pair(new_a, new_b)
    assert new_a.replaces == old.spi_in
    assert any(p.to == "b" and p.data[18] == w.CREATE_CHILD_SA for p in link.sent)
    assert new_a.encr_key_in != old.encr_key_in and not link.of_type("a", Failed)


def test_default_proposals_take_strongswans_defaults():
    """AES-256-GCM for ESP and AES-CBC for IKE are accepted without configuration."""
    gw = IkeCore(IkeConfig("gw.example", users={"alice@example": UserPolicy(psk=b"alice-secret")},
                           allocator=Pool("10.9.0.1", "10.9.0.2")))
    established(connect(client(ike=["aes256-sha256-prfsha256-modp2048"], esp=["aes256gcm16"]), gw))


def test_a_refused_child_sa_is_logged_with_the_proposals_and_counted():
    """NO_PROPOSAL_CHOSEN for the child in IKE_AUTH shows in the gateway's drop
    counters and its log names what was offered and what is configured."""
    gw = gateway(esp=["aes128gcm16"])
    connect(client(esp=["aes256-sha256"]), gw)
    snap = gw.status(0.0).as_dict()
    assert snap["drops"].get("child_refused_no_proposal_chosen") == 1, snap["drops"]
    line = next(e for e in snap["events"] if "child SA refused" in e)
    assert "NO_PROPOSAL_CHOSEN" in line and "offered #1 ESP ENCR 12/256 INTEG 12" in line and "configured aes128gcm16" in line


@pytest.mark.parametrize("seed", range(6))
def test_simultaneous_child_rekey_leaves_one_child_sa(seed):
    """RFC 7296 2.8.1: both ends rekey the same child SA at once. Each answers the
    other's request, so two new child SAs exist; the one whose exchange holds the lowest of the four
    nonces is deleted by its creator, the old one by the other end: one pair of SAs remains."""
    cl, gw = client(), gateway()
    cl.ctx.random = gw.ctx.random = seeded_random(seed)  # different nonces per seed: either side may lose
    link = connect(cl, gw)
    established(link)
    link.call("a", "rekey_child")
    link.call("b", "rekey_child")
    link.run(until=link.now + 30)
    a_sa, b_sa = link.a.status(0.0).as_dict()["ike_sas"][0], link.b.status(0.0).as_dict()["ike_sas"][0]
    assert len(a_sa["children"]) == 1 and len(b_sa["children"]) == 1, (a_sa["children"], b_sa["children"])
    ca, cb = a_sa["children"][0], b_sa["children"][0]
    assert (ca["spi_in"], ca["spi_out"]) == (cb["spi_out"], cb["spi_in"])
    events = link.a.status(0.0).as_dict()["events"] + link.b.status(0.0).as_dict()["events"]
    assert sum("rekey collision lost" in e for e in events) == 1, events
