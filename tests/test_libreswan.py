"""The libreswan profile without a kernel that has ESP: ipsec.conf and ipsec.secrets rendered from the
role configs (gateway with a pool over IKEv2 CP, client, PSK; EAP-MD5 reported as what Libreswan
cannot do), the RoleUnavailable paths, and the status parsed from whack's and ip xfrm's output."""
import subprocess
from pathlib import Path

import pytest

import testbed.vendors.libreswan as libreswan
from testbed import vm_kernel
from testbed.profile_api import RoleUnavailable
from testbed.scenario import SCENARIO_DIR, load_scenario
from testbed.vendors.libreswan import pluto as pluto_mod
from testbed.vendors.libreswan.config import ike_id, pool_range, proposal, render
from testbed.vendors.libreswan.status import ike_sas, parse_xfrm_state, received_cp
from role_configs import config_lines, with_config

SCENARIO = load_scenario(SCENARIO_DIR / "remote-access-basic.yaml")
PLAN = SCENARIO.plan()
GW, CLIENT = SCENARIO.roles["gw"], SCENARIO.roles["client"]
ADDCONN = pluto_mod.PREFIX / "usr/libexec/ipsec/addconn"


def test_gateway_napt_pool_over_cp():
    r = render(GW, PLAN)
    conf = config_lines(r.ipsec_conf)
    assert "conn user-0" in conf and "authby=secret" in conf and "ikev2=yes" in conf
    assert "right=%any" in conf and "rightid=@alice" in conf
    assert "rightaddresspool=100.64.0.1-100.64.0.254" in conf  # napt_pool's default, SNATed to G_i
    assert "leftmodecfgserver=yes" in conf and "rightmodecfgclient=yes" in conf and "narrowing=yes" in conf
    assert "leftsubnet=10.1.0.0/16" in conf and "modecfgdns=10.1.2.53" in conf
    assert "left=203.0.113.70" in conf  # G's address toward its default route
    assert "dpddelay=30s" in conf and "dpdaction=clear" in conf
    assert r.secrets == '%any @alice : PSK "testbed-alice-psk"\n'
    assert r.info["internal_presence"] == "napt" and r.info["unsupported"] == []
    assert r.info["inside_interface"] in {i.name for i in PLAN.nodes["g"].interfaces}


def test_gateway_pool_mode_and_timers():
    gw = with_config(GW, internal_presence="pool", child_rekey_after=4, ike_rekey_after=20, retransmit_timeout=1,
                     retransmit_tries=2, mobike=True, keepalive=5)
    r = render(gw, PLAN)
    conf = config_lines(r.ipsec_conf)
    assert "rightaddresspool=10.1.3.1-10.1.3.254" in conf
    # one rekeymargin for both lifetimes: each rekey starts at its configured time
    assert {"salifetime=24s", "ikelifetime=40s", "rekeymargin=20s", "rekeyfuzz=0%"} <= set(conf)
    assert {"retransmit-interval=1000", "retransmit-timeout=7s", "mobike=yes", "keep-alive=5"} <= set(conf)


def test_client_full_and_split_tunnel():
    r = render(CLIENT, PLAN)
    conf = config_lines(r.ipsec_conf)
    assert "conn vpn" in conf and "right=203.0.113.70" in conf and "leftid=@alice" in conf
    assert "leftmodecfgclient=yes" in conf and "leftsubnet=0.0.0.0/0" in conf and "rightsubnet=0.0.0.0/0" in conf
    assert "auto=add" in conf  # the profile initiates it and records the outcome
    assert "dpdaction=restart" in conf and "keyingtries=%forever" in conf
    assert r.secrets == '@alice %any : PSK "testbed-alice-psk"\n'
    split = render(with_config(CLIENT, tunnel="split", subnets=["10.1.0.0/16"], gateway_identity="@gw.example"), PLAN)
    assert "rightsubnet=10.1.0.0/16" in config_lines(split.ipsec_conf)
    assert "rightid=@gw.example" in config_lines(split.ipsec_conf)
    assert split.secrets.startswith("@alice @gw.example : PSK")


