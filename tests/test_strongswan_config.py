"""The strongswan profile without charon: swanctl.conf and strongswan.conf rendered from a role's
config, refusals in the scenario files' style (read with our daemons' rules,
nodes/runtime/ipsec/config.py), and key material parsed from charon's level-4 log."""
from pathlib import Path

import pytest

from testbed.scenario import SCENARIO_DIR, load_scenario
from testbed.schema import ConfigError
from testbed.vendors.strongswan.config import render, strongswan_conf
from testbed.vendors.strongswan.keylog import parse_keylog
from role_configs import config_lines, with_config

SCENARIO = load_scenario(SCENARIO_DIR / "remote-access-strongswan.yaml")
PLAN = SCENARIO.plan()
GW, CLIENT = SCENARIO.roles["gw"], SCENARIO.roles["client"]


def test_gateway_swanctl_conf_from_the_scenario():
    r = render(GW, PLAN)
    conf = config_lines(r.swanctl)
    assert "user-0 {" in conf and "pools = vpool" in conf and "unique = replace" in conf
    assert 'remote {' in conf and 'auth = eap-md5' in conf and 'eap_id = "alice"' in conf
    assert "local_ts = 10.1.0.0/16" in conf and "dpd_action = clear" in conf
    assert "addrs = 10.1.3.0/24" in conf and "dns = 10.1.2.53" in conf
    assert 'secret = "alice-password"' in conf and 'secret = "testbed-alice-psk"' in conf
    assert "dpd_delay = 30s" in conf  # our gateway's default dpd_interval
    inside = PLAN.nodes["g"].interfaces
    assert r.info["inside_interface"] in {i.name for i in inside}
    assert r.info | {"inside_interface": None, "inside_address": None} == {
        "internal_presence": "pool", "pool": "10.1.3.0/24", "auth": "eap-md5", "dns": ["10.1.2.53"], "internet_access": False,
        "dpd_delay": 30, "retransmit": {}, "inside_interface": None, "inside_address": None}


def test_client_swanctl_conf_reads_the_password_file():
    r = render(CLIENT, PLAN)
    conf = config_lines(r.swanctl)
    password = (Path(__file__).resolve().parents[1] / CLIENT.config["password_file"]).read_text().strip()
    assert f'secret = "{password}"' in conf
    assert "remote_addrs = 203.0.113.70" in conf and "vips = 0.0.0.0" in conf and "keyingtries = 0" in conf
    assert "remote_ts = 0.0.0.0/0" in conf and "dpd_action = restart" in conf and "close_action = restart" in conf
    assert r.info["initiate"] is True and r.info["dpd_delay"] == 5


def test_timers_are_whole_seconds_with_no_randomness():
    r = render(with_config(CLIENT, child_rekey_after=2.2, ike_rekey_after=30, dpd_interval=0), PLAN)
    conf = config_lines(r.swanctl)
    assert "rekey_time = 3s" in conf and "life_time = 13s" in conf  # child: rounded up, hard expiry well past
    assert "rekey_time = 30s" in conf and "over_time = 30s" in conf
    assert conf.count("rand_time = 0s") == 2 and not any(line.startswith("dpd_delay") for line in conf)
    assert r.info["child_rekey_time"] == 3 and r.info["ike_rekey_time"] == 30


def test_quotes_escape_identities():
    r = render(with_config(CLIENT, identity='a"b\\c', auth="psk"), PLAN)
    assert 'id = "a\\"b\\\\c"' in config_lines(r.swanctl)


def test_strongswan_conf_carries_logs_vici_keepalive_and_retransmission(tmp_path):
    r = render(with_config(CLIENT, keepalive=7, retransmit_timeout=0.5, retransmit_backoff=1.5, retransmit_tries=2),
               PLAN)
    text = strongswan_conf(tmp_path / "v.vici", tmp_path / "c.log", tmp_path / "k.log", tmp_path / "resolv.conf", r.info)
    conf = config_lines(text)
    assert f"socket = unix://{tmp_path / 'v.vici'}" in conf and "keep_alive = 7s" in conf
    assert {"retransmit_timeout = 0.5", "retransmit_base = 1.5", "retransmit_tries = 2"} <= set(conf)
    assert f"path = {tmp_path / 'k.log'}" in conf and "ike = 4" in conf and "chd = 4" in conf
    assert any(line.startswith("load = ") and line.endswith(" resolve") for line in conf)
    assert text.count("{") == text.count("}")


