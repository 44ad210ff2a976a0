"""The mobile VPN node's config is read into objects and refused with the one ConfigError (file, key,
expected, found); the node composes its layers from those objects (no root needed)."""
import asyncio
import subprocess

import pytest

from nodes.config_schema import ConfigError
from nodes.daemons import mobile_vpn_config
from nodes.daemons.mobile_vpn_config import read
from nodes.daemons.mobile_vpn_node import NESTINGS, MobileVpnNode
from testbed.profiles import KINDS, available

FILE = "/run/r.mvn.config.json"
MN = {"home_address": "203.0.113.130", "home_agent": "203.0.113.71", "home_network": "203.0.113.128/26",
      "spi": 1000, "key": "00" * 16, "iface": "r-eth0",
      "colocated": {"fn1": {"address": "192.0.2.100/25", "router": "192.0.2.1"}, "fn3": "dhcp"}}
GOOD = {"nesting": "ipsec-inside-mip", "mn": MN, "client": {"gateway": "203.0.113.70", "psk": "secret", "identity": "r@example"}}
RFC5265 = {**GOOD, "nesting": "rfc5265", "access_mode": "cvc",
           "inner": {"home_address": "10.1.1.100", "home_agent": "10.1.1.2", "home_network": "10.1.1.0/24",
                     "spi": 1001, "key": "00" * 16}}


@pytest.mark.parametrize("base, change, key, expected", [(GOOD, *c) for c in [
    ({"nesting": "mip-over-ipsec"}, "nesting", "one of mip-inside-ipsec, ipsec-inside-mip, rfc5265"),
    ({"nesting": None}, "nesting", "one of mip-inside-ipsec"),
    ({"mn": "x"}, "mn", "the mn layer's config as a mapping"),
    ({"client": None}, "client", "the client layer's config as a mapping"),
    ({"extra": 1}, "extra", "one of the keys nesting, mn, client for nesting ipsec-inside-mip"),
    ({"mn": {**MN, "spi": "x"}}, "mn.spi", "an SPI of 256 or more"),
    ({"mn": {**MN, "lifetime": "long"}}, "mn.lifetime", "an integer"),
    ({"client": {"gateway": "203.0.113.70", "identity": "r@example"}}, "client.psk", "the pre-shared key"),
    ({"client": {**GOOD["client"], "tunnel": "half"}}, "client.tunnel", "one of full, split"),
]] + [(RFC5265, *c) for c in [
    ({"access_mode": "c"}, "access_mode", "one of cvc, fvc (the outside mode"),
    ({"detect_window": 0}, "detect_window", "a positive number of seconds"),
    ({"detect_window": "1s"}, "detect_window", "a positive number of seconds"),
    ({"inner": None}, "inner", "the i-MIP layer's config as a mapping"),
    ({"inner": {**RFC5265["inner"], "iface": "r-eth0"}}, "inner.iface",
     "no iface: the i-MIP layer's link is the VPN tunnel (vpn0)"),
    ({"inner": {**RFC5265["inner"], "colocated": {}}}, "inner.colocated", "no colocated"),
    ({"inner": {**RFC5265["inner"], "key": "zz"}}, "inner.key", "the key as a hex string"),
    ({"nesting": "ipsec-inside-mip"}, "access_mode", "one of the keys nesting, mn, client for nesting ipsec-inside-mip"),
]])
def test_a_bad_config_names_the_file_the_key_and_what_was_expected(base, change, key, expected):
    with pytest.raises(ConfigError) as exc:
        read({**base, **change}, FILE)
    assert exc.value.file == FILE and exc.value.key == key, str(exc.value)
    assert exc.value.expected.startswith(expected), str(exc.value)
    assert str(exc.value).startswith(f"{FILE}: {key}: expected "), str(exc.value)


def test_an_unknown_key_says_what_to_do():
    with pytest.raises(ConfigError, match="remove or rename it; access_mode, inner, detect_window are for nesting rfc5265"):
        read({**GOOD, "inner": {}}, FILE)


def test_a_file_that_is_missing_or_not_json_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="expected an existing file"):
        mobile_vpn_config.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{nesting: rfc5265}")
    with pytest.raises(ConfigError, match="expected valid JSON"):
        mobile_vpn_config.load(tmp_path / "bad.json")


def test_a_good_config_composes_both_layers_from_objects():
    cfg = read(GOOD, FILE)
    node = asyncio.run(_make(cfg))
    assert node.nesting in NESTINGS and node.gateway == "203.0.113.70" and node.home == "203.0.113.130"
    assert node.vpn.cfg.get("wait") == 0 and node.vpn.cfg.get("tunnel") == "split"  # the layering keeps its routes
    assert node.mip.cfg is cfg.mn and node.mip.extra["tun"] == "mip0"
    assert node.mip.extra["dhcp_dir"] == "/run/r.mvn.mip.dhcp"  # next to the node's log, kept with the case
    assert not node.vpn.running and node.vpn.ike_messages() == 0


