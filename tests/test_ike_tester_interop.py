"""The IKE tester library (testbed/conformance/ike) run in memory against this project's own IKEv2
core (nodes/ipsec/ike.py): the tester as initiator (remote-access client) against the core as
responder (gateway), and the tester as responder against the core as initiator. The library itself
imports nothing from nodes; only this test does, to have a peer."""
from __future__ import annotations

import pytest
from ike_fakelink import Pool

from nodes.core import Addr
from nodes.ipsec.ike import (DeleteChildSa, Established, IkeConfig, IkeCore, InstallChildSa, SendIke,
                             UserPolicy)
from testbed.conformance.ike import constants as c
from testbed.conformance.ike import messages as m
from testbed.conformance.ike import tshark
from testbed.conformance.ike.session import Algorithms, ChildAlgorithms, IkeSession
from testbed.conformance.ike.transport import FakeTransport

CLIENT, GATEWAY = "198.51.100.10", "203.0.113.1"
PSK = b"alice-secret"


class CoreBridge:
    """A FakeTransport of the tester wired to a nodes IkeCore: what the tester sends is delivered to the
    core at once; the core's SendIke actions come back into the tester's inbox."""

    def __init__(self, core: IkeCore, core_addr: str, tester_addr: str):
        self.core, self.core_addr, self.tester_addr = core, core_addr, tester_addr
        self.t = FakeTransport(tester_addr, on_send=self._deliver)
        self.events: list = []

    def _deliver(self, raw: bytes, dst: str, dport: int, sport: int, kind: str) -> None:
        self.core.receive_datagram(raw, Addr(self.tester_addr, sport, dst, dport), self.t.now)
        self.pump()

    def pump(self) -> None:
        for act in self.core.drain_actions():
            if isinstance(act, SendIke):
                self.t.inject(act.data, self.core_addr, act.sport, act.dport)
            else:
                self.events.append(act)

    def exchange(self, data: bytes, port: int = 500) -> bytes:
        self.t.send(data, self.core_addr, port, port)
        r = self.t.recv_ike(0)
        assert r is not None, f"no answer; drops {dict(self.core.drops)}"
        return r.data

    def of_type(self, cls):
        return [e for e in self.events if isinstance(e, cls)]


def gateway(ike="aes128gcm16-prfsha256-ecp256-modp2048-curve25519", esp=("aes128gcm16", "aes256-sha256")):
    users = {"alice@example": UserPolicy(psk=PSK, subnets=["10.1.0.0/16"])}
    return IkeCore(IkeConfig("gw.example", [ike], list(esp), users=users, allocator=Pool("10.9.0.1"),
                             dns=["10.1.0.53"]))


SUITES = [
    (Algorithms(), ChildAlgorithms()),
    (Algorithms(c.ENCR_AES_CBC, 256, c.AUTH_HMAC_SHA2_256_128, c.PRF_HMAC_SHA2_256, c.MODP2048),
     ChildAlgorithms(c.ENCR_AES_CBC, 256, c.AUTH_HMAC_SHA2_256_128)),
    (Algorithms(c.ENCR_AES_GCM_16, 128, None, c.PRF_HMAC_SHA2_256, c.CURVE25519), ChildAlgorithms()),
]


def establish(algs: Algorithms, child: ChildAlgorithms, gw: IkeCore | None = None):
    gw = gw or gateway("aes128gcm16-aes256-sha256-prfsha256-ecp256-modp2048-curve25519")
    bridge = CoreBridge(gw, GATEWAY, CLIENT)
    s = IkeSession(True, algs, child, local=(CLIENT, 500), peer=(GATEWAY, 500))
    r = s.handle_sa_init_response(bridge.exchange(s.sa_init_request()))
    assert r.ok and s.keys is not None, r.reason
    assert r.notify(c.N_NAT_DETECTION_SOURCE_IP) is not None
    reply = s.handle_auth_response(bridge.exchange(s.auth_request(psk=PSK, idi="alice@example", idr="gw.example",
                                                                  cp=True, tsi=["0.0.0.0/0"],
                                                                  tsr=["10.1.0.0/16"])), psk=PSK)
    assert reply.ok, reply.reason
    return bridge, s, reply


