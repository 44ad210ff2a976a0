"""The IPsec daemons' runtime pieces without sockets: the ESP data plane (selectors, drops, rekey,
NAT rebinding), the public status shape, the gateway's per-user PSK toward EAP users, its
address allocator and config refusals."""
from __future__ import annotations

import pytest

from nodes.daemons.vpn_gateway import Gateway, PoolAllocator
from nodes.ipsec import ike
from nodes.ipsec.pool import AddressPool
from nodes.runtime.ipsec.config import Cfg, ConfigError
from nodes.runtime.ipsec.dataplane import DataPlane, esp_algorithm
from nodes.runtime.ipsec.runtime import _alg_fields, public_status
from nodes.wire.ipv4 import IPv4, PROTO_UDP
from ike_fakelink import FakeLink

CLIENT, GATEWAY = "192.0.2.100", "203.0.113.70"
H = "10.1.2.10"


def pair(esp=("aes128gcm16",), auth="psk"):
    pool = AddressPool("10.1.3.0/24")
    users = {"alice": ike.UserPolicy(psk=b"alice-psk" if auth == "psk" else None,
                                     password=b"alice-password", subnets=["10.1.0.0/16"],
                                     gateway_psk=b"alice-psk")}
    gw = ike.IkeCore(ike.IkeConfig(local_id=GATEWAY, users=users, esp_proposals=list(esp),
                                   allocator=PoolAllocator(pool, lambda: 0.0), dns=["10.1.2.53"]))
    cl = ike.IkeCore(ike.IkeConfig(local_id="alice", psk=b"alice-psk", esp_proposals=list(esp),
                                   eap_password=b"alice-password" if auth == "eap" else None))
    link = FakeLink(cl, CLIENT, gw, GATEWAY)
    link.call("a", "connect", GATEWAY, CLIENT)
    link.run(until=10)
    c = [e for e in link.events["a"] if isinstance(e, ike.InstallChildSa)]
    g = [e for e in link.events["b"] if isinstance(e, ike.InstallChildSa)]
    assert c and g, link.events
    est = [e for e in link.events["a"] if isinstance(e, ike.Established)][0]
    return link, c[0], g[0], est


def packet(src: str, dst: str, payload: bytes = b"x" * 100) -> bytes:
    udp = (1234).to_bytes(2, "big") + (7).to_bytes(2, "big") + (8 + len(payload)).to_bytes(2, "big") + b"\0\0"
    return IPv4(src=src, dst=dst, proto=PROTO_UDP, payload=udp + payload).encode()


@pytest.fixture(params=["aes128gcm16", "aes256-sha256"])
def planes(request):
    link, c_act, g_act, est = pair(esp=(request.param,))
    client, gateway = DataPlane(), DataPlane()
    client.install(c_act, 0.0)
    gateway.install(g_act, 0.0)
    return client, gateway, est.virtual_ip, link


def test_round_trip_both_ways(planes):
    client, gateway, vip, _ = planes
    ct, gt = next(iter(client.tunnels.values())), next(iter(gateway.tunnels.values()))
    out = packet(vip, H)
    esp = client.seal(ct, out, 1.0)
    inner, tunnel = gateway.open(esp, CLIENT, 0, False, 1.0)
    assert inner == out and tunnel is gt
    back = packet(H, vip)
    inner, tunnel = client.open(gateway.seal(gt, back, 1.0), GATEWAY, 0, False, 1.0)
    assert inner == back and tunnel is ct
    assert not client.drops and not gateway.drops


def test_unauthenticated_packets_are_dropped_and_counted(planes):
    client, gateway, vip, _ = planes
    ct = next(iter(client.tunnels.values()))
    esp = client.seal(ct, packet(vip, H), 1.0)
    assert gateway.open(esp, CLIENT, 0, False, 1.0) is not None
    assert gateway.open(esp, CLIENT, 0, False, 1.0) is None  # replayed
    tampered = bytearray(client.seal(ct, packet(vip, H), 1.0))
    tampered[-20] ^= 1
    assert gateway.open(bytes(tampered), CLIENT, 0, False, 1.0) is None
    assert gateway.open(b"\x12\x34\x56\x78" + esp[4:], CLIENT, 0, False, 1.0) is None
    assert gateway.open(b"\x01\x02", CLIENT, 0, False, 1.0) is None
    # inside the SA, but from an address that is not the client's (spoofed) / to outside the user's subnets
    ct.out.local = ((0, 0xFFFFFFFF),)
    ct.out.remote = ((0, 0xFFFFFFFF),)
    assert gateway.open(client.seal(ct, packet("10.9.9.9", H), 1.0), CLIENT, 0, False, 1.0) is None
    assert gateway.open(client.seal(ct, packet(vip, "198.51.100.10"), 1.0), CLIENT, 0, False, 1.0) is None
    assert gateway.drops == {"replay": 1, "bad-icv": 1, "unknown-spi": 1, "truncated": 1,
                             "spoofed-source": 1, "outside-selectors": 1}


def test_outbound_selectors_are_enforced(planes):
    client, gateway, vip, _ = planes
    ct = next(iter(client.tunnels.values()))
    assert client.seal(ct, packet(vip, "198.51.100.10"), 1.0) is None  # full tunnel, but G allows 10.1/16
    assert client.drops["outside-selectors-out"] == 1


