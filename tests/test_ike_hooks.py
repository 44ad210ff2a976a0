"""The IKE core's public hooks that the gateway daemon and the strongSwan interop cases rely on
(nodes/ipsec/ike.py): a per-user gateway key (`UserPolicy.gateway_psk`), `IkeConfig.unique =
"replace"`, `close_ike_sa(name, now, *, reason, notify_peer)`, and the IKE-rekey retry after an
INVALID_KE_PAYLOAD with the group the responder asks for. Two cores joined by tests/ike_fakelink.py,
as in tests/test_ike.py."""
from __future__ import annotations

from ike_fakelink import FakeLink, Pool

from nodes.ipsec.ike import (DeleteChildSa, Established, Failed, IkeConfig, IkeCore, IkeSaClosed, IkeSaRekeyed,
                             InstallChildSa, SendIke, UserPolicy)
from nodes.wire import ikev2 as w

CLIENT, CLIENT2, GATEWAY = "198.51.100.10", "198.51.100.11", "203.0.113.1"
IKE = "aes128gcm16-prfsha256-ecp256-modp2048"


def gateway(users=None, pool=None, ike=(IKE,), **kw) -> IkeCore:
    users = users if users is not None else {
        "alice@example": UserPolicy(psk=b"alice-secret", subnets=["10.1.0.0/16"]),
        "bob@example": UserPolicy(password=b"bob-password", subnets=["10.1.0.0/16"], gateway_psk=b"bob-gw-key"),
        "carol@example": UserPolicy(password=b"carol-password", subnets=["10.1.0.0/16"]),
    }
    kw.setdefault("gateway_psk", b"gateway-key")
    return IkeCore(IkeConfig("gw.example", list(ike), ["aes128gcm16"], users=users,
                             allocator=Pool("10.9.0.1", "10.9.0.2") if pool is None else pool, **kw))


def client(user="alice", ike=(IKE,), **kw) -> IkeCore:
    if user == "alice":
        kw.setdefault("psk", b"alice-secret")
    else:
        kw.setdefault("eap_password", f"{user}-password".encode())
    return IkeCore(IkeConfig(f"{user}@example", list(ike), ["aes128gcm16"], remote_id="gw.example", **kw))


def connect(cl: IkeCore, gw: IkeCore, addr: str = CLIENT, now: float = 0.0, **kw) -> FakeLink:
    link = FakeLink(cl, addr, gw, GATEWAY, now=now, **kw)
    link.call("a", "connect", GATEWAY, addr)
    link.run(until=now + 60)
    return link


def up(link: FakeLink) -> tuple[InstallChildSa, InstallChildSa]:
    ca, cb = link.of_type("a", InstallChildSa), link.of_type("b", InstallChildSa)
    assert len(ca) == 1 and len(cb) == 1, link.events
    assert (ca[0].spi_in, ca[0].spi_out) == (cb[0].spi_out, cb[0].spi_in)
    assert link.of_type("a", Established) and link.of_type("b", Established)
    assert not link.of_type("a", Failed) and not link.of_type("b", Failed)
    return ca[0], cb[0]


def sa_names(core: IkeCore, state: str = "established") -> list[str]:
    return [sa["name"] for sa in core.status(0.0).as_dict()["ike_sas"] if sa["state"] == state]


def plain(data: bytes) -> bytes:
    """The IKE message of a datagram (without the non-ESP marker on port 4500)."""
    return data[4:] if data[:4] == b"\x00\x00\x00\x00" else data


# ----------------------------------------------------------------------------- UserPolicy.gateway_psk

def test_eap_user_with_own_gateway_psk_is_answered_with_that_key():
    link = connect(client("bob", psk=b"bob-gw-key"), gateway())
    up(link)
    assert link.of_type("b", Established)[0].peer_id == "bob@example"


def test_eap_user_with_own_gateway_psk_rejects_the_config_wide_key():
    """bob expects the gateway to prove the global key: the gateway uses bob's own key instead."""
    link = connect(client("bob", psk=b"gateway-key"), gateway())
    assert link.of_type("a", Failed)[0].reason == "responder AUTH does not verify"
    assert not link.of_type("a", InstallChildSa) and not link.of_type("b", InstallChildSa)


def test_eap_user_without_own_gateway_psk_falls_back_to_the_config_key():
    link = connect(client("carol", psk=b"gateway-key"), gateway())
    up(link)
    link = connect(client("carol", psk=b"bob-gw-key"), gateway())
    assert link.of_type("a", Failed)[0].reason == "responder AUTH does not verify"