@pytest.mark.parametrize("algs,child", SUITES, ids=["gcm-ecp256", "cbc-modp2048", "gcm-curve25519"])
def test_tester_initiator_against_core_responder(algs, child):
    bridge, s, reply = establish(algs, child)
    # IKE_AUTH: decrypted, responder AUTH verified, virtual IP, child SA keys equal to the core's
    assert reply.encrypted and reply.inner is not None and s.peer_auth_ok is True
    assert [p.type for p in reply.inner][:2] == [c.IDR, c.AUTH]
    assert s.virtual_ip == ["10.9.0.1"] and s.peer_id == (c.ID_FQDN, b"gw.example")
    keys = bridge.core.status(0.0).as_dict()["ike_sas"][0]["keys"]
    assert keys["sk_ei"] == s.keys.sk_ei.hex() and keys["sk_pr"] == s.keys.sk_pr.hex()
    inst = bridge.of_type(InstallChildSa)[0]
    ours = s.children[0]
    assert (inst.spi_in, inst.spi_out) == (int.from_bytes(ours.spi_out, "big"), int.from_bytes(ours.spi_in, "big"))
    assert (inst.encr_key_in, inst.integ_key_in) == (ours.encr_key_out, ours.integ_key_out)
    assert (inst.encr_key_out, inst.integ_key_out) == (ours.encr_key_in, ours.integ_key_in)
    assert bridge.of_type(Established)[0].virtual_ip == "10.9.0.1"

    # INFORMATIONAL, empty: a liveness check answered by an empty response with the same Message ID
    info = s.parse(bridge.exchange(s.informational_request()))
    assert info.ok and info.response and not info.initiator and info.message_id == 2 and info.inner == []

    # CREATE_CHILD_SA rekeying the child SA (with PFS on the second suite)
    pfs = c.CURVE25519 if algs.encr == c.ENCR_AES_CBC else None
    old = s.children[0]
    msg, new = s.handle_create_child_response(bridge.exchange(s.create_child_request(rekey=old, pfs_group=pfs)))
    assert msg.ok and new is not None and new.replaces == old.spi_in, msg.reason
    assert (msg.get(c.KE) is not None) == bool(pfs)
    inst = bridge.of_type(InstallChildSa)[1]
    assert inst.replaces == int.from_bytes(old.spi_out, "big")
    assert (inst.encr_key_in, inst.encr_key_out) == (new.encr_key_out, new.encr_key_in)
    assert inst.integ_key_in == new.integ_key_out

    # Delete of the old child SA: the response deletes the peer's half
    d = s.parse(bridge.exchange(s.delete_request([old.spi_in])))
    assert d.ok and d.get(c.DELETE).fields["spis"] == [old.spi_out]
    assert [x.spi_in for x in bridge.of_type(DeleteChildSa)] == [int.from_bytes(old.spi_out, "big")]

    # ESP with the new child SA's keys opens with the keys the core installed
    from testbed.conformance.ike.esp import EspSa
    pkt = new.esp_out().seal(b"\x45" + bytes(19))
    peer_in = EspSa(inst.spi_in, new.algs.encr, inst.encr_key_in, new.algs.integ, inst.integ_key_in)
    assert peer_in.open(pkt).ok

    # every message of the run decodes cleanly in tshark
    if tshark.available():
        sent = [e.data for e in bridge.t.log]
        assert tshark.check_ike(sent) == []


def test_tester_rekeys_the_ike_sa_and_keeps_talking():
    bridge, s, _ = establish(*SUITES[0])
    msg, new = s.handle_rekey_ike_response(bridge.exchange(s.rekey_ike_request()))
    assert msg.ok and new is not None, msg.reason
    d = s.parse(bridge.exchange(s.delete_request(ike=True)))
    assert d.ok and d.inner == []
    keys = bridge.core.status(0.0).as_dict()["ike_sas"][0]["keys"]
    assert keys["sk_ei"] == new.keys.sk_ei.hex()
    info = new.parse(bridge.exchange(new.informational_request()))
    assert info.ok and info.message_id == 0 and info.spi_i == new.spi_i