def test_site_to_site_client_has_no_cp():
    r = render(with_config(CLIENT, site_subnets=["10.8.0.0/24"], tunnel="split", subnets=["10.1.0.0/16"]), PLAN)
    conf = config_lines(r.ipsec_conf)
    assert "leftsubnet=10.8.0.0/24" in conf and not any(line.startswith("leftmodecfgclient") for line in conf)


def test_eap_md5_is_what_libreswan_cannot_do():
    gw = render(with_config(GW, auth="eap-md5"), PLAN)
    client = render(with_config(CLIENT, auth="eap-md5", password="pw"), PLAN)
    for r in (gw, client):
        assert any("eap-md5" in u and "EAP-TLS" in u for u in r.info["unsupported"])
    two = render(with_config(GW, users={"bob": {"psk": "k", "subnets": ["10.1.0.0/16", "10.2.0.0/16"]}}), PLAN)
    assert any("one traffic selector" in u for u in two.info["unsupported"])


def test_proposals_and_identities_in_libreswan_syntax():
    assert proposal("aes128gcm16-prfsha256-modp2048-ecp256-x25519", ike=True) == "aes_gcm_16_128-sha2_256-modp2048+dh19+dh31"
    assert proposal("aes128-sha256-modp2048", ike=True) == "aes128-sha2_256-modp2048"
    assert proposal("aes256gcm16", ike=False) == "aes_gcm_16_256"
    assert proposal("aes128-sha256", ike=False) == "aes128-sha2_256"
    assert ike_id("alice") == "@alice" and ike_id("@gw.example") == "@gw.example"
    assert ike_id("bob@example.org") == "bob@example.org" and ike_id("203.0.113.70") == "203.0.113.70"
    assert pool_range(__import__("ipaddress").IPv4Network("10.1.3.0/24")) == "10.1.3.1-10.1.3.254"


class _World:
    plan = PLAN


def test_role_unavailable_without_esp(monkeypatch):
    monkeypatch.delenv(vm_kernel.PROBE_ENV, raising=False)
    monkeypatch.setattr(vm_kernel, "xfrm_unavailable", lambda: "this kernel has no ESP in XFRM")
    vm_kernel._probed.cache_clear()
    with pytest.raises(RoleUnavailable, match="libreswan needs the kernel's XFRM: this kernel has no ESP"):
        libreswan.PROFILE.start_role(_World(), GW)
    vm_kernel._probed.cache_clear()
    monkeypatch.setenv(vm_kernel.PROBE_ENV, "skip")
    monkeypatch.setattr(pluto_mod, "installed", lambda: None)
    assert libreswan.PROFILE.unavailable("vpn-gateway") is None


def test_role_unavailable_for_eap_md5_and_when_not_installed(monkeypatch):
    monkeypatch.setenv(vm_kernel.PROBE_ENV, "skip")
    monkeypatch.setattr(pluto_mod, "installed", lambda: None)
    with pytest.raises(RoleUnavailable, match="cannot do auth eap-md5"):
        libreswan.PROFILE.start_role(_World(), with_config(GW, auth="eap-md5"))
    monkeypatch.undo()
    monkeypatch.setenv(vm_kernel.PROBE_ENV, "skip")
    monkeypatch.setattr(pluto_mod, "PREFIX", Path("/nonexistent/libreswan"))
    with pytest.raises(RoleUnavailable, match="run scripts/install-libreswan"):
        libreswan.PROFILE.start_role(_World(), GW)


@pytest.mark.skipif(not ADDCONN.exists(), reason="Libreswan is not unpacked (scripts/install-libreswan)")
@pytest.mark.parametrize("role", [GW, CLIENT, with_config(GW, internal_presence="pool", child_rekey_after=3)],
                         ids=["gateway", "client", "gateway-pool"])