def test_eap_user_with_no_gateway_key_anywhere_gets_authentication_failed():
    link = connect(client("carol", psk=b"gateway-key"), gateway(gateway_psk=None))
    failed = link.of_type("b", Failed)[0]
    assert failed.notify == w.N_AUTHENTICATION_FAILED and "no AUTH and no EAP password" in failed.reason
    assert link.of_type("a", Failed)[0].notify == w.N_AUTHENTICATION_FAILED
    assert not link.of_type("a", InstallChildSa) and not link.of_type("b", InstallChildSa)
    # bob still has his own key
    up(connect(client("bob", psk=b"bob-gw-key"), gateway(gateway_psk=None)))


# ----------------------------------------------------------------------------- unique = "replace"

def test_unique_replace_closes_the_older_ike_sa_of_the_same_identity():
    pool = Pool("10.9.0.1", "10.9.0.2")
    gw = gateway(pool=pool, unique="replace")
    first = connect(client(), gw)
    old_child_a, old_child_b = up(first)
    old_name = sa_names(gw)[0]
    # the same user again (restarted, or from another address): no Delete of the old SA reaches G first
    second = connect(client(), gw, addr=CLIENT2, now=first.now + 1)
    new_child_a, new_child_b = up(second)
    new_spis = [(sa["spi_i"], sa["spi_r"]) for sa in second.a.status(0.0).as_dict()["ike_sas"]]
    assert [(sa["spi_i"], sa["spi_r"]) for sa in gw.status(0.0).as_dict()["ike_sas"]] == new_spis
    assert old_name not in sa_names(gw)
    # G's events: the new tunnel first, then the old one closed with its child and its address
    events = [e for e in second.events["b"] if isinstance(e, (Established, IkeSaClosed, DeleteChildSa))]
    assert [type(e) for e in events] == [Established, DeleteChildSa, IkeSaClosed], events
    assert events[1].spi_in == old_child_b.spi_in
    assert events[2].ike_sa == old_name and events[2].peer_id == "alice@example"
    assert "replaced" in events[2].reason and events[2].virtual_ip == "10.9.0.1"
    assert pool.released == ["10.9.0.1"]
    assert second.of_type("b", Established)[0].virtual_ip == "10.9.0.2"
    # a Delete went to the old peer's address; fed to the old client, it closes there too
    to_old = [p for p in second.sent if p.dst == CLIENT]
    assert len(to_old) == 1, to_old
    p = to_old[0]
    first.now = second.now
    first.deliver("a", p.data, p.src, p.sport, p.dst, p.dport)
    assert first.of_type("a", IkeSaClosed) and [d.spi_in for d in first.of_type("a", DeleteChildSa)] == \
        [old_child_a.spi_in]
    assert not first.a.sas


def test_unique_replace_keeps_other_identities_and_default_keeps_both():
    gw = gateway(unique="replace")
    alice = connect(client(), gw)
    up(alice)
    bob = connect(client("bob", psk=b"bob-gw-key"), gw, addr=CLIENT2, now=alice.now + 1)
    up(bob)
    assert len(sa_names(gw)) == 2 and not bob.of_type("b", IkeSaClosed)

    gw = gateway()  # unique = "no" (the default): a second SA of the same identity coexists
    first = connect(client(), gw)
    up(first)
    second = connect(client(), gw, addr=CLIENT2, now=first.now + 1)
    up(second)
    assert len(sa_names(gw)) == 2 and not second.of_type("b", IkeSaClosed)
    assert not [p for p in second.sent if p.dst == CLIENT]


# ----------------------------------------------------------------------------- close_ike_sa

def test_close_ike_sa_notifies_the_peer_and_closes_at_once():
    pool = Pool("10.9.0.1")
    link = connect(client(), gateway(pool=pool))
    a, b = up(link)
    name = sa_names(link.b)[0]
    sent_before = len(link.sent)
    actions = link.call("b", "close_ike_sa", name, reason="operator request")
    sends = [x for x in actions if isinstance(x, SendIke)]
    assert len(sends) == 1 and sends[0].dst == CLIENT
    msg = w.decode_message(plain(sends[0].data), next(iter(link.a.sas.values())).cipher_in)
    assert msg.exchange == w.INFORMATIONAL and msg.get(w.Delete).protocol == w.PROTO_IKE
    closed = [x for x in actions if isinstance(x, IkeSaClosed)]
    assert closed == [IkeSaClosed(name, "operator request", "alice@example", "10.9.0.1")]
    assert [x.spi_in for x in actions if isinstance(x, DeleteChildSa)] == [b.spi_in]
    assert not link.b.sas and pool.released == ["10.9.0.1"]  # gone right away, nothing to retransmit
    assert link.b.next_deadline() is None
    link.run(until=link.now + 60)
    assert link.of_type("a", IkeSaClosed) and [d.spi_in for d in link.of_type("a", DeleteChildSa)] == [a.spi_in]
    assert not link.a.sas
    assert len([p for p in link.sent[sent_before:] if p.to == "a"]) == 1  # the Delete, never retransmitted


