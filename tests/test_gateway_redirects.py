"""The gateway's redirection rules (draft-gupta Appendix C): the `redirects` config refused with the
key named, and the rules bound to a user's tunnel while it is up (Established), moved to a newer
tunnel of the same user, and removed when the tunnel's IKE SA goes; packets from the intranet to
G_i:port translated to the user's inner address and back. No sockets, no network: the Gateway's
event and data-path methods driven with fakes."""
from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP, UDP

from nodes.daemons.vpn_gateway import Gateway
from nodes.ipsec import ike
from nodes.ipsec.napt import Napt
from nodes.ipsec.napt_presence import NaptPresence
from nodes.ipsec.redirects import RedirectBindings
from nodes.runtime.ipsec.config import Cfg, ConfigError, Redirect, redirects
from nodes.runtime.ipsec import sockets as io
from nodes.runtime.ipsec.dataplane import Tunnel

G_I, H = "10.1.0.1", "10.1.2.10"
USERS = {"alice": {"psk": "a", "subnets": ["10.1.0.0/16"]}, "bob": {"psk": "b", "subnets": ["10.1.0.0/16"]}}
RULES = [{"proto": "tcp", "port": 2222, "user": "alice", "to_port": 7},
         {"proto": "udp", "port": 2222, "user": "alice", "to_port": 7},
         {"proto": "tcp", "port": 6000, "user": "bob", "to_port": 6000}]


def config(**extra) -> dict:
    return {"internal_presence": "napt", "users": USERS, "redirects": RULES, **extra}


# -- config ------------------------------------------------------------------------------------------
def test_valid_rules_are_read():
    gw = Gateway(Cfg(config(), "gw.json"), lambda *a, **k: None)
    assert gw.redirects == [Redirect("tcp", 2222, "alice", 7), Redirect("udp", 2222, "alice", 7),
                            Redirect("tcp", 6000, "bob", 6000)]


def test_no_rules_by_default():
    cfg = config()
    del cfg["redirects"]
    assert Gateway(Cfg(cfg, "gw.json"), lambda *a, **k: None).redirects == []


@pytest.mark.parametrize("value, key, expected", [
    ({"proto": "tcp"}, "redirects", "a list"),
    ([["tcp", 22]], "redirects[0]", "a mapping"),
    ([{"proto": "sctp", "port": 22, "user": "alice", "to_port": 22}], "redirects[0].proto", "tcp or udp"),
    ([{"proto": "tcp", "port": 0, "user": "alice", "to_port": 22}], "redirects[0].port", "1..65535"),
    ([{"proto": "tcp", "port": "22", "user": "alice", "to_port": 22}], "redirects[0].port", "1..65535"),
    ([{"proto": "tcp", "port": True, "user": "alice", "to_port": 22}], "redirects[0].port", "1..65535"),
    ([{"proto": "tcp", "port": 22, "user": "alice", "to_port": 70000}], "redirects[0].to_port", "1..65535"),
    ([{"proto": "tcp", "port": 22, "user": "alice"}], "redirects[0].to_port", "required"),
    ([{"proto": "tcp", "port": 22, "user": "alice", "to_port": 22, "host": "x"}], "redirects[0].host", "no such key"),
    ([{"proto": "tcp", "port": 22, "user": "carol", "to_port": 22}], "redirects[0].user", "alice, bob"),
    ([{"proto": "tcp", "port": 61000, "user": "alice", "to_port": 22}], "redirects[0].port", "outside napt_ports"),
    ([{"proto": "udp", "port": 22, "user": "alice", "to_port": 22},
      {"proto": "udp", "port": 22, "user": "bob", "to_port": 23}], "redirects[1].port", "redirects[0] has it"),
])
def test_bad_rules_are_refused_naming_the_key(value, key, expected):
    with pytest.raises(ConfigError) as exc:
        Gateway(Cfg(config(redirects=value), "gw.json"), lambda *a, **k: None)
    msg = str(exc.value)
    assert f"gw.json: {key}: expected" in msg and expected in msg, msg