def test_rendered_config_passes_addconn_checkconfig(tmp_path, role):
    conf = tmp_path / "ipsec.conf"
    conf.write_text(render(role, PLAN).ipsec_conf)
    res = subprocess.run([str(ADDCONN), "--checkconfig", "--config", str(conf)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


SHOWSTATES = """\
000 #1: "user-0"[1] 192.0.2.100:500 STATE_V2_ESTABLISHED_IKE_SA (established IKE SA); REKEY in 27758s; REPLACE in 28794s; newest; idle;
000 #2: "user-0"[1] 192.0.2.100:500 STATE_V2_ESTABLISHED_CHILD_SA (established Child SA); REKEY in 28526s; REPLACE in 28796s; newest; eroute owner; IKE SA #1; idle;
000 #2: "user-0"[1] 192.0.2.100 esp.c9a4bc1f@192.0.2.100 esp.5d9e0e2a@203.0.113.70 tun.0@192.0.2.100 tun.0@203.0.113.70 Traffic: ESPin=84B ESPout=84B ESPmax=2^63B
"""
TRAFFIC = """006 #2: "user-0"[1] 192.0.2.100, type=ESP, add_time=1701990000, inBytes=84, outBytes=84, maxBytes=2^63B, id='@alice', lease=100.64.0.1/32\n"""
STATUS = """000 "user-0"[1]: 10.1.0.0/16===203.0.113.70...192.0.2.100[@alice]===100.64.0.1/32; erouted; eroute owner: #2\n"""
CLIENT_STATUS = """000 "vpn": 0.0.0.0/0===192.0.2.100[@alice,+MC+S=C]---192.0.2.1...203.0.113.70===10.9.0.0/16; unrouted; eroute owner: #0\n"""
LOG = """\
Dec  7 22:00:37.608290: | entry state hash_table_entries.ike_spis@0x55fb0f853070 "user-0"[1] 192.0.2.100 #1: 91 27 cf 9f  45 81 90 d8  e4 d2 84 f7  ca b5 d3 2c added to hash table bucket 0x55fad3e8b9e0
Dec  7 22:00:37.609000: "user-0"[1] 192.0.2.100 #1: sent IKE_SA_INIT reply {cipher=AES_GCM_16_128 integ=n/a prf=HMAC_SHA2_256 group=DH19}
"""
XFRM = """\
src 203.0.113.70 dst 192.0.2.100
\tproto esp spi 0xc9a4bc1f reqid 16389 mode tunnel
\treplay-window 0 flag af-unspec
\taead rfc4106(gcm(aes)) 0x00112233445566778899aabbccddeeff01020304 128
\tlifetime current:
\t  84(bytes), 1(packets)
src 192.0.2.100 dst 203.0.113.70
\tproto esp spi 0x5d9e0e2a reqid 16389 mode tunnel
\treplay-window 32 flag af-unspec
\taead rfc4106(gcm(aes)) 0xffeeddccbbaa99887766554433221100a1a2a3a4 128
\tencap type espinudp sport 4500 dport 4500 addr 0.0.0.0
\tlifetime current:
\t  84(bytes), 2(packets)
"""


def test_status_from_whack_and_xfrm():
    (ike,) = ike_sas(SHOWSTATES, TRAFFIC, STATUS, LOG, parse_xfrm_state(XFRM), initiator=False)
    assert ike["state"] == "ESTABLISHED" and ike["spi_i"] == "9127cf9f458190d8" and ike["spi_r"] == "e4d284f7cab5d32c"
    assert ike["dh_group"] == "DH19" and ike["integ_alg"] is None and ike["remote_id"] == "@alice"
    assert ike["remote_vips"] == ["100.64.0.1"]
    (child,) = ike["child_sas"]
    assert child["state"] == "INSTALLED" and child["spi_in"] == "5d9e0e2a" and child["spi_out"] == "c9a4bc1f"
    assert child["local_ts"] == ["10.1.0.0/16"] and child["remote_ts"] == ["100.64.0.1/32"]
    assert child["encr_alg"] == "AES_GCM_16" and child["encr_keysize"] == 128 and child["bytes_in"] == 84
    assert child["keys"]["encr_in"] == "ffeeddccbbaa99887766554433221100a1a2a3a4"
    assert child["keys"]["encr_out"] == "00112233445566778899aabbccddeeff01020304"


def test_client_cp_from_the_log():
    log = ('"vpn"[1] 203.0.113.70 #2: received INTERNAL_IP4_ADDRESS 100.64.0.1\n'
           '"vpn"[1] 203.0.113.70 #2: received INTERNAL_IP4_DNS 10.1.2.53\n')
    assert received_cp(log) == {"address": "100.64.0.1", "dns": ["10.1.2.53"]}


def test_client_ike_sa_from_the_connection_line():
    showstates = ('000 #1: "vpn"[1] 203.0.113.70:500 STATE_V2_ESTABLISHED_IKE_SA (established IKE SA); '
                  'REKEY in 27758s; REPLACE in 28794s; newest; idle;\n')
    (ike,) = ike_sas(showstates, "", CLIENT_STATUS, "", {}, initiator=True)
    assert (ike["local_host"], ike["local_id"], ike["remote_host"]) == ("192.0.2.100", "@alice", "203.0.113.70")
    assert ike["initiator"] and ike["child_sas"] == []


def test_nat_detection_from_plutos_debug_log():
    """Which end is behind a NAT comes from pluto's NAT_TRAVERSAL lines, for the state named next."""
    from testbed.vendors.libreswan.status import nat_detection
    initiator = ("Dec  8 02:05:19.312052: | NAT_TRAVERSAL this end is behind NAT\n"
                 "Dec  8 02:05:19.312112: | NAT_TRAVERSAL that end is NOT behind NAT\n"
                 "Dec  8 02:05:19.312170: | NAT_TRAVERSAL nat-keepalive enabled 203.0.113.70:500\n"
                 "Dec  8 02:05:19.312392: | NAT: #1 floating local port from 10.77.0.100:500 to 10.77.0.100:4500\n")
    responder = ("| NAT_TRAVERSAL this end is NOT behind NAT\n| NAT_TRAVERSAL that end is behind NAT 203.0.113.10:500\n"
                 "| NAT: responder so initiator gets to switch ports\n| job 1 helper 0 #3 process_v2_IKE_SA_INIT_request\n")
    assert nat_detection(initiator) == {1: {"nat_local": True, "nat_remote": False}}
    assert nat_detection(responder) == {3: {"nat_local": False, "nat_remote": True}}
    assert nat_detection("| #1 STATE_V2_PARENT_R0\n") == {}


def test_kernel_xfrm_errors_are_the_nonzero_counters_of_the_node():
    from types import SimpleNamespace

    from testbed.vendors.node_daemon import kernel_xfrm_errors
    stat = "XfrmInError                     0\nXfrmInNoStates                  3\nXfrmInTmplMismatch              12\n"
    world = SimpleNamespace(run_in=lambda node, argv: SimpleNamespace(stdout=stat if node == "r" else ""))
    assert kernel_xfrm_errors(world, "r") == {"XfrmInNoStates": 3, "XfrmInTmplMismatch": 12}
    assert kernel_xfrm_errors(world, "g") == {}


def test_an_spi_whack_prints_without_leading_zeros_is_eight_digits():
    """whack drops an SPI's leading zeros (esp.b77e47c@...); the status and the XFRM lookup use 8."""
    showstates = SHOWSTATES.replace("esp.5d9e0e2a@", "esp.b77e47c@")
    xfrm = XFRM.replace("spi 0x5d9e0e2a", "spi 0x0b77e47c")
    (ike,) = ike_sas(showstates, TRAFFIC, STATUS, LOG, parse_xfrm_state(xfrm), initiator=False)
    (child,) = ike["child_sas"]
    assert child["spi_in"] == "0b77e47c" and child["bytes_in"] == 84
    assert child["keys"]["encr_in"] == "ffeeddccbbaa99887766554433221100a1a2a3a4"