def test_close_ike_sa_without_notifying_the_peer():
    link = connect(client(), gateway())
    up(link)
    actions = link.call("b", "close_ike_sa", sa_names(link.b)[0], reason="gone quietly", notify_peer=False)
    assert not [x for x in actions if isinstance(x, SendIke)]
    assert [x.reason for x in actions if isinstance(x, IkeSaClosed)] == ["gone quietly"]
    assert not link.b.sas
    link.run(until=link.now + 60)
    assert sa_names(link.a) and not link.of_type("a", IkeSaClosed)  # the client has heard nothing


def test_close_ike_sa_with_an_exchange_in_flight_sends_no_delete():
    link = connect(client(retransmit_timeout=1), gateway())
    up(link)
    link.a.check_liveness(link.now)  # a liveness check outstanding (its packet never leaves)
    link.a.drain_actions()
    actions = link.call("a", "close_ike_sa", sa_names(link.a)[0])
    assert not [x for x in actions if isinstance(x, SendIke)]
    assert [x.reason for x in actions if isinstance(x, IkeSaClosed)] == ["closed"]
    assert not link.a.sas and link.a.next_deadline() is None  # no retransmission of the liveness check


def test_close_ike_sa_of_an_unknown_name_does_nothing():
    link = connect(client(), gateway())
    up(link)
    actions = link.call("b", "close_ike_sa", "0123456789abcdef", reason="no such SA")
    assert not [x for x in actions if isinstance(x, (SendIke, IkeSaClosed, DeleteChildSa))]
    assert len(sa_names(link.b)) == 1


# ----------------------------------------------------------------------------- IKE rekey and INVALID_KE_PAYLOAD

def _create_child_messages(link: FakeLink, old_a, start: int) -> list[tuple[str, w.Message]]:
    """The CREATE_CHILD_SA exchanges sent after `start` on the client's old IKE SA, decrypted."""
    out = []
    for p in link.sent[start:]:
        data = plain(p.data)
        if w.decode_header(data).exchange != w.CREATE_CHILD_SA:
            continue
        cipher = old_a.cipher_out if p.to == "b" else old_a.cipher_in
        out.append((p.to, w.decode_message(data, cipher)))
    return out


def test_ike_rekey_retries_with_the_group_the_responder_asks_for():
    link = connect(client(), gateway())
    child, _ = up(link)
    old_a = next(iter(link.a.sas.values()))
    assert old_a.suite.dh == 19  # ecp256 negotiated
    # the responder no longer takes ecp256 for the new IKE SA (as after a reload): it asks for modp2048
    link.b.ctx.ike_suites = [s for s in link.b.ctx.ike_suites if s.dh == 14]
    start = len(link.sent)
    link.call("a", "rekey_ike")
    link.run(until=link.now + 30)
    exchanges = _create_child_messages(link, old_a, start)
    assert [to for to, _ in exchanges] == ["b", "a", "b", "a"], exchanges
    (_, req1), (_, resp1), (_, req2), (_, resp2) = exchanges
    assert req1.get(w.KeyExchange).group == 19
    assert resp1.notify(w.N_INVALID_KE_PAYLOAD).data == b"\x00\x0e"
    assert req2.get(w.KeyExchange).group == 14
    assert resp2.get(w.KeyExchange).group == 14 and resp2.get(w.SecurityAssociation) is not None
    ra, rb = link.of_type("a", IkeSaRekeyed), link.of_type("b", IkeSaRekeyed)
    assert len(ra) == 1 and len(rb) == 1 and ra[0].old == old_a.name
    sas_a, sas_b = link.a.status(0.0).as_dict()["ike_sas"], link.b.status(0.0).as_dict()["ike_sas"]
    assert len(sas_a) == 1 and len(sas_b) == 1 and sas_a[0]["name"] == ra[0].new
    assert sas_a[0]["dh_group"] == 14 and sas_a[0]["keys"] == sas_b[0]["keys"]
    assert sas_a[0]["children"][0]["spi_in"] == f"{child.spi_in:08x}"  # the child moved, unchanged
    assert any("INVALID_KE_PAYLOAD, retrying with group 14" in e for e in link.a.status(0.0).as_dict()["events"])
    link.call("b", "rekey_child")  # the new IKE SA works
    link.run(until=link.now + 30)
    assert len(link.of_type("a", InstallChildSa)) == 2 and len(link.of_type("b", InstallChildSa)) == 2