def test_same_port_for_tcp_and_udp_is_fine():
    rules = redirects(Cfg({"redirects": RULES[:2]}, "x"), {"alice"}, (61000, 65535))
    assert [(r.proto, r.port) for r in rules] == [("tcp", 2222), ("udp", 2222)]


def test_rules_are_refused_without_napt():
    with pytest.raises(ConfigError) as exc:
        Gateway(Cfg(config(internal_presence="pool", pool="10.1.3.0/24"), "gw.json"), lambda *a, **k: None)
    assert "gw.json: redirects: expected" in str(exc.value) and "internal_presence is napt" in str(exc.value)
    cfg = config(internal_presence="pool", pool="10.1.3.0/24", redirects=[])
    assert Gateway(Cfg(cfg, "gw.json"), lambda *a, **k: None).redirects == []


# -- binding to tunnels and the data path ------------------------------------------------------------
class FakeDataPlane:
    def __init__(self):
        self.tunnels: dict[str, Tunnel] = {}


class FakeRuntime:
    def __init__(self):
        self.dp = FakeDataPlane()
        self.sent: list[tuple[Tunnel, bytes]] = []
        self.t = 100.0

    def now(self) -> float:
        return self.t

    def send_inner(self, tunnel, packet: bytes) -> None:
        self.sent.append((tunnel, packet))


class FakeLoop:
    """Timers armed but never run (the cases here are about forwarding, not expiry)."""

    class Handle:
        def cancel(self) -> None:
            pass

    def call_later(self, delay, callback, *args):
        return self.Handle()

    def call_soon(self, callback, *args):
        callback(*args)


class FakeRaw:
    def __init__(self):
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, addr) -> None:
        self.sent.append(data)


@pytest.fixture
def gw():
    events = []
    g = Gateway(Cfg(config(), "gw.json"), lambda what, **kw: events.append((what, kw)))
    g.g_i = G_I
    g.napt = Napt(G_I, ports=g.napt_ports)
    g.translation = NaptPresence(g.napt)
    g.loop = FakeLoop()
    g.bindings = RedirectBindings(g.napt, g.redirects)
    g.rt = FakeRuntime()
    g.raw = FakeRaw()
    g.raw_sender = io.RawSender(g.raw)
    g.events = events
    yield g
    g.raw_sender.close()


def up(gw, name: str, user: str, vip: str) -> Tunnel:
    t = Tunnel(name, "198.51.100.7", 4500, True)
    t.peer_id, t.virtual_ip, t.out = user, vip, object()
    gw.rt.dp.tunnels[name] = t
    gw._on_event(ike.Established(name, "responder", user, t.peer_addr, t.peer_port, True, virtual_ip=vip))
    return t


def down(gw, t: Tunnel) -> None:
    gw._on_event(ike.IkeSaClosed(t.name, "deleted", t.peer_id, t.virtual_ip))
    gw.rt.dp.tunnels.pop(t.name, None)


def from_h(proto: str, dport: int, sport: int = 40000) -> bytes:
    l4 = TCP(sport=sport, dport=dport, flags="S") if proto == "tcp" else UDP(sport=sport, dport=dport) / b"hi"
    return bytes(IP(src=H, dst=G_I) / l4)


def test_rules_inactive_until_the_user_is_up(gw):
    assert [r["active"] for r in gw.bindings.status(gw.g_i)] == [False, False, False]
    gw._to_tunnel(from_h("tcp", 2222))
    assert gw.rt.sent == [] and gw.napt.drops["no-mapping"] == 1


