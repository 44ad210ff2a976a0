"""ESP lifetimes acted on by the IPsec runtime (the requirement: "lifetimes in time and bytes that trigger
rekeying"), the client's password source choice (file, environment, prompt) and its gateway given
by address or by DNS name (draft-gupta-ipsec-remote-access-00 section 5). No sockets: the data plane and the runtime's lifetime
handling with a recording stand-in for the IKE core."""
from __future__ import annotations

import pytest

from nodes.daemons.vpn_client import gateway_literal, valid_hostname
from nodes.ipsec import ike
from nodes.ipsec.esp_sa import Lifetime
from nodes.runtime.ipsec import config as pc
from nodes.runtime.ipsec.config import Cfg, ConfigError, esp_lifetime, password_source, read_password
from nodes.runtime.ipsec.dataplane import DataPlane
from nodes.runtime.ipsec.runtime import IpsecRuntime

from test_ipsec_runtime import CLIENT, GATEWAY, H, packet, pair


# -- config ------------------------------------------------------------------------------------------
def test_esp_lifetime_from_config():
    assert esp_lifetime(Cfg({}, "t")) is None
    lt = esp_lifetime(Cfg({"esp_lifetime": {"soft_bytes": 200000, "hard_bytes": 400000, "soft_seconds": 30}}, "t"))
    assert lt == Lifetime(soft_seconds=30.0, soft_bytes=200000, hard_bytes=400000)


@pytest.mark.parametrize("value", [
    {"soft_bytes": 10, "hard_bytes": 5},          # soft above hard
    {"soft_bytes": -1}, {"soft_seconds": 0}, {"hard_bytes": "1M"}, {"hard_bytes": True},
    {"soft_kilobytes": 3},                        # unknown key
    [100, 200], 5,
])
def test_esp_lifetime_refusals_name_the_key(value):
    with pytest.raises(ConfigError, match="esp_lifetime"):
        esp_lifetime(Cfg({"esp_lifetime": value}, "t"))


# -- the data plane gathers the SAs' events ----------------------------------------------------------
def _planes(lifetime):
    link, c_act, g_act, est = pair()
    client, gateway = DataPlane(lifetime), DataPlane(lifetime)
    client.install(c_act, 0.0)
    gateway.install(g_act, 0.0)
    return client, gateway, est.virtual_ip, c_act, g_act


def test_soft_bytes_event_on_both_sides():
    client, gateway, vip, c_act, g_act = _planes(Lifetime(soft_bytes=1000, hard_bytes=5000))
    ct = next(iter(client.tunnels.values()))
    for i in range(9):  # 9 x 128 bytes: crosses 1000 once
        got = gateway.open(client.seal(ct, packet(vip, H), 1.0), CLIENT, 0, False, 1.0)
        assert got is not None
    c_ev, g_ev = client.pop_events(), gateway.pop_events()
    assert [(e.kind, e.direction, e.cause) for _, e in c_ev] == [("rekey-due", "out", "bytes")]
    assert [(e.kind, e.direction, e.cause) for _, e in g_ev] == [("rekey-due", "in", "bytes")]
    assert c_ev[0][0].spi_in == c_act.spi_in and g_ev[0][0].spi_in == g_act.spi_in
    assert client.pop_events() == []
    assert client.status(1.0)["tunnels"][0]["child_sas"][0]["rekey_due"] is True


def test_hard_bytes_expiry_then_drops():
    client, gateway, vip, _, _ = _planes(Lifetime(soft_bytes=200, hard_bytes=400))
    ct = next(iter(client.tunnels.values()))
    for _ in range(4):
        client.seal(ct, packet(vip, H), 1.0)
    kinds = [e.kind for _, e in client.pop_events()]
    assert kinds == ["rekey-due", "expired"]
    assert client.seal(ct, packet(vip, H), 1.0) is None
    assert client.drops["sa-expired"] == 1


def test_time_limits_by_poll_and_deadline():
    client, _, _, _, _ = _planes(Lifetime(soft_seconds=10, hard_seconds=20))
    assert client.next_deadline() == 10.0
    client.poll(5.0)
    assert client.pop_events() == []
    client.poll(10.5)
    ev = client.pop_events()
    assert {(e.kind, e.direction, e.cause) for _, e in ev} == {("rekey-due", "in", "time"), ("rekey-due", "out", "time")}
    assert client.next_deadline() == 20.0
    client.poll(21.0)
    assert {e.kind for _, e in client.pop_events()} == {"expired"}
    assert client.next_deadline() is None


