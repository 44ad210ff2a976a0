"""Config keys of the Mobile IP daemons for home-agent advertisements and encapsulations
(nodes/runtime/mip/config.py): defaults, and refusals that name the file, the key and the fix."""
from __future__ import annotations

from ipaddress import IPv4Address as A

import pytest

from nodes.runtime.mip import config as mip_config

HA = {"address": "10.1.1.2", "home_network": "10.1.1.0/24",
      "mobile_nodes": [{"home_address": "10.1.1.100", "spi": 1000, "key": "00" * 16}]}
FA = {"address": "192.0.2.1", "iface": "ar1-fn1"}
MN = {"home_address": "10.1.1.100", "home_agent": "10.1.1.2", "home_network": "10.1.1.0/24", "spi": 1000,
      "key": "00" * 16, "iface": "r-eth0"}


def parse(kind, base, **over):
    return getattr(mip_config, kind)(mip_config.Fields({**base, **over}, "x.json"))


def test_home_agent_advertises_on_its_home_network_by_default():
    cfg, _ = parse("home_agent", HA)
    assert cfg.advertise and cfg.prefix_length == 24 and cfg.adv_interval == 1.0
    assert cfg.encapsulations == ("ipip", "minimal", "gre")
    cfg, _ = parse("home_agent", HA, advertise=False, adv_interval=0.5, adv_destination="255.255.255.255")
    assert not cfg.advertise and cfg.adv_interval == 0.5 and cfg.adv_destination == A("255.255.255.255")


def test_home_agent_off_its_home_network_does_not_advertise_unless_told_and_then_is_refused():
    cfg, _ = parse("home_agent", HA, home_network="10.9.0.0/24")
    assert not cfg.advertise
    with pytest.raises(mip_config.BadConfig, match="x.json: advertise: .* not on its home network"):
        parse("home_agent", HA, home_network="10.9.0.0/24", advertise=True)


@pytest.mark.parametrize("kind, base", [("home_agent", HA), ("foreign_agent", FA)])
def test_agents_encapsulations(kind, base):
    cfg, _ = parse(kind, base, encapsulations=["gre", "ipip"])
    assert cfg.encapsulations == ("ipip", "gre")
    with pytest.raises(mip_config.BadConfig, match="x.json: encapsulations: .*ipip among them"):
        parse(kind, base, encapsulations=["minimal"])
    with pytest.raises(mip_config.BadConfig, match="x.json: encapsulations: expected"):
        parse(kind, base, encapsulations="gre")


def test_mobile_node_encapsulation():
    assert parse("mobile_node", MN)[0].encapsulation == "ipip"
    assert parse("mobile_node", MN, encapsulation="minimal")[0].encapsulation == "minimal"
    with pytest.raises(mip_config.BadConfig, match="x.json: encapsulation: .*encapsulation must be one of ipip, minimal, gre"):
        parse("mobile_node", MN, encapsulation="ipip6")


def test_home_agent_adv_destination_is_checked():
    with pytest.raises(mip_config.BadConfig, match="x.json: adv_destination: .*224.0.0.1"):
        parse("home_agent", HA, adv_destination="10.1.1.255")