@pytest.mark.parametrize("role, changes, key, expected", [
    (GW, {"users": {}}, "users", "a mapping of user id"),
    (GW, {"users": {"alice": {"password": "x"}}}, "users.alice.psk", "a pre-shared key"),
    (GW, {"users": {"alice": {"psk": "p", "subnets": ["10.1.0.0/33"]}}}, "users.alice.subnets", "IPv4 prefixes"),
    (GW, {"users": {"alice": {"psk": "p"}}}, "users.alice.password", "a password (auth: eap-md5)"),
    (GW, {"internal_presence": "bridge"}, "internal_presence", "one of napt, pool"),
    (GW, {"pool": "ten"}, "pool", "an IPv4 prefix"),
    (GW, {"inside_interface": "eth9"}, "inside_interface", "an interface of node g"),
    (GW, {"dns": "resolver"}, "dns", "an IPv4 address"),
    (CLIENT, {"gateway": ...}, "gateway", "the key is required"),
    (CLIENT, {"password_file": ...}, "password_file", "a password file"),
    (CLIENT, {"password_file": "no/such/file"}, "password_file", "a readable file"),
    (CLIENT, {"child_rekey_after": -1}, "child_rekey_after", "a non-negative number"),
    (CLIENT, {"keepalive": "often"}, "keepalive", "a non-negative number"),
    (CLIENT, {"initiate": "maybe"}, "initiate", "one of True, False"),
])
def test_a_bad_role_config_is_refused_with_file_and_key(role, changes, key, expected, monkeypatch):
    monkeypatch.delenv("TESTBED_VPN_PASSWORD", raising=False)
    with pytest.raises(ConfigError) as err:
        render(with_config(role, **changes), PLAN)
    assert (err.value.file, err.value.key) == (str(SCENARIO.file), f"roles.{role.name}.config.{key}"), str(err.value)
    assert expected in str(err.value)


def test_a_scenario_with_a_bad_strongswan_config_is_refused_when_loaded(tmp_path):
    text = (SCENARIO_DIR / "remote-access-strongswan.yaml").read_text().replace("internal_presence: pool",
                                                                               "internal_presence: bridge")
    path = tmp_path / "remote-access-strongswan.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_scenario(path)
    assert (err.value.file, err.value.key) == (str(path), "roles.gw.config.internal_presence")


KEYLOG = """\
08:07:32 09[IKE] <vpn|1> Sk_ei secret => 20 bytes @ 0x7fe60400b380
08:07:32 09[IKE] <vpn|1>    0: 6E 57 0B 42 2A 33 C9 8A F9 9F 57 72 E3 A4 43 31  nW.B*3....Wr..C1
08:07:32 09[IKE] <vpn|1>   16: BC 94 87 3E                                      ...>
08:07:32 10[CHD] <vpn|1> encryption initiator key => 20 bytes @ 0x56113584d450
08:07:32 11[IKE] <user-0|2> encryption initiator key => 4 bytes @ 0x1
08:07:32 10[CHD] <vpn|1>    0: B6 6A E2 A5 23 A0 AC B7 7D 0E C3 B2 D9 C8 2A 57  .j..#...}.....*W
08:07:32 11[IKE] <user-0|2>    0: 01 02 03 04                                      ....
08:07:32 10[CHD] <vpn|1>   16: 17 85 CD 4E                                      ...N
08:07:32 10[CHD] <vpn|1> encryption responder key => 20 bytes @ 0x56113584d6b0
08:07:32 10[CHD] <vpn|1>    0: 1B AA 9A 22 09 D8 B0 0A 18 2D 93 5A E4 DA F9 CF  ...".....-.Z....
08:07:32 10[CHD] <vpn|1>   16: 53 2F F4 2B                                      S/.+
08:07:32 10[CHD] <vpn|1> adding inbound ESP SA
08:07:32 10[IKE] <vpn|1> CHILD_SA vpn{1} established with SPIs a6feb2bc_i b52a261c_o and TS 100.64.0.1/32 === 10.1.0.0/16
"""


def test_keys_from_charons_level_4_log(tmp_path):
    path = tmp_path / "keys.log"
    path.write_text(KEYLOG)
    child, ike = parse_keylog(path)
    assert child == {"a6feb2bc": {"spi_in": "a6feb2bc", "spi_out": "b52a261c",
                                  "encryption_initiator": "b66ae2a523a0acb77d0ec3b2d9c82a571785cd4e",
                                  "encryption_responder": "1baa9a2209d8b00a182d935ae4daf9cf532ff42b"}}
    assert ike == {"1": {"sk_ei": "6e570b422a33c98af99f5772e3a44331bc94873e"}}
    assert parse_keylog(tmp_path / "absent.log") == ({}, {})
