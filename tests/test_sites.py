"""Site-to-site peers (nodes/ipsec/sites.py): the gateway's `sites` config refused with the key
named, the site admitted as an IKE identity whose remote selectors are its subnets, the table that
picks a site's tunnel by destination, and strongSwan's end (a vpn-client with site_subnets). The
exchange itself (strongSwan's site end with our G) runs in cases/vpn_traversal/test_trusted_fa.py."""
from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv4Network

import pytest

from nodes.daemons.vpn_gateway import Gateway
from nodes.ipsec.sites import GATEWAY_CONFIG, SiteTable, parse_sites
from nodes.runtime.ipsec.config import Cfg, ConfigError
from testbed.scenario import SCENARIO_DIR, load_scenario
from testbed.vendors.strongswan.config import SITE_ROUTING_PRIO, render, strongswan_conf

POOL = IPv4Network("10.1.3.0/24")
AR1 = {"psk": "s", "subnets": ["10.1.0.0/16"], "site_subnets": ["192.0.2.0/25"]}


def test_sites_are_read():
    sites = parse_sites({"ar1": AR1}, {"alice"}, POOL)
    assert sites["ar1"].site_subnets == (IPv4Network("192.0.2.0/25"),)
    assert sites["ar1"].subnets == (IPv4Network("10.1.0.0/16"),) and sites["ar1"].psk == "s"
    assert parse_sites(None, {"alice"}, None) == {}


@pytest.mark.parametrize("raw, users, pool, key, expected", [
    ({"ar1": AR1}, set(), None, "internal_presence",
     "pool when sites are configured (a site's subnets are routed into the tunnel, not translated); "
     "set internal_presence: pool"),
    ({"alice": AR1}, {"alice"}, POOL, "sites.alice", "an id no user has (sites and users share the IKE identities), "
                                                     "got 'alice'; rename the site or the user"),
    ({"ar1": {**AR1, "site_subnets": []}}, set(), POOL, "sites.ar1.site_subnets",
     "the site's own networks (a non-empty list of prefixes), got []"),
    ({"ar1": {**AR1, "site_subnets": ["10.1.3.128/25"]}}, set(), POOL, "sites.ar1.site_subnets",
     "networks outside the pool 10.1.3.0/24, got '10.1.3.128/25'"),
    ({"ar1": AR1, "ar2": {**AR1, "site_subnets": ["192.0.2.64/26"]}}, set(), POOL, "sites.ar2.site_subnets",
     "networks no other site has (site ar1), got '192.0.2.64/26'"),
    ({"ar1": {**AR1, "psk": None}}, set(), POOL, "sites.ar1.psk", "a pre-shared key; add the site's pre-shared key"),
    ({"ar1": {**AR1, "psk": ""}}, set(), POOL, "sites.ar1.psk", "a pre-shared key, got ''"),
    ({"ar1": {**AR1, "colour": "blue"}}, set(), POOL, "sites.ar1.colour",
     "one of psk, subnets, site_subnets, got 'colour'; remove this key"),
    ({"ar1": {**AR1, "site_subnets": ["192.0.2.0/33"]}}, set(), POOL, "sites.ar1.site_subnets",
     "prefixes ('33' is not a valid netmask), got ['192.0.2.0/33']"),
    ({"ar1": {**AR1, "subnets": "10.1.0.0/16"}}, set(), POOL, "sites.ar1.subnets", "a list of prefixes, got '10.1.0.0/16'"),
    ([], set(), POOL, "sites", "a mapping of site id -> {psk, subnets, site_subnets}, got []"),
])
def test_bad_sites_name_file_key_expected_and_found(raw, users, pool, key, expected):
    """The project's one ConfigError: `file: key: expected ..., got ...; what to do`."""
    with pytest.raises(ConfigError) as err:
        parse_sites(raw, users, pool)
    assert err.value.key == key and err.value.file == GATEWAY_CONFIG
    assert str(err.value).startswith(f"{GATEWAY_CONFIG}: {key}: expected {expected}"), str(err.value)
    with pytest.raises(ConfigError, match=r"^gw\.json: "):
        parse_sites(raw, users, pool, source="gw.json")


def test_the_gateway_refuses_sites_with_napt_naming_the_key():
    cfg = {"internal_presence": "napt", "users": {"alice": {"psk": "a"}}, "sites": {"ar1": AR1}}
    with pytest.raises(ConfigError, match="^gw.json: internal_presence: expected pool when sites are configured"):
        Gateway(Cfg(cfg, "gw.json"), lambda *a, **k: None)


def test_the_gateway_admits_a_site_as_a_user_with_its_subnets_as_remote_selectors():
    cfg = {"internal_presence": "pool", "pool": str(POOL), "users": {"alice": {"psk": "a"}}, "sites": {"ar1": AR1}}
    gw = Gateway(Cfg(cfg, "gw.json"), lambda *a, **k: None)
    policy = gw.users["ar1"]
    assert policy.psk == b"s" and policy.remote_ts == ["192.0.2.0/25"] and policy.subnets == ["10.1.0.0/16"]
    assert gw.users["alice"].remote_ts is None
    assert gw.sites.status() == {"ar1": {"site_subnets": ["192.0.2.0/25"], "subnets": ["10.1.0.0/16"], "up": False}}


def test_the_table_picks_the_longest_prefix_of_a_live_site():
    sites = parse_sites({"big": {**AR1, "site_subnets": ["192.0.2.0/24"]},
                         "small": {**AR1, "site_subnets": ["198.51.100.0/25"]}}, set(), POOL)
    table = SiteTable(sites)
    dst = int(IPv4Address("192.0.2.7"))
    assert table.lookup(dst) is None, "no tunnel while the site is down"
    t1, t2 = object(), object()
    assert table.bind("big", t1) and not table.bind("nobody", t1)
    assert table.lookup(dst) is t1 and table.lookup(int(IPv4Address("198.51.100.9"))) is None
    table.bind("big", t2)  # a newer IKE SA of the same site
    assert table.lookup(dst) is t2
    table.unbind(t1)  # the older one goes: the newer stays
    assert table.lookup(dst) is t2
    table.unbind(t2)
    assert table.lookup(dst) is None and table.status()["big"]["up"] is False


def test_strongswan_site_end_has_local_selectors_and_no_virtual_ip():
    scenario = load_scenario(SCENARIO_DIR / "mipvpn-trusted-fa.yaml")
    role = scenario.roles["site"]
    r = render(role, scenario.plan())
    conf = [line.strip() for line in r.swanctl.splitlines()]
    assert "local_ts = 192.0.2.0/25" in conf and "remote_ts = 10.1.0.0/16" in conf
    assert not [line for line in conf if line.startswith("vips")]
    assert r.info["site_subnets"] == ["192.0.2.0/25"] and r.info["routing_table_prio"] == SITE_ROUTING_PRIO
    assert f"routing_table_prio = {SITE_ROUTING_PRIO}" in strongswan_conf("/s", "/l", "/k", None, r.info)
    plain = render(dataclasses.replace(role, config={k: v for k, v in role.config.items() if k != "site_subnets"}),
                   scenario.plan())
    assert "vips = 0.0.0.0" in plain.swanctl and "routing_table_prio" not in strongswan_conf("/s", "/l", "/k", None,
                                                                                              plain.info)
