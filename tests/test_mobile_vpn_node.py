"""The mobile VPN node's config is refused with the key and what was expected (no root needed)."""
import asyncio
import re
import subprocess
from pathlib import Path

import pytest

from nodes.daemons.mobile_vpn_node import NESTINGS, BadConfig, MobileVpnNode
from testbed.profiles import KINDS, available

GOOD = {"nesting": "ipsec-inside-mip", "mn": {"home_address": "203.0.113.130", "home_agent": "203.0.113.71"},
        "client": {"gateway": "203.0.113.70"}}
RFC5265 = {**GOOD, "nesting": "rfc5265", "access_mode": "cvc",
           "inner": {"home_address": "10.1.1.100", "home_agent": "10.1.1.2", "home_network": "10.1.1.0/24",
                     "spi": 1001, "key": "00" * 16}}


@pytest.mark.parametrize("base, change, expected", [(GOOD, *c) for c in [
    ({"nesting": "mip-over-ipsec"}, "key nesting: expected one of mip-inside-ipsec, ipsec-inside-mip"),
    ({"nesting": None}, "key nesting"),
    ({"mn": "x"}, "key mn: expected the mn layer's config as a mapping"),
    ({"client": None}, "key client: expected the client layer's config"),
    ({"extra": 1}, "unknown key(s) extra"),
]] + [(RFC5265, *c) for c in [
    ({"access_mode": "c"}, "key access_mode: expected one of cvc, fvc (the outside mode"),
    ({"inner": None}, "key inner: expected the i-MIP layer's config as a mapping"),
    ({"inner": {**RFC5265["inner"], "iface": "r-eth0"}}, "key inner.iface: the i-MIP layer's link is the VPN tunnel"),
    ({"inner": {**RFC5265["inner"], "colocated": {}}}, "key inner.colocated"),
    ({"nesting": "ipsec-inside-mip"}, "unknown key(s) access_mode, inner for nesting ipsec-inside-mip"),
]])
def test_a_bad_config_names_the_key(tmp_path, base, change, expected):
    with pytest.raises(BadConfig, match=re.escape(expected)):
        asyncio.run(_make({**base, **change}, tmp_path))


def test_a_good_config_composes_both_layers(tmp_path):
    node = asyncio.run(_make(GOOD, tmp_path))
    assert node.nesting in NESTINGS and node.gateway == "203.0.113.70" and node.home == "203.0.113.130"
    assert node.vpn.config["wait"] == 0 and node.vpn.config["tunnel"] == "split"  # the layering keeps its routes
    assert Path(node.mip.path).exists() and Path(node.vpn.path).exists()


def test_the_role_kind_is_registered():
    assert "mobile-vpn-node" in KINDS and available("ours", "mobile-vpn-node")


async def _make(cfg, tmp_path):
    return MobileVpnNode(cfg, tmp_path, str(tmp_path / "r.mn.events.jsonl"), lambda *a, **k: None)


def test_rfc5265_composes_a_second_mn_on_the_tunnel(tmp_path):
    node = asyncio.run(_make(RFC5265, tmp_path))
    inner = node.inner_cfg
    assert node.access_mode == "cvc" and str(inner.home_address) == "10.1.1.100" and str(inner.home_agent) == "10.1.1.2"
    assert inner.reverse_tunnel, "RFC 5265 section 4: the T bit SHOULD be set for i-MIP"
    assert inner.iface == "vpn0" and node.inner_tun == "mip1" != node.mip_tun
    assert [tun for _, tun in node.admit.layers] == ["mip0", "mip1"]


def test_rfc5265_admits_late_i_ha_replies_through_the_vpn_clients_hardening(tmp_path, monkeypatch):
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
    node = asyncio.run(_make(RFC5265, tmp_path))
    node.admit_mobility()
    rules = [" ".join(a[2:]) for a in ran if a[2:4] == ["-A", "MOBILEVPN-IN"]]
    assert "-A MOBILEVPN-IN -p udp --sport 434 -m conntrack --ctstate ESTABLISHED -j ACCEPT" in rules, rules