def _answer_rekey_with_invalid_ke(link: FakeLink, old_b, groups: list[int]) -> list[w.Message]:
    """A misbehaving responder: each CREATE_CHILD_SA request of the client's rekey is answered with
    INVALID_KE_PAYLOAD asking for the next of `groups` (the real gateway core does not see them).
    The requests seen, decrypted."""
    link.dead.add("b")
    requests = []
    start = len(link.sent)
    link.call("a", "rekey_ike")
    for group in groups:
        pkts = [p for p in link.sent[start:] if p.to == "b"]
        if not pkts:
            break
        start = len(link.sent)
        req = w.decode_message(plain(pkts[0].data), old_b.cipher_in)
        requests.append(req)
        reply = w.Message(req.spi_i, req.spi_r, w.CREATE_CHILD_SA, req.message_id,
                          [w.Notify(w.N_INVALID_KE_PAYLOAD, group.to_bytes(2, "big"))], response=True)
        p = pkts[0]
        link.deliver("a", reply.encode(old_b.cipher_out), p.dst, p.dport, p.src, p.sport)
    return requests


def test_ike_rekey_does_not_retry_with_a_group_it_does_not_offer():
    link = connect(client(), gateway())
    child, _ = up(link)
    old_a, old_b = next(iter(link.a.sas.values())), next(iter(link.b.sas.values()))
    requests = _answer_rekey_with_invalid_ke(link, old_b, [31, 31])  # curve25519: not in the client's proposals
    assert [r.get(w.KeyExchange).group for r in requests] == [19]  # one try, no retry
    assert not link.of_type("a", IkeSaRekeyed)
    sa = link.a.status(0.0).as_dict()["ike_sas"][0]
    assert sa["name"] == old_a.name and sa["state"] == "established"
    assert sa["last_error"] == "IKE rekey refused or malformed"
    assert sa["children"][0]["spi_in"] == f"{child.spi_in:08x}"
    assert not link.of_type("a", IkeSaClosed) and not link.of_type("a", DeleteChildSa)


def test_ike_rekey_retries_each_group_once():
    """Asked for 14, the client retries with 14; asked then for 19 (tried first), it stops."""
    link = connect(client(), gateway())
    up(link)
    old_a, old_b = next(iter(link.a.sas.values())), next(iter(link.b.sas.values()))
    requests = _answer_rekey_with_invalid_ke(link, old_b, [14, 19, 14])
    assert [r.get(w.KeyExchange).group for r in requests] == [19, 14]
    assert not link.of_type("a", IkeSaRekeyed) and not link.of_type("a", IkeSaClosed)
    assert link.a.status(0.0).as_dict()["ike_sas"][0]["state"] == "established"
    assert link.a.sas[old_a.local_spi].outstanding is None  # nothing left in flight


def test_refused_ike_rekey_keeps_the_old_sa_and_its_child():
    """A responder that takes none of the proposals (NO_PROPOSAL_CHOSEN): no retry, the old IKE SA
    and its child stay, and the IKE SA keeps answering."""
    link = connect(client(ike=("aes128gcm16-prfsha256-ecp256",)), gateway())
    child, _ = up(link)
    old_a = next(iter(link.a.sas.values()))
    link.b.ctx.ike_suites = [s for s in link.b.ctx.ike_suites if s.dh == 14]
    start = len(link.sent)
    link.call("a", "rekey_ike")
    link.run(until=link.now + 5)
    exchanges = _create_child_messages(link, old_a, start)
    assert [to for to, _ in exchanges] == ["b", "a"], exchanges
    assert exchanges[1][1].notify(w.N_NO_PROPOSAL_CHOSEN) is not None
    assert not link.of_type("a", IkeSaRekeyed) and not link.of_type("b", IkeSaRekeyed)
    sa = link.a.status(0.0).as_dict()["ike_sas"][0]
    assert sa["name"] == old_a.name and sa["state"] == "established"
    assert sa["children"][0]["spi_in"] == f"{child.spi_in:08x}"
    link.call("a", "check_liveness")
    link.run(until=link.now + 10)
    assert not link.of_type("a", IkeSaClosed) and not link.of_type("b", IkeSaClosed)
