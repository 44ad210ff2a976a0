"""The kernel-XFRM vendor profiles (strongswan-kernel, libreswan) never pretend: on a kernel without
ESP in XFRM they refuse every role with that reason (the case is SKIPPED with it, never PASS), and
strongswan-kernel says so before a case builds its world (profiles.unavailable). The rest is the
strongswan-kernel profile without charon: the strongswan profile's code with the kernel's data plane
(plugins, the gateway's firewall rules, what stop() flushes, the status), and its conformance
statement against the strongswan profile's."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from testbed import vm_kernel
from testbed import profiles
from testbed.conformance.ics import load_statement
from testbed.profile_api import RoleUnavailable
from testbed.pytest_plugin import skip_unavailable
from testbed.scenario import SCENARIO_DIR, load_scenario
from testbed.status_schema import check_status
from testbed.vendors.libreswan import PROFILE as LIBRESWAN
from testbed.vendors.strongswan import PROFILE as STRONGSWAN
from testbed.vendors.strongswan import status as sw_status
from testbed.vendors.strongswan.charon import CharonRole
from testbed.vendors.gateway_plumbing import gateway_rules, undo_rule
from testbed.vendors.strongswan.config import KERNEL, LIBIPSEC, PLANES, render, strongswan_conf
from testbed.vendors.strongswan_kernel import PROFILE as STRONGSWAN_KERNEL

NO_ESP = "this kernel has no ESP in XFRM (test)"
SCENARIO = load_scenario(SCENARIO_DIR / "remote-access-strongswan.yaml")
PLAN = SCENARIO.plan()
GW, CLIENT = SCENARIO.roles["gw"], SCENARIO.roles["client"]


class Role:
    name = "gw"
    kind = "vpn-gateway"


@pytest.fixture
def no_esp(monkeypatch):
    """A kernel without ESP, whatever this machine's is (the probe's answer patched in)."""
    monkeypatch.delenv(vm_kernel.PROBE_ENV, raising=False)
    monkeypatch.setattr(vm_kernel, "xfrm_unavailable", lambda: NO_ESP)
    vm_kernel._probed.cache_clear()
    yield
    vm_kernel._probed.cache_clear()


@pytest.mark.parametrize("profile", [STRONGSWAN_KERNEL, LIBRESWAN], ids=lambda p: p.name)
def test_refuses_without_esp_with_the_reason(profile, no_esp):
    assert profile.kinds == {"vpn-gateway", "vpn-client"}
    with pytest.raises(RoleUnavailable, match="role gw: ") as exc:
        profile.start_role(None, Role())
    assert "XFRM" in str(exc.value) and NO_ESP in str(exc.value)


def test_this_machines_probe_decides(monkeypatch):
    """With the real probe: unavailable exactly when vm_kernel says so, with its reason."""
    from testbed.vm_kernel import xfrm_unavailable

    monkeypatch.delenv(vm_kernel.PROBE_ENV, raising=False)
    reason = xfrm_unavailable()
    said = STRONGSWAN_KERNEL.unavailable("vpn-gateway")
    assert (said is None) == (reason is None) and (reason is None or reason in said)


def test_the_probe_can_be_skipped_for_development(no_esp, monkeypatch):
    assert STRONGSWAN_KERNEL.unavailable("vpn-client") and NO_ESP in STRONGSWAN_KERNEL.unavailable("vpn-client")
    monkeypatch.setenv(vm_kernel.PROBE_ENV, "skip")
    assert STRONGSWAN_KERNEL.unavailable("vpn-client") is None


def test_unavailable_is_asked_once_per_process_and_kind(monkeypatch):
    asked = []

    class Fake:
        name, kinds = "fake", frozenset({"vpn-gateway", "vpn-client"})

        def unavailable(self, kind):
            asked.append(kind)
            return "no such kernel here"

    fake = Fake()
    monkeypatch.setattr(profiles, "installed", lambda: {"fake": fake, "strongswan": STRONGSWAN})
    gw, client = (dataclasses.replace(r, impl="fake") for r in (GW, CLIENT))
    assert profiles.unavailable(gw) == "role gw: no such kernel here"
    assert profiles.unavailable(dataclasses.replace(gw, name="gw2")) == "role gw2: no such kernel here"
    assert profiles.unavailable(client) == "role client: no such kernel here"
    assert asked == ["vpn-gateway", "vpn-client"]
    assert profiles.unavailable(GW) is None  # a profile without unavailable() is asked nothing


def test_a_case_is_not_run_before_its_world_with_the_reason(monkeypatch):
    monkeypatch.setattr(profiles, "unavailable", lambda role: f"role {role.name}: {NO_ESP}" if role.name == "client" else None)
    with pytest.raises(pytest.skip.Exception) as skipped:
        skip_unavailable(SCENARIO)
    assert str(skipped.value) == f"not run: role client: {NO_ESP}"  # the report says NOT-RUN
    monkeypatch.setattr(profiles, "unavailable", lambda role: None)
    skip_unavailable(SCENARIO)  # nothing to say: the case goes on


# ---- the kernel data plane, rendered ---------------------------------------------------------------
def load_line(text: str) -> str:
    return next(line.strip() for line in text.splitlines() if line.strip().startswith("load = random"))


def test_planes_by_profile_name():
    assert PLANES == {"strongswan": LIBIPSEC, "strongswan-kernel": KERNEL}
    assert STRONGSWAN_KERNEL.name == KERNEL.profile and STRONGSWAN.name == LIBIPSEC.profile


def test_kernel_plane_loads_kernel_netlink_without_libipsec(tmp_path):
    info = render(CLIENT, PLAN).info
    kernel = load_line(strongswan_conf(tmp_path / "v", tmp_path / "l", tmp_path / "k", None, info, KERNEL)).split()
    libipsec = load_line(strongswan_conf(tmp_path / "v", tmp_path / "l", tmp_path / "k", None, info)).split()
    assert "kernel-libipsec" not in kernel and "kernel-netlink" in kernel and "socket-default" in kernel
    # kernel-libipsec before kernel-netlink: the IPsec backend first, the networking after it
    assert libipsec.index("kernel-libipsec") < libipsec.index("kernel-netlink")
    assert [p for p in libipsec if p != "kernel-libipsec"] == kernel


def test_libipsec_gateway_rules_name_the_tun_device():
    info = render(dataclasses.replace(GW, config={**GW.config, "internal_presence": "napt", "pool": None}), PLAN).info
    inside = info["inside_interface"]
    assert gateway_rules(info, LIBIPSEC.tun) == [
        ["-A", "FORWARD", "-i", "ipsec0", "-j", "ACCEPT"],
        ["-A", "FORWARD", "-i", inside, "-o", "ipsec0", "-m", "conntrack", "--ctstate", "NEW", "-m", "conntrack",
         "!", "--ctstate", "DNAT", "-j", "DROP"],
        ["-A", "FORWARD", "-o", "ipsec0", "-j", "ACCEPT"],
        ["-t", "nat", "-A", "POSTROUTING", "-s", "100.64.0.0/24", "-o", inside, "-j", "SNAT",
         "--to-source", info["inside_address"]]]


def test_kernel_gateway_rules_use_the_policy_match():
    info = render(dataclasses.replace(GW, config={**GW.config, "internal_presence": "napt", "internet_access": True}),
                  PLAN).info
    inside = info["inside_interface"]
    came, leaves = ["-m", "policy", "--dir", "in", "--pol", "ipsec"], ["-m", "policy", "--dir", "out", "--pol", "ipsec"]
    rules = gateway_rules(info)
    assert not any("ipsec0" in rule for rule in rules)
    assert rules == [
        ["-I", "INPUT", *came, "-j", "ACCEPT"],  # before the DMZ policy's DROP on G_e
        ["-A", "FORWARD", *came, "-j", "ACCEPT"],
        ["-A", "FORWARD", "-i", inside, *leaves, "-m", "conntrack", "--ctstate", "NEW", "-m", "conntrack",
         "!", "--ctstate", "DNAT", "-j", "DROP"],
        ["-A", "FORWARD", *leaves, "-j", "ACCEPT"],
        ["-t", "nat", "-A", "POSTROUTING", "-s", "100.64.0.0/24", "-o", inside, "-j", "SNAT",
         "--to-source", info["inside_address"]],
        ["-t", "nat", "-A", "POSTROUTING", "-s", "100.64.0.0/24", "!", "-o", inside, "-j", "MASQUERADE"]]
    pool = gateway_rules(render(GW, PLAN).info)  # Appendix B: no NAPT, no SNAT
    assert pool == [["-I", "INPUT", *came, "-j", "ACCEPT"], ["-A", "FORWARD", *came, "-j", "ACCEPT"],
                    ["-A", "FORWARD", *leaves, "-j", "ACCEPT"]]


def test_undo_rule_deletes_what_was_added():
    assert undo_rule(["-I", "INPUT", "-m", "policy", "--dir", "in", "--pol", "ipsec", "-j", "ACCEPT"]) == \
        ["-D", "INPUT", "-m", "policy", "--dir", "in", "--pol", "ipsec", "-j", "ACCEPT"]
    assert undo_rule(["-t", "nat", "-A", "POSTROUTING", "-s", "10.0.0.0/8", "-j", "MASQUERADE"]) == \
        ["-t", "nat", "-D", "POSTROUTING", "-s", "10.0.0.0/8", "-j", "MASQUERADE"]


# ---- charon's node plumbing with a recording world -------------------------------------------------
class World:
    """What CharonRole uses of testbed.world.World, recording each command run in a node."""

    def __init__(self, tmp: Path, addresses: dict[str, list[str]]):
        self.log_dir, self.plan, self.calls = tmp, PLAN, []
        self.run = SimpleNamespace(path=lambda name: tmp / name)
        self.addresses = addresses

    def run_in(self, node, argv, check=False, timeout=None):
        self.calls.append(list(argv))
        out = ""
        if argv[:4] == ["ip", "-j", "-4", "addr"]:
            out = json.dumps([{"ifname": i, "addr_info": [{"local": a.split("/")[0], "prefixlen": int(a.split("/")[1])}
                                                          for a in addrs]} for i, addrs in self.addresses.items()])
        elif argv[:5] == ["ip", "-j", "-4", "route", "show"]:
            out = json.dumps([{"dst": "default", "dev": "r-eth0"}])
        return SimpleNamespace(returncode=0, stdout=out, stderr="")


def test_kernel_gateway_plumbing_is_taken_back_at_stop(tmp_path):
    world = World(tmp_path, {"g-dmz": ["203.0.113.70/26"]})
    charon = CharonRole(world, GW, KERNEL)
    charon.info = render(GW, PLAN).info
    charon.plumbing.apply(charon.info, KERNEL.tun)
    added = [c[1:] for c in world.calls if c[0] == "iptables"]
    assert added == gateway_rules(charon.info)
    world.calls.clear()
    charon.stop()
    assert [c[1:] for c in world.calls if c[0] == "iptables"] == [undo_rule(r) for r in reversed(added)]
    assert ["ip", "xfrm", "policy", "flush"] in world.calls and ["ip", "xfrm", "state", "flush"] in world.calls
    assert ["ip", "route", "flush", "table", "220"] in world.calls


def test_libipsec_stop_flushes_nothing(tmp_path):
    world = World(tmp_path, {})
    CharonRole(world, GW).stop()
    assert not any(c[:2] == ["ip", "xfrm"] for c in world.calls)


def test_a_killed_clients_virtual_ip_goes_at_stop(tmp_path):
    world = World(tmp_path, {"r-eth0": ["192.0.2.100/25", "10.1.3.1/32"]})
    charon = CharonRole(world, CLIENT, KERNEL)
    charon.charon_log.write_text("22:00:59 04[IKE] <vpn|1> installing new virtual IP 10.1.3.1\n")
    charon.stop()
    assert ["ip", "addr", "del", "10.1.3.1/32", "dev", "r-eth0"] in world.calls
    assert not any("192.0.2.100/25" in c for c in world.calls)


def test_kernel_status_names_the_profile_and_the_outer_interface(tmp_path):
    sa = {"uniqueid": "1", "version": "2", "state": "ESTABLISHED", "initiator": "yes", "local-host": "192.0.2.100",
          "local-port": "500", "remote-host": "203.0.113.70", "remote-port": "500", "local-vips": ["10.1.3.1"],
          "local-id": "alice", "remote-id": "203.0.113.70", "initiator-spi": "bd9e54ac456f043f",
          "responder-spi": "9ce225e8ec165a5a", "established": "1", "child-sas": {}}
    world = World(tmp_path, {"r-eth0": ["192.0.2.100/25", "10.1.3.1/32"], "lo": ["127.0.0.1/8"]})
    charon = CharonRole(world, CLIENT, KERNEL)
    charon.process = SimpleNamespace(running=lambda: True)
    charon.vici = SimpleNamespace(stream=lambda *_: [{"vpn": sa}])
    charon.info = render(CLIENT, PLAN).info
    status = sw_status.snapshot(charon)
    check_status(status, "vpn-client")
    assert status["implementation"] == "strongswan-kernel" and status["tunnel_interface"] == "r-eth0"
    assert status["ike_sas"][0]["encap"] is False and status["virtual_ips"] == ["10.1.3.1"]


# ---- the conformance statement -----------------------------------------------------------------------
def test_statement_is_the_strongswan_one_without_the_libipsec_findings():
    kernel = load_statement(STRONGSWAN_KERNEL.conformance_statement)
    libipsec = load_statement(STRONGSWAN.conformance_statement)
    assert kernel.implementation == STRONGSWAN_KERNEL.name
    assert kernel.features == libipsec.features  # the same charon and proposals
    # kernel-libipsec's UDP-only ESP input and faked NAT detection are not the kernel's
    assert set(libipsec.expected) - set(kernel.expected) == {"UDPENC.SGW.ENCAP.6", "UDPENC.SGW.NATD.1",
                                                              "IKE.EN-I.NAT.3"}
    for part, exp in kernel.expected.items():  # charon's IKE findings: carried over as they are
        assert dataclasses.astuple(exp) == dataclasses.astuple(libipsec.expected[part]), part