def test_intranet_connection_goes_to_the_users_inner_address_and_back(gw):
    t = up(gw, "ike-1", "alice", "100.64.0.2")
    status = {(r["proto"], r["port"]): r for r in gw.bindings.status(gw.g_i)}
    assert status[("tcp", 2222)] == {"proto": "tcp", "port": 2222, "user": "alice", "to_port": 7,
                                     "external": f"{G_I}:2222", "active": True, "to": "100.64.0.2:7",
                                     "ike_sa": "ike-1"}
    assert not status[("tcp", 6000)]["active"]  # bob is not connected
    for proto, layer in (("tcp", TCP), ("udp", UDP)):
        gw._to_tunnel(from_h(proto, 2222))
        tunnel, inner = gw.rt.sent[-1]
        p = IP(inner)
        assert tunnel is t and (p.src, p.dst, p[layer].sport, p[layer].dport) == (H, "100.64.0.2", 40000, 7)
        # the checksums were patched: scapy recomputes them equal
        q = IP(inner)
        del q.chksum, q[layer].chksum
        assert IP(bytes(q)).chksum == p.chksum and IP(bytes(q))[layer].chksum == p[layer].chksum
        # R's answer from its port 7 leaves G from G_i:2222
        answer = IP(src="100.64.0.2", dst=H) / (TCP(sport=7, dport=40000, flags="SA") if proto == "tcp"
                                                 else UDP(sport=7, dport=40000) / b"hi")
        gw._from_tunnel(bytes(answer), t)
        out = IP(gw.raw.sent[-1])
        assert (out.src, out.dst, out[layer].sport, out[layer].dport) == (G_I, H, 2222, 40000)
    assert ("redirect_added", {"proto": "tcp", "port": 2222, "user": "alice", "to": "100.64.0.2:7",
                               "ike_sa": "ike-1"}) in gw.events


def test_a_port_without_a_rule_reaches_nobody(gw):
    up(gw, "ike-1", "alice", "100.64.0.2")
    gw._to_tunnel(from_h("tcp", 2223))
    assert gw.rt.sent == [] and gw.napt.drops["no-mapping"] == 1


def test_rule_moves_to_the_users_new_tunnel_and_goes_with_it(gw):
    old = up(gw, "ike-1", "alice", "100.64.0.2")
    new = up(gw, "ike-2", "alice", "100.64.0.3")  # reconnect (unique=replace): the old SA closes after
    down(gw, old)
    assert all(r["ike_sa"] == "ike-2" and r["to"] == "100.64.0.3:7"
               for r in gw.bindings.status(gw.g_i) if r["user"] == "alice")
    gw._to_tunnel(from_h("udp", 2222))
    assert gw.rt.sent[-1][0] is new and IP(gw.rt.sent[-1][1]).dst == "100.64.0.3"
    down(gw, new)
    assert [r["active"] for r in gw.bindings.status(gw.g_i)] == [False, False, False]
    assert not [m for m in gw.napt.status(gw.rt.now()).as_dict()["mappings"] if m["static"]]
    n = len(gw.rt.sent)
    gw._to_tunnel(from_h("udp", 2222))
    assert len(gw.rt.sent) == n and gw.napt.drops["no-mapping"] == 1
    assert any(what == "redirect_removed" and kw["ike_sa"] == "ike-2" for what, kw in gw.events)


def test_another_users_tunnel_leaves_the_rules_alone(gw):
    a = up(gw, "ike-1", "alice", "100.64.0.2")
    b = up(gw, "ike-2", "bob", "100.64.0.3")
    down(gw, b)
    bound = {(r["proto"], r["port"]): r["ike_sa"] for r in gw.bindings.status(gw.g_i)}
    assert bound == {("tcp", 2222): "ike-1", ("udp", 2222): "ike-1", ("tcp", 6000): None}
    gw._to_tunnel(from_h("tcp", 2222))
    assert gw.rt.sent[-1][0] is a


def test_status_shows_the_rules(gw, monkeypatch):
    up(gw, "ike-1", "alice", "100.64.0.2")
    monkeypatch.setattr(gw, "core", type("C", (), {"config": type("K", (), {"local_id": "g"})()})(), raising=False)
    monkeypatch.setattr(gw.rt, "status", lambda: {"tunnels": [], "ike_sas": [], "drops": {}, "counters": {},
                                                   "ike_messages": {}, "events": [], "half_open": 0}, raising=False)
    gw.rt.dp.tunnels = {}
    st = gw.status()
    assert [r["active"] for r in st["redirects"]] == [True, True, False]
    assert {(m["proto"], m["external"], m["inner"]) for m in st["napt"] if m["static"]} == \
        {("tcp", f"{G_I}:2222", "100.64.0.2:7"), ("udp", f"{G_I}:2222", "100.64.0.2:7")}