def test_time_limits_of_many_children_come_in_order_and_a_deleted_one_never():
    """The data plane keeps its children's time limits in a schedule (no scan of every SA per poll
    or per deadline): children installed at t = 0, 1, 2, 3 with soft 10 s / hard 20 s come due in
    that order, and the one deleted before its limit gives no event."""
    from dataclasses import replace
    _, _, _, c_act, _ = _planes(None)
    plane = DataPlane(Lifetime(soft_seconds=10, hard_seconds=20))
    for t in range(4):
        plane.install(replace(c_act, spi_in=0x1000 + t, spi_out=0x2000 + t, ike_sa=f"ike-{t}"), float(t))
    plane.delete(0x1001)
    assert plane.next_deadline() == 10.0
    seen = []
    for now in (10.5, 11.5, 12.5, 13.5):
        plane.poll(now)
        seen.append(sorted({c.spi_in for c, e in plane.pop_events() if e.kind == "rekey-due"}))
    assert seen == [[0x1000], [], [0x1002], [0x1003]]
    assert plane.next_deadline() == 20.0
    plane.poll(30.0)
    assert {c.spi_in for c, e in plane.pop_events() if e.kind == "expired"} == {0x1000, 0x1002, 0x1003}
    assert plane.next_deadline() is None


def test_no_lifetime_no_events():
    client, gateway, vip, _, _ = _planes(None)
    ct = next(iter(client.tunnels.values()))
    for _ in range(50):
        gateway.open(client.seal(ct, packet(vip, H), 1.0), CLIENT, 0, False, 1.0)
    client.poll(1e9)
    assert client.pop_events() == [] and gateway.pop_events() == [] and client.next_deadline() is None


# -- the runtime acts on them --------------------------------------------------------------------------
class FakeCore:
    """Records the runtime's requests; has no actions and no deadline."""

    def __init__(self):
        self.calls = []

    def rekey_child(self, now, spi_in=None):
        self.calls.append(("rekey", spi_in))

    def delete_child(self, spi_in, now):
        self.calls.append(("delete", spi_in))

    def drain_actions(self):
        return []

    def next_deadline(self):
        return None


class FakeLoop:
    def __init__(self):
        self.later = []

    def call_later(self, delay, fn, *args):
        h = Handle(delay, fn, args)
        self.later.append(h)
        return h

    def call_at(self, at, fn, *args):
        return self.call_later(at, fn, *args)


class Handle:
    def __init__(self, delay, fn, args):
        self.delay, self.fn, self.args, self.cancelled = delay, fn, args, False

    def cancel(self):
        self.cancelled = True

    def fire(self):
        if not self.cancelled:
            self.fn(*self.args)


def _runtime(lifetime, delay, act):
    core, logs = FakeCore(), []
    rt = IpsecRuntime(core, lambda ev, **kw: logs.append((ev, kw)), lambda *a: None, lambda a: None,
                      lifetime=lifetime, soft_rekey_delay=delay)
    rt.drive_on(FakeLoop())
    rt.dp.install(act, 0.0)
    return rt, core, logs


def _push(rt, vip, n, gateway=False):
    t = next(iter(rt.dp.tunnels.values()))
    for _ in range(n):
        assert rt.dp.seal(t, packet(H, vip) if gateway else packet(vip, H), 1.0) is not None or rt.dp.drops
    rt.lifetime_events()


def test_client_rekeys_at_once_on_soft_expiry_and_only_once():
    _, c_act, _, est = pair()
    rt, core, logs = _runtime(Lifetime(soft_bytes=1000), (0.0, 0.0), c_act)
    _push(rt, est.virtual_ip, 20)
    assert core.calls == [("rekey", c_act.spi_in)]
    assert rt.counters["lifetime_rekeys"] == 1
    assert any(ev == "esp_soft_expired" for ev, _ in logs)
    rt.dp.poll(100.0)
    rt.lifetime_events()
    assert core.calls == [("rekey", c_act.spi_in)]  # asked once per child


def test_gateway_waits_and_skips_a_child_the_client_rekeyed():
    _, _, g_act, est = pair()
    rt, core, _ = _runtime(Lifetime(soft_bytes=1000), (2.0, 4.0), g_act)
    _push(rt, est.virtual_ip, 20, gateway=True)
    assert core.calls == []
    ((spi, at),) = rt.policy.pending.items()
    assert spi == g_act.spi_in and 2.0 <= at - rt.now() <= 4.0
    # the client's rekey replaced it meanwhile: the IKE core deletes the old child
    rt._apply([ike.DeleteChildSa(g_act.spi_in, g_act.spi_out, "rekeyed by the peer")])
    rt.policy.handle_timer(at)
    rt.lifetime_events()
    assert core.calls == []


def test_gateway_rekeys_after_the_delay_when_the_child_is_still_there():
    _, _, g_act, est = pair()
    rt, core, _ = _runtime(Lifetime(soft_bytes=1000), (2.0, 4.0), g_act)
    _push(rt, est.virtual_ip, 20, gateway=True)
    (at,) = rt.policy.pending.values()
    rt.policy.handle_timer(at - 0.01)
    rt.lifetime_events()
    assert core.calls == []
    rt.policy.handle_timer(at)
    rt.lifetime_events()
    assert core.calls == [("rekey", g_act.spi_in)]