def test_the_role_kind_is_registered():
    assert "mobile-vpn-node" in KINDS and available("ours", "mobile-vpn-node")


async def _make(cfg):
    return MobileVpnNode(cfg, lambda *a, **k: None, "/run/r.mvn.events.jsonl")


def test_rfc5265_composes_a_second_mn_on_the_tunnel():
    cfg = read(RFC5265, FILE)
    node = asyncio.run(_make(cfg))
    inner = cfg.inner
    assert node.access_mode == "cvc" and str(inner.home_address) == "10.1.1.100" and str(inner.home_agent) == "10.1.1.2"
    assert inner.reverse_tunnel, "RFC 5265 section 4: the T bit SHOULD be set for i-MIP"
    assert inner.iface == "vpn0" and cfg.inner_tun == "mip1" != cfg.mip_tun
    assert [tun for _, tun in node.admit.layers] == ["mip0", "mip1"]
    assert cfg.x_mip_copy() is not cfg.mn and cfg.x_mip_copy().home_address == cfg.mn.home_address


def test_rfc5265_admits_late_i_ha_replies_through_the_vpn_clients_hardening(monkeypatch):
    """MIP.MVN.DETECT.16: RFC 5265 3.3 has the node keep retransmitting to the i-HA after deciding
    it is outside, and a late reply with extension 149 still moves it inside (3.5: 'SHOULD still
    switch'). The reply comes to the probe's ephemeral port, past the VPN client's INPUT chain, which
    admits established flows only: the node's own chain admits replies from UDP 434 to its requests,
    which also puts connection tracking in place before the first probe (a flow that started
    before it was is never 'established')."""
    import nodes.daemons.mobile_vpn_node as mvn
    import nodes.runtime.mip.layering as layering
    ran = []

    def run(argv, check=True):
        ran.append(argv)
        return subprocess.CompletedProcess(argv, 1 if argv[2] == "-D" else 0)  # no earlier jump to delete
    monkeypatch.setattr(layering, "run", run)
    monkeypatch.setattr(mvn, "run", run, raising=False)
    node = asyncio.run(_make(read(RFC5265, FILE)))
    node.admit_mobility()
    rules = [" ".join(a[2:]) for a in ran if a[2:4] == ["-A", "MOBILEVPN-IN"]]
    assert "-A MOBILEVPN-IN -p udp --sport 434 -m conntrack --ctstate ESTABLISHED -j ACCEPT" in rules, rules


def test_every_scenarios_mobile_vpn_node_config_is_accepted():
    from testbed.scenario import SCENARIO_DIR, load_scenario
    seen = 0
    for path in sorted(SCENARIO_DIR.glob("*.yaml")):
        for role in load_scenario(path).roles_of("mobile-vpn-node"):
            cfg = read(role.config, f"{path.name}: roles.{role.name}.config")
            assert cfg.nesting == role.config["nesting"] and (cfg.inner is not None) == (cfg.nesting == "rfc5265")
            seen += 1
    assert seen >= 14


def test_the_node_steps_on_events_and_at_deadlines_never_on_a_poll():
    """Each logged line schedules one step for the loop's turn (many lines, one step); each
    attachment its own step (two moves in one turn are two moves); where time alone decides (the
    detection window), one timer; and nothing runs while nothing happens."""
    class Detection:
        deadlines = []

        def next_deadline(self, inner):
            return self.deadlines.pop(0) if self.deadlines else None

    class Inner:
        def status(self):
            return {}

    async def go():
        node = MobileVpnNode(read(RFC5265, FILE), lambda *a, **k: None)
        steps = []
        node._step = lambda: steps.append(node.clock.wall())
        node.detection, node.inner = Detection(), Inner()
        for event in ("registration", "established", "child_sa_installed"):
            node._on_event(event, {})
        await asyncio.sleep(0)
        assert len(steps) == 1
        node._on_event("attachment", {})
        node._on_event("attachment", {})
        await asyncio.sleep(0)
        assert len(steps) == 3
        Detection.deadlines = [node.clock.wall() + 0.1]
        node._kick()
        await asyncio.sleep(0.05)
        assert len(steps) == 4
        await asyncio.sleep(0.1)
        assert len(steps) == 5, "a step at the deadline"
        await asyncio.sleep(0.2)
        assert len(steps) == 5, "no step without an event"
        assert node._timer is None and node._kicked is None
    asyncio.run(go())
