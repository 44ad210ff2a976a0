from ipaddress import IPv4Network

import pytest
import yaml

from testbed.plan import PLAN_FILE, default_plan, load_plan
from testbed.schema import ConfigError

PRIVATE = [IPv4Network(p) for p in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
DOCUMENTATION = [IPv4Network(p) for p in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]


def test_addresses_are_from_documentation_or_private_ranges():
    plan = default_plan()
    for seg in plan.segments.values():
        assert any(seg.prefix.subnet_of(r) for r in PRIVATE + DOCUMENTATION), seg
        if seg.zone == "intranet":
            assert any(seg.prefix.subnet_of(r) for r in PRIVATE), f"intranet {seg.name} must be private"
        if seg.zone in ("internet", "dmz"):
            assert any(seg.prefix.subnet_of(r) for r in DOCUMENTATION), seg


def test_every_address_is_unique_and_inside_its_prefix():
    plan = default_plan()
    addrs = [i.address for n in plan.nodes.values() for i in n.interfaces]
    assert len(addrs) == len(set(addrs))
    for n in plan.nodes.values():
        for i in n.interfaces:
            assert i.address in i.prefix


def test_core_router_refuses_private_space():
    """Private destinations reach the core's FORWARD chain only toward a next hop no node has, where
    its firewall refuses each of them with ICMP net unreachable (never forwarded anywhere)."""
    plan = default_plan()
    core = plan.nodes["core"]
    used = {str(i.address) for n in plan.nodes.values() for i in n.interfaces}
    private = {dest: gw for dest, gw in core.routes.items() if dest != "default"
               and any(IPv4Network(dest).overlaps(p) for p in PRIVATE)}
    assert set(private) == {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}
    assert all(str(gw) not in used for gw in private.values()), private
    rules = plan.firewalls[core.firewall]
    for dest in private:
        assert f"-o core-inet -d {dest} -j REJECT --reject-with icmp-net-unreachable" in rules


def test_the_seeds_roles_have_their_places():
    plan = default_plan()
    assert plan.zone_of(plan.address("g", "dmz")) == "dmz"  # G_e
    assert plan.zone_of(plan.address("g", "ibb")) == "intranet"  # G_i
    assert plan.zone_of(plan.address("h")) == "intranet"
    assert set(plan.attachments) >= {"fn1", "fn2", "fn3", "home"}
    assert plan.stations() == ["r"]


def test_variant_adds_routes_without_touching_the_base_plan():
    plan = default_plan()
    open_plan = plan.with_variants(["open-intranet"])
    assert "10.1.0.0/16" in open_plan.nodes["core"].routes
    assert "10.1.0.0/16" not in plan.nodes["core"].routes
    assert open_plan.nodes["g"].firewall is None and plan.nodes["g"].firewall == "dmz-policy"


def test_traversal_variants_route_virtual_home_networks_to_their_home_agents():
    plan = default_plan()
    expect = {"dmz-home-agent": ("203.0.113.128/26", "xha"), "combined-home-agent": ("203.0.113.128/26", "g"),
              "operator-home-agent": ("203.0.113.192/26", "pub")}
    for variant, (prefix, ha_node) in expect.items():
        p = plan.with_variants([variant])
        gateway = p.nodes["core"].routes[prefix]
        assert gateway in {i.address for i in p.nodes[ha_node].interfaces}, (variant, gateway)
        assert not any(IPv4Network(prefix).overlaps(q) for q in PRIVATE)
        assert prefix not in plan.nodes["core"].routes
    combined = plan.with_variants(["combined-home-agent"])
    assert combined.nodes["g"].firewall == "dmz-policy-ha"
    assert "--dport 434 -j ACCEPT" in combined.firewalls["dmz-policy-ha"]
    assert "--dport 434" not in plan.firewalls["dmz-policy"], "the plain DMZ policy admits only IKE and ESP"
    through = plan.with_variants(["dmz-home-agent", "dmz-ha-through-vpn"])
    assert through.nodes["g"].firewall == "dmz-policy-vpn-to-ha"
    assert "-i vpn0 -o g-dmz -d 203.0.113.71 -j ACCEPT" in through.firewalls["dmz-policy-vpn-to-ha"]
    assert str(through.nodes["xha"].routes["10.1.3.0/24"]) == "203.0.113.70"


def test_dhcp_variants_place_servers_on_routers_of_their_segments():
    plan = default_plan()
    assert all(not n.dhcp for n in plan.nodes.values()), "no DHCP server unless a scenario asks for one"
    p = plan.with_variants(["foreign-dhcp", "intranet-visited-dhcp"])
    servers = {(n.name, seg) for n in p.nodes.values() for seg in n.dhcp}
    assert servers == {("ar1", "fn1"), ("ar2", "fn2"), ("nat", "fn3"), ("ir", "ivn")}
    for n in p.nodes.values():
        for seg, (lo, hi) in n.dhcp.items():
            assert lo in p.segments[seg].prefix and hi in p.segments[seg].prefix and lo <= hi
            assert p.attachments[seg].router == n.interface_on(seg).address  # the router it hands out
    assert p.zone_of(p.attachments["ivn"].address) == "intranet"


def test_a_dhcp_range_outside_its_segment_is_refused(tmp_path):
    data = yaml.safe_load(PLAN_FILE.read_text())
    data["variants"]["foreign-dhcp"]["dhcp"]["ar1"]["fn1"] = ["192.0.2.100", "192.0.2.200"]
    path = tmp_path / "world.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_plan(path).with_variants(["foreign-dhcp"])
    assert "inside 192.0.2.0/25" in str(err.value)


def test_a_loopback_variant_gives_a_node_a_public_address_once(tmp_path):
    plan = default_plan()
    local = plan.with_variants(["local-link-home-agent"])
    assert [str(a) for a in local.nodes["iha"].loopback] == ["203.0.113.40"] and plan.nodes["iha"].loopback == []
    assert str(local.nodes["core"].routes["203.0.113.40/32"]) == "203.0.113.70"
    data = yaml.safe_load(PLAN_FILE.read_text())
    data["variants"]["local-link-home-agent"]["loopback"]["iha"] = ["10.1.2.10"]  # H's address
    path = tmp_path / "world.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="not used elsewhere"):
        load_plan(path).with_variants(["local-link-home-agent"])


def _broken(tmp_path, mutate):
    data = yaml.safe_load(PLAN_FILE.read_text())
    mutate(data)
    path = tmp_path / "world.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("mutate, key, expected", [
    (lambda d: d["nodes"]["h"]["addresses"].update(srv="10.9.9.9"), "nodes.h", "inside 10.1.2.0/24"),
    (lambda d: d["nodes"]["h"]["addresses"].update(srv="10.1.2.53"), "nodes.h", "not used elsewhere"),
    (lambda d: d["nodes"]["h"].update(routes={"default": "10.1.0.1"}), "nodes.h.routes.default", "gateway on a network"),
    (lambda d: d["nodes"]["h"]["addresses"].update(nowhere="10.1.2.9"), "nodes.h.addresses.nowhere", "a segment of"),
    (lambda d: d["nodes"].update(toolongname={"addresses": {}}), "nodes.toolongname", "valid interface names"),
    (lambda d: d["segments"]["srv"].update(zone="moon"), "segments.srv.zone", "one of"),
    (lambda d: d["nodes"]["h"].update(colour="blue"), "nodes.h.colour", "one of the keys"),
])
def test_a_bad_plan_names_file_key_and_expectation(tmp_path, mutate, key, expected):
    path = _broken(tmp_path, mutate)
    with pytest.raises(ConfigError) as err:
        load_plan(path)
    assert err.value.file == str(path)
    assert err.value.key == key
    assert expected in str(err.value)


def test_the_readme_shows_every_address_of_the_plan():
    from testbed import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    plan = default_plan()
    shown = [str(i.address) for n in plan.nodes.values() for i in n.interfaces if i.segment]
    shown += [str(a.address) for a in plan.attachments.values()]
    missing = [a for a in shown if a not in readme]
    assert not missing, f"README's address table lacks {missing}: update it from fixtures/world.yaml"