def test_hard_expiry_drops_the_sa():
    _, c_act, g_act, est = pair()
    # the gateway: the SA leaves the data plane and the child is deleted toward the peer
    rt, core, logs = _runtime(Lifetime(hard_bytes=500), (2.0, 4.0), g_act)
    _push(rt, est.virtual_ip, 5, gateway=True)
    assert g_act.spi_in not in rt.dp.by_spi
    assert core.calls == [("delete", g_act.spi_in)]
    assert rt.counters["lifetime_expiries"] == 1 and any(ev == "esp_hard_expired" for ev, _ in logs)
    # the client: dropped too, and a replacement asked for (no rekey was asked before)
    rt, core, _ = _runtime(Lifetime(hard_bytes=500), (0.0, 0.0), c_act)
    _push(rt, est.virtual_ip, 5)
    assert c_act.spi_in not in rt.dp.by_spi
    assert core.calls == [("rekey", c_act.spi_in)]


def test_no_soft_action_when_disabled():
    _, c_act, _, est = pair()
    rt, core, _ = _runtime(Lifetime(soft_bytes=1000), None, c_act)
    _push(rt, est.virtual_ip, 20)
    assert core.calls == []


# -- the password's source ------------------------------------------------------------------------------
def cfg(**kw):
    return Cfg({"identity": "alice", **kw}, "client.json")


@pytest.mark.parametrize("data, ask, environ, expected", [
    ({}, False, {}, None),
    ({"password_file": "x"}, False, {}, "file"),
    ({"password_file": "x"}, False, {"TESTBED_VPN_PASSWORD": "pw"}, "env"),
    ({"password": "pw", "password_file": "x"}, False, {"TESTBED_VPN_PASSWORD": "pw"}, "config"),
    ({"password": "prompt"}, False, {"TESTBED_VPN_PASSWORD": "pw"}, "prompt"),
    ({"password_file": "x"}, True, {"TESTBED_VPN_PASSWORD": "pw"}, "prompt"),  # asked for: wins
    ({"password": "pw"}, True, {}, "prompt"),
])
def test_password_source_choice(data, ask, environ, expected):
    assert password_source(cfg(**data), ask, environ) == expected


def test_prompt_reads_from_the_terminal():
    asked = []
    pw = read_password(cfg(password="prompt"), environ={}, tty_available=lambda: True,
                       getpass_fn=lambda prompt: asked.append(prompt) or "typed-secret")
    assert pw == "typed-secret" and asked == ["password for alice: "]


def test_prompt_without_a_terminal_fails_saying_what_to_do():
    def never(prompt):
        raise AssertionError("getpass must not be called without a terminal")
    with pytest.raises(ConfigError) as exc:
        read_password(cfg(password_file="x"), ask=True, environ={}, tty_available=lambda: False, getpass_fn=never)
    msg = str(exc.value)
    assert "no controlling terminal" in msg and "password_file" in msg and "TESTBED_VPN_PASSWORD" in msg


@pytest.mark.parametrize("typed", ["", EOFError()])
def test_prompt_with_nothing_typed_is_refused(typed):
    def fn(prompt):
        if isinstance(typed, Exception):
            raise typed
        return typed
    with pytest.raises(ConfigError, match="password"):
        read_password(cfg(), ask=True, environ={}, tty_available=lambda: True, getpass_fn=fn)


def test_env_and_file(tmp_path):
    f = tmp_path / "pw"
    f.write_text("from-file\n")
    assert read_password(cfg(password_file=str(f)), environ={}) == "from-file"
    assert read_password(cfg(password_file=str(f)), environ={"TESTBED_VPN_PASSWORD": "from-env"}) == "from-env"
    with pytest.raises(ConfigError, match="password_file"):
        read_password(cfg(password_file=str(tmp_path / "missing")), environ={})


def test_no_tty_in_this_process_is_detected(monkeypatch):
    def no_tty(*a, **kw):
        raise OSError(6, "No such device or address")
    import os
    monkeypatch.setattr(os, "open", no_tty)
    assert pc._tty_available() is False


def test_client_refuses_ask_password_with_psk_auth():
    from nodes.daemons.vpn_client import Client
    with pytest.raises(ConfigError, match="ask-password"):
        Client(Cfg({"gateway": GATEWAY, "identity": "alice", "psk": "k"}, "c"), lambda *a, **k: None,
               ask_password=True)


# -- the gateway by address or by name -----------------------------------------------------------------
def test_gateway_literal_or_name():
    assert gateway_literal("203.0.113.70") == "203.0.113.70"
    assert gateway_literal("vpn.example.net") is None
    assert valid_hostname("vpn.example.net") and valid_hostname("vpn.example.net.")
    for bad in ("", "-vpn.example", "vpn..example", "vpn example", "a" * 64 + ".net", "vpn_1.example"):
        assert not valid_hostname(bad), bad


def test_client_takes_a_name_without_resolving_at_construction():
    from nodes.daemons.vpn_client import Client
    c = Client(Cfg({"gateway": "vpn.does-not-exist.invalid", "identity": "alice", "psk": "k"}, "c"),
               lambda *a, **k: None)
    assert c.gateway is None and c.session.gateway_name == "vpn.does-not-exist.invalid"
    with pytest.raises(ConfigError, match="gateway"):
        Client(Cfg({"gateway": "not a name!", "identity": "alice", "psk": "k"}, "c"), lambda *a, **k: None)
