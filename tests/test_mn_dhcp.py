"""The mobile node's DHCP pieces without a network: lease parsing (nodes/runtime/host/dhcp.py), the client
driven with a stand-in for dhclient, and the `colocated` config (static or `dhcp`)."""
from __future__ import annotations

import asyncio
import json
import subprocess
from ipaddress import IPv4Address as A, IPv4Interface as I

import pytest

from nodes.runtime.host import dhcp

from nodes.runtime.mip import config as mip_config
from nodes.runtime.host.dhcp import DhcpClient, LeaseError, parse_lease_line

LINE = ("MN-DHCP-LEASE reason=BOUND ip=10.77.0.120 mask=255.255.255.0 routers=10.77.0.1 "
        "server=10.77.0.1 lease=3600")


# ---- lease lines ---------------------------------------------------------------------------------
def test_parse_lease_line():
    lease = parse_lease_line(LINE)
    assert lease.address == I("10.77.0.120/24") and lease.router == A("10.77.0.1")
    assert lease.server == A("10.77.0.1") and lease.lease_time == 3600 and lease.reason == "BOUND"
    assert lease.as_dict() == {"address": "10.77.0.120/24", "router": "10.77.0.1", "server": "10.77.0.1",
                               "lease_time": 3600, "reason": "BOUND"}


@pytest.mark.parametrize("line", ["", "Listening on LPF/r-eth0/fe:a1:aa:53:a6:f4", "DHCPACK of 10.77.0.120",
                                  "mn-dhcp-lease ip=1.2.3.4"])
def test_other_lines_are_not_leases(line):
    assert parse_lease_line(line) is None


def test_lease_without_router_or_server():
    lease = parse_lease_line("MN-DHCP-LEASE reason=REBOOT ip=10.0.0.5 mask=255.255.0.0 routers= server= lease=")
    assert lease.address == I("10.0.0.5/16") and lease.router is None and lease.server is None
    assert lease.lease_time is None and lease.reason == "REBOOT"


@pytest.mark.parametrize("line, what", [
    ("MN-DHCP-LEASE reason=BOUND mask=255.255.255.0", "without an address"),
    ("MN-DHCP-LEASE reason=BOUND ip=10.77.0.300 mask=255.255.255.0", "bad address"),
    ("MN-DHCP-LEASE reason=BOUND ip=10.77.0.3 mask=255.0.255.0", "bad address"),
    ("MN-DHCP-LEASE reason=BOUND ip=10.77.0.3 mask=255.255.255.0 routers=x", "lease line"),
    ("MN-DHCP-LEASE reason=BOUND ip=10.77.0.3 mask=255.255.255.0 lease=1h", "lease line"),
    ("MN-DHCP-LEASE reason=BOUND ip=10.77.0.3 mask=255.255.255.0 routers=10.9.0.1", "outside the leased subnet"),
    ("MN-DHCP-LEASE reason=BOUND 10.77.0.3", "not key=value"),
])
def test_bad_lease_lines_are_named(line, what):
    with pytest.raises(LeaseError, match=what):
        parse_lease_line(line)


def run_script(env: dict) -> str:
    return subprocess.run(["sh", "-c", dhcp.SCRIPT], env=env, capture_output=True, text=True, check=True).stdout


def test_script_prints_the_lease_with_the_first_router():
    out = run_script({"reason": "BOUND", "new_ip_address": "10.77.0.101", "new_subnet_mask": "255.255.255.0",
                      "new_routers": "10.77.0.1 10.77.0.2", "new_dhcp_server_identifier": "10.77.0.1",
                      "new_dhcp_lease_time": "600"})
    lease = parse_lease_line(out)
    assert lease.address == I("10.77.0.101/24") and lease.router == A("10.77.0.1") and lease.lease_time == 600


@pytest.mark.parametrize("reason", ["PREINIT", "FAIL", "EXPIRE", "RELEASE", "STOP"])
def test_script_is_silent_otherwise(reason):
    assert run_script({"reason": reason, "new_ip_address": "10.77.0.101"}) == ""


def test_client_files(tmp_path):
    dhcp.prepare(tmp_path / "d", timeout=2.6)
    conf = (tmp_path / "d" / "dhclient.conf").read_text()
    assert "timeout 3;" in conf and "retry 1;" in conf and "initial-interval 1;" in conf
    argv = dhcp.client_argv("r-eth0", tmp_path / "d")
    assert argv[:3] == ["dhclient", "-d", "-1"] and argv[-1] == "r-eth0"
    assert argv[argv.index("-sf") + 1] == str(tmp_path / "d" / "dhclient-script")
    assert (tmp_path / "d" / "dhclient-script").stat().st_mode & 0o111


# ---- the client, with a stand-in for dhclient ----------------------------------------------------
def fake_dhclient(tmp_path, body: str):
    path = tmp_path / "fake-dhclient"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_client_takes_the_lease_and_stops_the_process(tmp_path):
    fake = fake_dhclient(tmp_path, f'echo "Listening on LPF/${{12}}"\necho "{LINE}"\nexec sleep 30\n')
    client = DhcpClient("r-eth0", tmp_path / "w", timeout=3, dhclient=fake)

    async def go():
        lease, seconds = await client.acquire()
        return lease, seconds, client.proc

    lease, seconds, proc = asyncio.run(go())
    assert lease.address == I("10.77.0.120/24") and 0 <= seconds < 3 and proc is None
    assert client.output[0] == "Listening on LPF/r-eth0"


