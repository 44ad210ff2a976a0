from ipaddress import IPv4Address

import pytest
import yaml

from testbed.plan import load_plan
from testbed.scenario import SCENARIO_DIR, list_scenarios, load_scenario
from testbed.schema import ConfigError


@pytest.mark.parametrize("name", sorted(list_scenarios()))
def test_every_shipped_scenario_is_valid(name):
    s = load_scenario(SCENARIO_DIR / f"{name}.yaml")
    assert s.name == name and s.description
    s.plan()  # its variants apply cleanly


def test_the_five_deployment_scenarios_are_data():
    names = set(list_scenarios())
    assert {"mipvpn-ha-intranet", "mipvpn-ha-dmz", "mipvpn-combined", "mipvpn-ha-outside", "mipvpn-local-link"} <= names
    combined = load_scenario(SCENARIO_DIR / "mipvpn-combined.yaml")
    assert {r.node for r in combined.roles.values() if r.kind in ("vpn-gateway", "home-agent")} == {"g"}


BASE = {
    "name": "x", "description": "d", "stations": {"r": "fn1"},
    "roles": {"gw": {"kind": "vpn-gateway", "node": "g", "impl": "ours"}},
}


def write(tmp_path, data, name="x"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def mutated(**changes):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = data
        for p in parents:
            target = target[p]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return data


@pytest.mark.parametrize("changes, key, expected", [
    ({"name": "y"}, "name", "the file's name 'x'"),
    ({"description": None}, "description", "present"),
    ({"stations__r": "mars"}, "stations.r", "one of"),
    ({"stations__q": "fn1"}, "stations.q", "a station of the world"),
    ({"roles__gw__kind": "router"}, "roles.gw.kind", "one of"),
    ({"roles__gw__node": "zz"}, "roles.gw.node", "one of"),
    ({"roles__gw__impl": "acme"}, "roles.gw.impl", "an installed profile (libreswan, ours, strongswan, strongswan-kernel)"),
    ({"roles__gw__kind": "home-agent", "roles__gw__impl": "strongswan"}, "roles.gw.impl", "implements home-agent"),
    ({"roles__gw__colour": "red"}, "roles.gw.colour", "one of the keys"),
    ({"nat": {"mapping": "full-cone"}}, "nat.mapping", "one of"),
    ({"nat": {"helpers": ["gopher"]}}, "nat.helpers[0]", "one of"),
    ({"variants": ["no-such"]}, "variants[0]", "one of"),
    ({"roles": []}, "roles", "a mapping"),
])
def test_a_bad_scenario_gets_its_precise_error(tmp_path, changes, key, expected):
    path = write(tmp_path, mutated(**changes))
    with pytest.raises(ConfigError) as err:
        load_scenario(path)
    assert (err.value.file, err.value.key) == (str(path), key), str(err.value)
    assert expected in str(err.value)


def test_not_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="valid YAML"):
        load_scenario(bad)
    with pytest.raises(ConfigError, match="an existing file"):
        load_scenario(tmp_path / "nope.yaml")


def test_implementation_overrides():
    s = load_scenario(SCENARIO_DIR / "remote-access-basic.yaml")
    both = s.with_impls({"*": "strongswan"})
    assert {r.impl for r in both.roles.values()} == {"strongswan"}
    one = s.with_impls({"gw": "strongswan"})
    assert one.roles["gw"].impl == "strongswan" and one.roles["client"].impl == "ours"
    with pytest.raises(ConfigError, match="implements"):
        load_scenario(SCENARIO_DIR / "mipvpn-ha-dmz.yaml").with_impls({"home-agent": "strongswan"})


RUNNABLE_TRAVERSAL = {  # problem statement scenario -> the nesting its mobile VPN node runs
    "mipvpn-ha-intranet": "mip-inside-ipsec", "mipvpn-ha-intranet-fa": "mip-inside-ipsec",
    "mipvpn-ha-dmz": "ipsec-inside-mip", "mipvpn-ha-dmz-fa": "ipsec-inside-mip",
    "mipvpn-ha-dmz-mip-inside-ipsec": "mip-inside-ipsec",
    "mipvpn-combined": "ipsec-inside-mip", "mipvpn-ha-outside": "ipsec-inside-mip",
    "mipvpn-local-link": "ipsec-inside-mip", "mipvpn-ha-outside-mip-inside-ipsec": "mip-inside-ipsec",
}
GATEWAY_ADDRESS = {"mipvpn-local-link": "203.0.113.40"}  # the combined box's public address; else G_e


@pytest.mark.parametrize("name", sorted(RUNNABLE_TRAVERSAL))
def test_the_runnable_traversal_scenarios_place_a_mobile_vpn_node(name):
    s = load_scenario(SCENARIO_DIR / f"{name}.yaml")
    assert not s.placement_only, f"{name} runs: it must not be placement_only"
    (mvn,) = s.roles_of("mobile-vpn-node")
    assert mvn.node == "r" and mvn.config["nesting"] == RUNNABLE_TRAVERSAL[name]
    assert mvn.config["client"]["gateway"] == GATEWAY_ADDRESS.get(name, "203.0.113.70")
    (ha,) = s.roles_of("home-agent")
    assert mvn.config["mn"]["home_agent"] == ha.config["address"]


def test_no_problem_statement_scenario_is_placement_only():
    for path in sorted(SCENARIO_DIR.glob("mipvpn-*.yaml")):
        assert not load_scenario(path).placement_only, f"{path.name} must run (every scenario is runnable, none placement-only)"


def test_the_local_link_scenario_puts_gateway_and_ha_on_one_box_behind_the_border():
    """2.5 (Figure 5): one box on the home subnet holds the public address both roles use; the
    border G runs no VPN role and forwards only Mobile IP to that address."""
    s = load_scenario(SCENARIO_DIR / "mipvpn-local-link.yaml")
    (gw,), (ha,) = s.roles_of("vpn-gateway"), s.roles_of("home-agent")
    assert gw.node == ha.node == "iha" and gw.config["external_address"] == ha.config["address"] == "203.0.113.40"
    plan = load_plan().with_variants(s.variants)
    assert plan.nodes["iha"].loopback == [IPv4Address("203.0.113.40")]
    border = plan.firewalls[plan.nodes["g"].firewall]
    assert "-d 203.0.113.40 -p udp --dport 434 -j ACCEPT" in border and "-d 203.0.113.40 -p 4 -j ACCEPT" in border
    assert "--dport 500" not in border and "-p esp" not in border, "IKE and ESP arrive inside the MIP tunnel"