def test_create_child_sa_on_a_rekeyed_ike_sa_gets_temporary_failure():
    """RFC 7296 2.25, 2.25.2: after the tester rekeyed the IKE SA, and before its Delete, a child SA
    rekey or a second IKE SA rekey on the old IKE SA is a temporary condition."""
    bridge, s, _ = establish(*SUITES[0])
    msg, new = s.handle_rekey_ike_response(bridge.exchange(s.rekey_ike_request()))
    assert msg.ok and new is not None, msg.reason
    for request in (s.create_child_request(rekey=s.children[0]), s.rekey_ike_request()):
        resp = s.parse(bridge.exchange(request))
        assert resp.ok and resp.notify_types() == [c.N_TEMPORARY_FAILURE] and resp.get(c.SA) is None
    info = new.parse(bridge.exchange(new.informational_request()))
    assert info.ok, "the successor IKE SA answers"


def test_esp_on_an_unknown_spi_is_reported_over_the_ike_sa_rate_limited():
    """RFC 7296 1.5, 2.21.4: N(INVALID_SPI) with the packet's SPI, in an INFORMATIONAL request over
    the IKE SA with the sender; not again right after (rate limit), nothing for a stranger."""
    bridge, s, _ = establish(*SUITES[0])
    bridge.core.invalid_spi("192.0.2.99", 0x7E000001, 10.0)   # no IKE SA with this address
    bridge.core.invalid_spi(CLIENT, 0x7E000002, 10.5)
    bridge.core.invalid_spi(CLIENT, 0x7E000003, 10.6)          # within the rate limit
    bridge.pump()
    got = [s.parse(r.data) for r in iter(lambda: bridge.t.recv_ike(0), None)]
    assert len(got) == 1, [g.summary() for g in got]
    req = got[0]
    assert req.ok and not req.response and req.exchange == c.INFORMATIONAL
    assert req.notify(c.N_INVALID_SPI).fields["data"] == bytes.fromhex("7e000002")


def test_crafted_requests_get_error_notifies_or_are_dropped():
    bridge, s, _ = establish(*SUITES[0])
    # a request with a broken ICV: no answer (RFC 7296 2.21.2), the Message ID is not consumed
    bridge.t.send(s.informational_request(sk_opts=m.SkOptions(break_icv=True)), GATEWAY, 500)
    assert bridge.t.recv_ike(0) is None
    s.next_mid -= 1
    # a retransmission of an answered request gets the same response again
    first = bridge.exchange(s.informational_request())
    assert bridge.exchange(s.retransmit()) == first
    # an unknown critical payload inside SK (RFC 7296 2.5): the core decrypts it and sees the payload
    # (this core answers nothing; whether it should is for the conformance test, not for this one)
    bridge.t.send(s.informational_request([m.unknown(200, b"??", critical=True)]), GATEWAY, 500)
    r = bridge.t.recv_ike(0)
    assert bridge.core.drops["unsupported_critical_payload"] == 1
    assert r is None or s.parse(r.data).notify(c.N_UNSUPPORTED_CRITICAL_PAYLOAD) is not None
    # the same on port 4500 with the non-ESP marker: the core follows and answers there
    s.next_mid -= 1 if r is None else 0
    info = bridge.exchange(s.informational_request(), port=4500)
    assert s.parse(info).ok and bridge.t.log[-1].local_port == 4500
    assert bridge.t.outbox[-1][0][:4] == bytes(4)


# ----------------------------------------------------------------------------- tester as responder

@pytest.mark.parametrize("ike,esp", [("aes128gcm16-prfsha256-ecp256", "aes128gcm16"),
                                     ("aes256-sha256-modp2048", "aes256-sha256")])