def test_client_failure_names_the_exit(tmp_path):
    fake = fake_dhclient(tmp_path, 'echo "No DHCPOFFERS received."\nexit 2\n')
    with pytest.raises(LeaseError, match="exited with status 2 .*No DHCPOFFERS"):
        asyncio.run(DhcpClient("r-eth0", tmp_path / "w", timeout=3, dhclient=fake).acquire())


def test_client_times_out(tmp_path):
    fake = fake_dhclient(tmp_path, "exec sleep 30\n")
    with pytest.raises(LeaseError, match="no DHCP lease on r-eth0 within 1.0 s"):
        asyncio.run(DhcpClient("r-eth0", tmp_path / "w", timeout=1.0, dhclient=fake).acquire())


# ---- config --------------------------------------------------------------------------------------
BASE = {"home_address": "10.1.1.100", "home_agent": "10.1.1.2", "home_network": "10.1.1.0/24", "spi": 1000,
        "key": "6d6e2d68612d6b65792d74657374626564", "iface": "r-eth0", "home_router": "10.1.1.1"}


def load(tmp_path, **extra):
    path = tmp_path / "mn.json"
    path.write_text(json.dumps({**BASE, **extra}))
    return mip_config.mobile_node(mip_config.Fields(json.loads(path.read_text()), path))


def test_config_dhcp_and_static_networks(tmp_path):
    _cfg, extra = load(tmp_path, colocated={"fn3": "dhcp", "fn4": {"dhcp": True},
                                            "fn5": {"address": "10.78.0.100/24", "router": "10.78.0.1"}})
    c = extra["colocated"]
    assert c["fn3"] == {"dhcp": True} and c["fn4"] == {"dhcp": True}
    assert c["fn5"] == {"dhcp": False, "address": I("10.78.0.100/24"), "router": A("10.78.0.1")}
    assert extra["dhcp_after"] == 0.3 and extra["dhcp_timeout"] == 4.0 and extra["dhcp_client"] == "dhclient"
    assert extra["dhcp_dir"] is None


def test_config_dhcp_timers(tmp_path):
    _cfg, extra = load(tmp_path, colocated={"fn3": "dhcp"}, dhcp_after=0.1, dhcp_timeout=2, dhcp_retry=0.5,
                       dhcp_dir="/tmp/x", dhcp_client="/sbin/dhclient")
    assert (extra["dhcp_after"], extra["dhcp_timeout"], extra["dhcp_retry"]) == (0.1, 2.0, 0.5)
    assert extra["dhcp_dir"] == "/tmp/x" and extra["dhcp_client"] == "/sbin/dhclient"


@pytest.mark.parametrize("extra, message", [
    ({"colocated": {"fn3": "dhcpp"}}, ": colocated.fn3: expected \"dhcp\" or a mapping"),
    ({"colocated": {"fn3": 7}}, ": colocated.fn3: expected"),
    ({"colocated": {"fn3": {"dhcp": "yes"}}}, ": colocated.fn3.dhcp: expected true or false"),
    ({"colocated": {"fn3": {"dhcp": True, "router": "10.77.0.1"}}}, "colocated.fn3.router: expected one of the keys"),
    ({"colocated": {"fn3": {"address": "10.77.0.100"}}}, "colocated.fn3.router: expected an IPv4 address; add this required key"),
    ({"colocated": {"fn3": {"address": "10.77.0.x/24", "router": "10.77.0.1"}}}, "colocated.fn3.address"),
    ({"dhcp_timeout": 0}, ": dhcp_timeout: expected a positive number"),
    ({"dhcp_after": "soon"}, ": dhcp_after: expected a number"),
])
def test_bad_dhcp_config_is_named(tmp_path, extra, message):
    with pytest.raises(mip_config.BadConfig, match=message):
        load(tmp_path, **extra)


# ---- the runner the mobile node daemon uses for its core's StartDhcp / StopDhcp ------------------
def test_runner_reports_the_lease_of_an_attempt_and_stops_on_request(tmp_path):
    from nodes.mip.actions import StartDhcp
    from nodes.runtime.host.dhcp import DhcpRunner

    bound, failed = [], []
    good = fake_dhclient(tmp_path, f'echo "{LINE}"\nexec sleep 30\n')

    async def go():
        runner = DhcpRunner(tmp_path / "w", 3, good, lambda a, lease, s: bound.append((a, lease)),
                            lambda a, reason: failed.append((a, reason)))
        runner.start(StartDhcp(7, "r-eth0"))
        for _ in range(500):  # up to 10 s: a dhclient process to start on a loaded machine
            if bound:
                break
            await asyncio.sleep(0.02)
        runner.start(StartDhcp(8, "r-eth0"))  # a second attempt, stopped before it reports
        runner.stop()
        await asyncio.sleep(0.1)
        await runner.close()

    asyncio.run(go())
    assert [(a, str(lease.address)) for a, lease in bound] == [(7, "10.77.0.120/24")] and failed == []
