"""A role's status against its schema (testbed/status_schema.py), for every installed profile and
every kind it fills: statuses recorded from a run (tests/statuses/<profile>.<kind>.json: starting
worlds is too slow for a unit test) and the status builders fed with fixture data. The example
profile (examples/socat_profile/) is checked in tests/test_profiles.py, where its status is built."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from testbed import profiles
from testbed.schema import ConfigError
from testbed.status_schema import SCHEMAS, check_status, completed, describe

RECORDED = Path(__file__).resolve().parent / "statuses"


def _recorded(impl: str, kind: str) -> dict:
    """A status recorded from a run, as the harness answers it (profiles.start_role completes it)."""
    raw = json.loads((RECORDED / f"{impl}.{kind}.json").read_text())
    return completed(raw, SimpleNamespace(impl=impl, kind=kind))


PAIRS = [(impl, kind) for impl, p in profiles.installed().items() for kind in sorted(p.kinds)]


@pytest.mark.parametrize("impl, kind", PAIRS, ids=[f"{i}-{k}" for i, k in PAIRS])
def test_every_installed_profiles_status_fits_its_kinds_schema(impl, kind):
    assert (RECORDED / f"{impl}.{kind}.json").exists(), (
        f"no recorded status of profile {impl} for {kind}: record one from a run into tests/statuses/")
    check_status(_recorded(impl, kind), kind)


def test_recorded_statuses_show_what_the_cases_read():
    """The recordings are not empty shells: an established IKE SA with keys, a binding, a visitor, a
    registered mobile node."""
    for impl in ("ours", "strongswan"):
        for kind in ("vpn-gateway", "vpn-client"):
            sa = _recorded(impl, kind)["ike_sas"][0]
            assert sa["state"] == "ESTABLISHED" and sa["child_sas"][0]["keys"]["encr_in"], (impl, kind)
    assert _recorded("ours", "home-agent")["bindings"]
    assert _recorded("ours", "foreign-agent")["visitors"]
    assert _recorded("ours", "mobile-node")["state"] == "registered"


@pytest.mark.parametrize("change, key, expected", [
    (lambda s: s.pop("ike_sas"), "ike_sas", "the status lacks this key"),
    (lambda s: s["ike_sas"][0].update(initiator="yes"), "ike_sas[0].initiator", "expected bool, got 'yes'"),
    (lambda s: s["ike_sas"][0]["child_sas"][0]["keys"].pop("encr_in"), "ike_sas[0].child_sas[0].keys.encr_in",
     "the status lacks this key"),
    (lambda s: s.update(kind="vpn-client"), "kind", "expected 'vpn-gateway', got 'vpn-client'"),
])
def test_a_status_off_its_schema_is_refused_naming_the_key(change, key, expected):
    status = _recorded("ours", "vpn-gateway")
    change(status)
    with pytest.raises(ConfigError) as err:
        check_status(status, "vpn-gateway")
    assert err.value.key == key and err.value.file == "ours's vpn-gateway status" and expected in str(err.value)


def test_a_child_sa_without_keys_is_fine():
    status = _recorded("strongswan", "vpn-gateway")
    status["ike_sas"][0]["child_sas"][0]["keys"] = None  # a profile that cannot know the keys
    check_status(status, "vpn-gateway")


def test_every_kind_has_a_schema_with_a_description():
    for kind in SCHEMAS:
        lines = describe(kind)
        assert lines[0].startswith("implementation: str") and len(lines) > 2, kind


# -- the status builders, fed with fixture data ---------------------------------------------------------
def test_our_ipsec_status_builder_fits():
    """public_status over an IKE exchange between two of our cores (no sockets)."""
    from nodes.runtime.ipsec.dataplane import DataPlane
    from nodes.runtime.ipsec.runtime import public_status
    from test_ipsec_runtime import pair

    link, c_act, _g_act, _est = pair()
    plane = DataPlane()
    plane.install(c_act, 0.0)
    sa = public_status(link.a.status(0.0).as_dict()["ike_sas"][0], plane.status(1.0)["tunnels"][0], "alice")
    check_status({"implementation": "ours", "kind": "vpn-client", "ike_sas": [sa], "virtual_ips": ["10.1.3.1"],
                  "tunnel_interface": "vpn0", "dns": ["10.1.2.53"]}, "vpn-client")


def test_strongswan_status_builder_fits(tmp_path):
    """snapshot() over vici's list-sas answer as charon gives it (strings everywhere)."""
    from testbed.vendors.strongswan import status as sw

    child = {"name": "vpn", "uniqueid": "1", "state": "INSTALLED", "mode": "TUNNEL", "protocol": "ESP",
             "encap": "yes", "spi-in": "c1a2b3c4", "spi-out": "d1e2f3a4", "encr-alg": "AES_GCM_16",
             "encr-keysize": "128", "bytes-in": "0", "bytes-out": "84", "packets-in": "0", "packets-out": "1",
             "install-time": "3", "local-ts": ["10.1.0.0/16"], "remote-ts": ["10.1.3.1/32"]}
    sa = {"uniqueid": "1", "version": "2", "state": "ESTABLISHED", "local-host": "203.0.113.70",
          "local-port": "4500", "local-id": "203.0.113.70", "remote-host": "192.0.2.100", "remote-port": "4500",
          "remote-id": "alice", "initiator-spi": "b0eb754c7fbf8983", "responder-spi": "5d2f3a1b9c8e7d6f",
          "nat-remote": "yes", "nat-any": "yes", "encr-alg": "AES_GCM_16", "encr-keysize": "128",
          "prf-alg": "PRF_HMAC_SHA2_256", "dh-group": "CURVE_25519", "established": "3",
          "remote-vips": ["10.1.3.1"], "child-sas": {"vpn-1": child}}

    class Vici:
        def stream(self, *_):
            return [{"rw": sa}]

        def request(self, *_args):
            return {"vpool": {"base": "10.1.3.0", "size": "254", "online": "1", "offline": "0", "leases": {}}}

    charon = SimpleNamespace(
        role=SimpleNamespace(name="gw", kind="vpn-gateway", node="g"), process=SimpleNamespace(running=lambda: True),
        TUN="ipsec0", info={"keepalive": None}, version={"version": "5.9.8"}, keylog=tmp_path / "keys.log",
        vici=Vici(), resolv=None, initiate=None)
    status = sw.snapshot(charon)
    check_status(status, "vpn-gateway")
    assert status["ike_sas"][0]["child_sas"][0]["keys"] is None  # nothing logged: the keys are not known


def test_our_sink_status_builder_fits():
    from nodes.instruments.sink import _Udp

    seen: list[dict] = []
    udp = _Udp(7, seen, lambda *a, **k: None)
    udp.connection_made(SimpleNamespace(sendto=lambda data, addr: None))
    udp.datagram_received(b"ping", ("10.1.2.11", 59159))
    check_status(completed({"received": seen}, SimpleNamespace(impl="ours", kind="echo-sink")), "echo-sink")