def test_tester_responder_against_core_initiator(ike, esp):
    core = IkeCore(IkeConfig("alice@example", [ike], [esp], remote_id="gw.example", psk=PSK))
    t = FakeTransport(GATEWAY)
    core.connect(GATEWAY, CLIENT, 0.0)

    def from_core():
        sends = [a for a in core.drain_actions() if isinstance(a, SendIke)]
        for a in sends:
            t.inject(a.data, CLIENT, a.sport, a.dport)
        return t.recv_ike(0)

    def to_core(data: bytes, port: int = 500):
        t.send(data, CLIENT, port, port)
        core.receive_datagram(data if port == 500 else c.NON_ESP_MARKER + data, Addr(GATEWAY, port, CLIENT, port), 0.0)

    s = IkeSession(False, local=(GATEWAY, 500), peer=(CLIENT, 500))
    req = s.handle_sa_init_request(from_core().data)
    assert req.ok and s.spi_i == req.spi_i and req.initiator and not req.response
    to_core(s.sa_init_response())
    got = from_core()
    auth = s.handle_auth_request(got.data, psk=PSK)
    assert auth.ok and s.peer_auth_ok is True, auth.reason
    assert s.peer_id == (c.ID_RFC822_ADDR, b"alice@example") and auth.get(c.CP) is not None
    to_core(s.auth_response(PSK, idr="gw.example", cp_address="10.9.0.7", dns=["10.1.0.53"],
                            tsr=["10.1.0.0/16"]), got.dport)
    acts = core.drain_actions()
    est = [a for a in acts if isinstance(a, Established)]
    inst = [a for a in acts if isinstance(a, InstallChildSa)]
    assert est and est[0].virtual_ip == "10.9.0.7" and est[0].dns == ["10.1.0.53"], acts
    ours = s.children[0]
    assert (inst[0].encr_key_out, inst[0].integ_key_out) == (ours.encr_key_in, ours.integ_key_in)
    assert inst[0].spi_out == int.from_bytes(ours.spi_in, "big")

    # the core (playing the client) checks liveness and rekeys its child SA: the tester answers
    core.check_liveness(1.0)
    dpd = s.parse(from_core().data)
    assert dpd.ok and dpd.exchange == c.INFORMATIONAL and dpd.inner == [] and dpd.message_id == 2
    to_core(s.informational_response())
    core.drain_actions()
    core.rekey_child(2.0)
    rq = s.handle_create_child_request(from_core().data)
    assert rq.ok and rq.notify(c.N_REKEY_SA) is not None
    to_core(s.create_child_response())
    new = [a for a in core.drain_actions() if isinstance(a, InstallChildSa)]
    assert new and new[0].encr_key_in == s.children[-1].encr_key_out
    assert s.children[-1].replaces == rq.notify(c.N_REKEY_SA).fields["spi"]


def test_tester_initiator_with_eap_md5():
    """IKE_AUTH without AUTH asks for EAP (RFC 7296 2.16); EAP-MD5 makes no MSK, so the final AUTH
    payloads use SK_pi / SK_pr as the shared key."""
    gw = IkeCore(IkeConfig("gw.example", ["aes128gcm16-prfsha256-ecp256"], ["aes128gcm16"],
                           users={"bob@example": UserPolicy(password=b"bob-password")}, gateway_psk=b"gateway-key",
                           allocator=Pool("10.9.0.1")))
    bridge = CoreBridge(gw, GATEWAY, CLIENT)
    s = IkeSession(True, local=(CLIENT, 500), peer=(GATEWAY, 500))
    s.handle_sa_init_response(bridge.exchange(s.sa_init_request()))
    first = s.handle_auth_response(bridge.exchange(s.auth_request(idi="bob@example", idr="gw.example")),
                                   psk=b"gateway-key")
    assert first.ok and s.peer_auth_ok and first.get(c.EAP).fields["eap_type"] == c.EAP_TYPE_MD5
    success = s.parse(bridge.exchange(s.eap_response(first, password=b"bob-password")))
    assert success.get(c.EAP).fields["code"] == c.EAP_SUCCESS
    s.peer_auth_ok = None
    last = s.handle_auth_response(bridge.exchange(s.eap_auth_request()), psk=s.keys.sk_pr)
    assert last.ok and s.peer_auth_ok is True and s.virtual_ip == ["10.9.0.1"] and len(s.children) == 1
    assert bridge.of_type(InstallChildSa)[0].encr_key_in == s.children[0].encr_key_out