def test_rekey_switches_the_sender_and_keeps_the_old_receiver(planes):
    client, gateway, vip, link = planes
    link.call("a", "rekey_child")
    link.run(until=link.now + 5)
    new_c = [e for e in link.events["a"] if isinstance(e, ike.InstallChildSa)][-1]
    new_g = [e for e in link.events["b"] if isinstance(e, ike.InstallChildSa)][-1]
    ct, gt = next(iter(client.tunnels.values())), next(iter(gateway.tunnels.values()))
    old_out = ct.out
    client.install(new_c, 2.0)
    assert ct.out is not old_out and new_c.replaces == old_out.spi_in
    late = old_out.outbound.encrypt(packet(vip, H), 2.0)  # in flight before the rekey
    gateway.install(new_g, 2.0)
    assert gateway.open(late, CLIENT, 0, False, 2.0) is not None
    assert gateway.open(client.seal(ct, packet(vip, H), 2.0), CLIENT, 0, False, 2.0) is not None
    for d in (e for e in link.events["b"] if isinstance(e, ike.DeleteChildSa)):
        gateway.delete(d.spi_in)
    assert len(gt.children) == 1 and gt.out.spi_in == new_g.spi_in


def test_encapsulated_esp_follows_the_nat_mapping(planes):
    client, gateway, vip, _ = planes
    ct, gt = next(iter(client.tunnels.values())), next(iter(gateway.tunnels.values()))
    assert gateway.open(client.seal(ct, packet(vip, H), 1.0), "198.51.100.77", 40000, True, 1.0) is not None
    assert (gt.peer_addr, gt.peer_port, gt.encap) == ("198.51.100.77", 40000, True)
    # a forged packet from elsewhere moves nothing
    assert gateway.open(b"\xde\xad\xbe\xef" + bytes(60), "198.51.100.66", 4500, True, 1.0) is None
    assert gt.peer_addr == "198.51.100.77"


def test_eap_user_gets_the_gateway_psk_of_that_user():
    link, c_act, g_act, est = pair(auth="eap")
    assert est.virtual_ip == "10.1.3.1" and est.dns == ["10.1.2.53"]


def test_public_status_shape(planes):
    client, gateway, vip, link = planes
    sa = link.a.status(0.0).as_dict()["ike_sas"][0]
    st = public_status(sa, client.status(1.0)["tunnels"][0], "alice")
    assert st["state"] == "ESTABLISHED" and st["initiator"] and st["local_host"] == CLIENT
    child = st["child_sas"][0]
    assert child["state"] == "INSTALLED" and child["mode"] == "TUNNEL" and child["protocol"] == "ESP"
    assert set(child["keys"]) == {"encr_in", "encr_out", "integ_in", "integ_out"}
    assert _alg_fields("aes-gcm-16-128") == {"encr_alg": "AES_GCM_16", "encr_keysize": 128, "integ_alg": None}
    assert _alg_fields(esp_algorithm("aes-cbc-256+hmac-sha256-128")) == {
        "encr_alg": "AES_CBC", "encr_keysize": 256, "integ_alg": "HMAC_SHA2_256_128"}


def test_pool_allocator_holds_the_lease_while_any_sa_lives():
    pool = AddressPool("10.1.3.0/30")
    alloc = PoolAllocator(pool, lambda: 0.0)
    a = alloc.allocate("alice")
    assert alloc.allocate("alice") == a  # a second IKE SA of the same user (reconnect)
    alloc.release("alice", str(a))
    assert pool.address_of("alice") == a
    alloc.release("alice", str(a))
    assert pool.address_of("alice") is None


@pytest.mark.parametrize("config, key", [
    ({}, "users"),
    ({"users": {"alice": {"password": "x"}}}, "users.alice.psk"),
    ({"users": {"alice": {"psk": "k"}}, "internal_presence": "bridge"}, "internal_presence"),
    ({"users": {"alice": {"psk": "k", "subnets": ["10.1/99"]}}}, "users.alice.subnets"),
    ({"users": {"alice": {"psk": "k"}}, "internal_presence": "pool"}, "pool"),
    ({"users": {"alice": {"psk": "k"}}, "napt_ports": "9-3"}, "napt_ports"),
])
def test_bad_gateway_config_is_refused_naming_the_key(config, key):
    with pytest.raises(ConfigError) as exc:
        Gateway(Cfg(config, "gw.json"), log=lambda *a, **k: None)
    assert f"gw.json: {key}: expected" in str(exc.value), str(exc.value)


def test_outbound_sa_chosen_by_selectors_among_several_children(planes):
    """A peer with two child SAs in one IKE SA (strongSwan with remote_ts 10.1.2.0/24
    and 10.1.1.0/24): each answer leaves through the child whose selectors cover it, not the newest."""
    from dataclasses import replace
    from ipaddress import IPv4Address

    from nodes.wire.ikev2 import TrafficSelector

    _, gateway, vip, link = planes
    g_act = [e for e in link.events["b"] if isinstance(e, ike.InstallChildSa)][0]
    gateway.tunnels.clear()
    gateway.by_spi.clear()
    servers = replace(g_act, ts_local=[TrafficSelector(IPv4Address("10.1.2.0"), IPv4Address("10.1.2.255"))])
    home = replace(g_act, spi_in=g_act.spi_in + 1, spi_out=g_act.spi_out + 1,
                   ts_local=[TrafficSelector(IPv4Address("10.1.1.0"), IPv4Address("10.1.1.255"))])
    gateway.install(servers, 1.0)
    gateway.install(home, 2.0)  # the newest
    gt = next(iter(gateway.tunnels.values()))
    assert gateway.seal(gt, packet(H, vip), 3.0)[:4] == servers.spi_out.to_bytes(4, "big")
    assert gateway.seal(gt, packet("10.1.1.7", vip), 3.0)[:4] == home.spi_out.to_bytes(4, "big")
    assert gateway.seal(gt, packet("10.1.9.9", vip), 3.0) is None
    assert gateway.drops == {"outside-selectors-out": 1}
