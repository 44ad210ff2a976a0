"""The one config schema (nodes/config_schema.py): one ConfigError for every config the project reads,
naming file: key, what was expected, what was found and what to do."""
from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from nodes import config_schema
from nodes.config_schema import ConfigError, Reader, load_json

ROOT = Path(__file__).resolve().parents[1]


def test_the_message_names_file_key_expected_found_and_what_to_do():
    exc = ConfigError("fixtures/scenarios/x.yaml", "roles.gw.config.pool", "an IPv4 prefix", "10.1/99",
                      hint="write it as 10.1.3.0/24")
    assert str(exc) == ("fixtures/scenarios/x.yaml: roles.gw.config.pool: expected an IPv4 prefix, got '10.1/99'; "
                        "write it as 10.1.3.0/24")
    assert (exc.file, exc.key, exc.expected, exc.got, exc.hint) == (
        "fixtures/scenarios/x.yaml", "roles.gw.config.pool", "an IPv4 prefix", "10.1/99", "write it as 10.1.3.0/24")
    again = pickle.loads(pickle.dumps(exc))
    assert str(again) == str(exc) and again.key == exc.key


def test_every_config_reader_raises_the_same_class():
    from nodes.runtime.ipsec import config as ipsec_config
    from nodes.runtime.mip import config as mip_config
    from testbed import profiles, schema
    assert ipsec_config.ConfigError is mip_config.BadConfig is profiles.ProfileError is schema.ConfigError is ConfigError
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, SystemExit)


def test_a_daemon_that_meets_one_exits_with_the_message_and_no_traceback():
    code = ("from nodes.runtime.ipsec.config import Cfg\n"
            "Cfg({'pool': 'x'}, 'gw.json').network('pool')\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert res.stderr.strip() == "gw.json: pool: expected an IPv4 prefix like 10.1.3.0/24, got 'x'"


def test_reader_conversions_by_kind():
    r = Reader("f.yaml", {"a": "10.1.1.2", "n": "10.1.0.0/24", "i": 3, "t": True, "k": "00ff", "x": 1.5})
    assert str(r.child("a").address()) == "10.1.1.2" and str(r.child("n").network()) == "10.1.0.0/24"
    assert r.child("i").convert("int") == 3 and r.child("t").bool() is True
    assert r.child("k").convert("hexkey") == b"\x00\xff" and r.child("x").number(0, 2) == 1.5
    for key, kind, expected in (("x", "net", "an IPv4 prefix"), ("t", "int", "an integer"), ("i", "bool", "true or false"),
                                ("x", "hexkey", "a hex string"), ("n", "addr", "an IPv4 address")):
        with pytest.raises(ConfigError, match=rf"^f\.yaml: {key}: expected {expected}"):
            r.child(key).convert(kind)
    with pytest.raises(ConfigError, match=r"f\.yaml: missing: expected this key to be present; add this required key"):
        r.child("missing")
    with pytest.raises(ConfigError, match=r"f\.yaml: zz: expected one of the keys"):
        Reader("f.yaml", {"zz": 1}).only_keys(["a"])
    assert set(config_schema.KINDS) >= {"addr", "net", "iface", "int", "num", "bool", "str", "hexkey", "list", "map"}


@pytest.mark.parametrize("text, key, expected", [
    (None, "(file)", "an existing file; check the --config path"),
    ("(a directory)", "(file)", "a readable file, got 'Is a directory'; check the --config path"),
    ("{", "line 1", "valid JSON"),
    ("[1]", "(top level)", "a JSON object, got 'list'"),
])
def test_json_files(tmp_path, text, key, expected):
    path = tmp_path / "c.json"
    if text == "(a directory)":
        path.mkdir()
    elif text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_json(path)
    assert err.value.key == key and expected in str(err.value)
    assert str(err.value).startswith(f"{path}: {key}: expected ")


def test_the_daemons_config_file_is_read_the_same_way(tmp_path):
    from nodes.runtime import daemon
    assert daemon.load_config(None) == {}
    (tmp_path / "ok.json").write_text('{"a": 1}')
    assert daemon.load_config(tmp_path / "ok.json") == {"a": 1}
    with pytest.raises(ConfigError, match=r"missing\.json: \(file\): expected an existing file; check the --config"):
        daemon.load_config(tmp_path / "missing.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ConfigError, match=r"list\.json: \(top level\): expected a JSON object, got 'list'"):
        daemon.load_config(tmp_path / "list.json")


def test_a_daemon_with_a_missing_config_file_exits_with_the_message(tmp_path):
    code = ("from pathlib import Path\nfrom nodes.runtime import daemon\n"
            f"daemon.load_config(Path({str(tmp_path / 'gw.json')!r}))\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert res.stderr.strip() == f"{tmp_path / 'gw.json'}: (file): expected an existing file; check the --config path"


def test_the_gateway_sites_errors_are_config_errors():
    from nodes.ipsec.sites import parse_sites
    with pytest.raises(ConfigError) as err:
        parse_sites({"ar1": {"psk": "s", "site_subnets": "192.0.2.0/25"}}, set(), None, source="gw.json")
    assert str(err.value) == ("gw.json: internal_presence: expected pool when sites are configured (a site's subnets "
                              "are routed into the tunnel, not translated); set internal_presence: pool with a pool, "
                              "or remove the sites")


def test_a_profiles_case_data_is_checked_against_its_schema(tmp_path):
    from testbed.profile_api import case_data

    class P:
        case_data = tmp_path

    (tmp_path / "napt-matrix.yaml").write_text(
        "columns:\n  c1: {scenario: napt-strongswan, breaks: [irc-dcc], payload_address: {sip-rtp: g_i}}\n")
    assert case_data(P(), "napt-matrix")["columns"]["c1"]["breaks"] == ["irc-dcc"]
    (tmp_path / "napt-matrix.yaml").write_text("columns:\n  c1: {scenario: napt-strongswan, breaks: [irc]}\n")
    with pytest.raises(ConfigError, match=r"napt-matrix.yaml: columns.c1.breaks\[0\]: expected one of .*got 'irc'"):
        case_data(P(), "napt-matrix")
    (tmp_path / "napt-matrix.yaml").write_text("columns:\n  c1: {scenario: no-such-scenario}\n")
    with pytest.raises(ConfigError, match=r"columns.c1.scenario: expected one of"):
        case_data(P(), "napt-matrix")
    assert case_data(P(), "other-area") is None
