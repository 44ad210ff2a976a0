"""Co-located care-of address from DHCP (RFC 5944 section 1.7:
an address acquired by DHCP; a real DHCP client and server on the foreign network). A real DHCP server (dnsmasq) serves fn3
from the NAT router; R moves from home to fn3, finds neither an agent nor its home router, runs a real
DHCP client (dhclient) in its node, takes the leased address and router as its co-located care-of
address and registers behind the NAT with RFC 3519 UDP tunnelling. The HA's binding holds the leased
address, the server's lease file holds R's lease, H reaches the home address; R goes home and
deregisters."""
import json
from ipaddress import IPv4Address

import pytest

from testbed import handoff
from testbed.mip_checks import HOME, NAT_PUBLIC, at_home, binding, mac_of, registered, wait_for

pytestmark = pytest.mark.scenario("mobility-dhcp")

POOL = ("10.77.0.100", "10.77.0.150")
NAT_INSIDE = "nat-fn3"


def start_dhcp_server(world, case_dir):
    """dnsmasq on the NAT router's inside interface: DHCP only (no DNS), per-run lease and pid files."""
    leases = case_dir / "dnsmasq.leases"
    leases.unlink(missing_ok=True)
    argv = ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--no-resolv", "--no-hosts",
            f"--interface={NAT_INSIDE}", "--bind-interfaces", "--except-interface=lo",
            f"--dhcp-range={POOL[0]},{POOL[1]},255.255.255.0,1h", "--dhcp-option=option:router,10.77.0.1",
            f"--dhcp-leasefile={leases}", f"--pid-file={case_dir / 'dnsmasq.pid'}", "--user=root",
            "--dhcp-authoritative", "--no-ping", "--log-dhcp", "--log-facility=-"]
    proc = world.start("nat", "dnsmasq", argv, ready=r"DHCP, IP range")
    return proc, leases


def leases_of(path, mac: str) -> list[str]:
    """Addresses the server's lease file gives to `mac` (lines: expiry mac ip hostname client-id)."""
    if not path.exists():
        return []
    return [f[2] for f in (line.split() for line in path.read_text().splitlines()) if len(f) >= 3 and f[1] == mac]


def events_of(world, node: str, role: str) -> list[dict]:
    """The structured log of a role's daemon (testbed.daemons writes it to the world's log dir)."""
    path = world.log_dir / f"{node}.{role}.events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


@pytest.mark.req("rfc5944-3.6-colocated", "rfc3519-nat-traversal", "rfc5944-2.4.2-move-detection")
def test_dhcp_colocated_behind_nat(world, roles, case_dir):
    mn, ha = roles["mn"], roles["ha"]
    server, lease_file = start_dhcp_server(world, case_dir)
    wait_for(lambda: at_home(mn), what="the MN to settle at home")
    assert mn.status()["dhcp"]["state"] in ("idle", "waiting"), "no DHCP at home"
    r_mac = mac_of(world, "r", "r-eth0")

    # fn3: no agent, no home router -> DHCP -> co-located registration, UDP tunnelling behind the NAT
    move = handoff.move(world, "r", "fn3", configure=False)
    s = wait_for(lambda: registered(mn, mode="colocated"), timeout=10, what="co-located registration by DHCP")
    lease = s["dhcp"]["lease"]
    assert s["dhcp"]["state"] == "bound" and lease["network"] == "fn3", s["dhcp"]
    coa = lease["address"].split("/")[0]
    assert IPv4Address(POOL[0]) <= IPv4Address(coa) <= IPv4Address(POOL[1]), lease
    assert lease["address"].endswith("/24") and lease["router"] == "10.77.0.1" and lease["server"] == "10.77.0.1"
    assert s["care_of_address"] == coa and s["last_code"] == 0 and s["tunnel"] == "udp", s
    # the server saw it: its lease file names R's MAC with that address
    assert wait_for(lambda: coa in leases_of(lease_file, r_mac), what="the lease in dnsmasq's lease file")
    assert f"DHCPACK({NAT_INSIDE}) {coa} {r_mac}" in server.log_path.read_text()
    # the address and router are configured on R
    addrs = world.run_in("r", ["ip", "-4", "-o", "addr", "show", "dev", "r-eth0"]).stdout
    assert f"{coa}/24" in addrs, addrs
    assert "via 10.77.0.1" in world.run_in("r", ["ip", "-4", "route", "show", "default"]).stdout
    # the HA's binding holds the leased address, seen through the NAT
    b = binding(ha)
    assert b["care_of_address"] == coa and b["kind"] == "udp" and b["remote"] == NAT_PUBLIC, b
    assert world.ping("h", HOME, timeout=2), "H must reach the home address with R behind the NAT"
    # the registration log line notes the DHCP time
    regs = [e for e in events_of(world, 'r', 'mn') if e.get("event") == "registration" and e.get("mode") == "colocated"]
    assert regs and regs[-1]["dhcp"]["address"] == lease["address"], regs
    dhcp_s = regs[-1]["dhcp"]["seconds"]
    assert 0 < dhcp_s < 4.0, regs[-1]
    assert any(e.get("event") == "dhcp-lease" for e in events_of(world, 'r', 'mn'))

    # home again: deregistration, no binding
    handoff.move(world, "r", "home", configure=False)
    wait_for(lambda: at_home(mn) and binding(ha) is None, timeout=5, what="deregistration at home")
    assert mn.status()["last_code"] == 0
    assert world.ping("h", HOME, timeout=2), "H must reach R back at home"
    assert coa not in world.run_in("r", ["ip", "-4", "-o", "addr", "show", "dev", "r-eth0"]).stdout
    # nothing of this MN's DHCP client is left running (other worlds' dhclients, in parallel
    # workers, share the machine's process table: only ours, with files in this case's log
    # directory, count)
    ours = [a for a in world.run_in("r", ["ps", "-eo", "args"]).stdout.splitlines()
            if a.startswith("dhclient") and str(world.log_dir) in a]
    assert ours == [], f"the MN's dhclient is still running: {ours}"
    world.mark("dhcp-colocated", coa=coa, dhcp_seconds=dhcp_s, t_up=move.t_up)
