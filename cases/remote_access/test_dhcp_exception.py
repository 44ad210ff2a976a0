"""The DHCP exception (draft-gupta section 4): while the full tunnel is up and R's host filter admits
nothing unsolicited, R still renews the lease of its access-network address directly with the DHCP
server on that network (it cannot renew it through the tunnel), and nothing else from the access
network reaches R.

A real DHCP server (ISC dhcpd on ar1, 8-second leases, so renewals come every 4 s) hands R its fn1
address; a real DHCP client (ISC dhclient on R, with a script that only sets the address and the
default route) keeps it. The tunnel comes up; then on R's link the renewals (DHCPREQUEST from R's
address to the server, DHCPACK back) travel in clear, outside ESP, decoded by tshark, and the lease
stays R's; a UDP datagram and a TCP connection from ar1 to R get nothing, R's echo sink sees none.
"""
import time

import pytest

from testbed.daemons import start_daemon
from testbed.ipsec_checks import PLAN, role_of, wait_established
from testbed.naming import station_ifname
from testbed.profiles import start_roles

pytestmark = [pytest.mark.scenario("remote-access-dhcp"), pytest.mark.impl_matrix("gw")]

R_IF = station_ifname("r")
AR1 = str(PLAN.address("ar1", "fn1"))
R_ADDR = str(PLAN.attachments["fn1"].address)
H = str(PLAN.address("h"))
LEASE = 8
SCRIPT = """#!/bin/sh
# R's dhclient script: the address and the default route, nothing else (no resolv.conf)
echo "R-DHCP reason=$reason ip=$new_ip_address"
case "$reason" in
  BOUND|REBOOT) ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface"
                ip route replace default via "${new_routers%% *}" dev "$interface" ;;
  EXPIRE|FAIL|RELEASE|STOP) ip addr del "$old_ip_address/$old_subnet_mask" dev "$interface" ;;
esac
exit 0
"""
DHCPD_CONF = f"""default-lease-time {LEASE}; max-lease-time {LEASE}; min-lease-time {LEASE};
authoritative;
subnet 192.0.2.0 netmask 255.255.255.128 {{ range {R_ADDR} {R_ADDR}; option routers {AR1}; }}
"""


@pytest.fixture
def dhcp_server(world, case_dir):
    conf, leases = case_dir / "dhcpd.conf", case_dir / "dhcpd.leases"
    conf.write_text(DHCPD_CONF)
    leases.write_text("")
    argv = ["dhcpd", "-f", "-d", "-4", "-cf", str(conf), "-lf", str(leases), "-pf", str(case_dir / "dhcpd.pid"),
            "ar1-fn1"]
    return world.start("ar1", "dhcpd", argv, ready=r"Server starting service", timeout=10)


@pytest.fixture
def dhcp_client(world, case_dir, dhcp_server):
    """R's static fn1 address goes; dhclient gets it (and the default route) from ar1 and keeps renewing."""
    world.run_in("r", ["ip", "addr", "flush", "dev", R_IF], check=True)
    script = case_dir / "dhclient-script"
    script.write_text(SCRIPT)
    script.chmod(0o755)
    (case_dir / "dhclient.conf").write_text("")
    argv = ["dhclient", "-d", "-v", "-4", "-sf", str(script), "-cf", str(case_dir / "dhclient.conf"),
            "-lf", str(case_dir / "dhclient.leases"), "-pf", str(case_dir / "dhclient.pid"), R_IF]
    return world.start("r", "dhclient", argv, ready=rf"bound to {R_ADDR}", timeout=20)


@pytest.mark.req("gupta-4-dhcp-exception", "gupta-4b-no-unsolicited")
def test_lease_renewed_directly_while_the_tunnel_is_up(world, capture, scenario, dhcp_client):
    link = capture("r", R_IF, bpf="udp port 67 or udp port 68 or ip proto 50 or udp port 500 or udp port 4500 "
                              "or udp port 5555 or tcp port 8080")
    roles = start_roles(world, scenario.roles.values())
    wait_established(role_of(roles, "vpn-client"), timeout=10)
    wait_established(role_of(roles, "vpn-gateway"))
    up_at = time.time()
    sink = start_daemon(world, "r", "instruments.sink", args=["--udp", "5555", "--tcp", "8080"])
    assert world.reach("ar1", "udp", R_ADDR, 5555, timeout=1)["result"] != "ok", "ar1's datagram got an answer from R"
    assert world.reach("ar1", "tcp", R_ADDR, 8080, timeout=1)["result"] != "ok", "ar1 connected to R"
    time.sleep(2 * LEASE / 2 + 1)  # at least two renewals (T1 = lease/2)
    assert world.ping("r", H, timeout=3), "the tunnel does not carry R's traffic to H any more"
    pcap = link.stop()

    dhcp = link.packets(f"dhcp && frame.time_epoch > {up_at}",
                        ["ip.src", "ip.dst", "dhcp.option.dhcp", "dhcp.ip.client", "dhcp.option.dhcp_server_id"])
    requests = [p for p in dhcp if p["dhcp.option.dhcp"] == ["3"]]
    acks = [p for p in dhcp if p["dhcp.option.dhcp"] == ["5"]]
    assert len(requests) >= 2, f"fewer than two renewals on R's link after the tunnel came up: {dhcp}"
    assert all(p["ip.src"] == [R_ADDR] and p["ip.dst"] == [AR1] for p in requests), \
        f"renewals should go from R's address straight to the server (unicast, RFC 2131 4.4.5): {requests}"
    assert len(acks) >= 2 and all(p["ip.src"] == [AR1] and p["ip.dst"] == [R_ADDR] for p in acks), \
        f"the server's DHCPACKs did not reach R on its link: {acks}"
    renewed = (world.log_dir / "r.dhclient.log").read_text().count(f"R-DHCP reason=RENEW ip={R_ADDR}")
    assert renewed >= 2, f"dhclient on R accepted {renewed} renewals (DHCPACKs), expected two or more"
    assert world.run_in("r", ["ip", "-4", "addr", "show", "dev", R_IF]).stdout.count(R_ADDR) == 1, "R lost its lease"
    assert not sink.status()["received"], f"something unsolicited reached R: {sink.status()['received']}"
    assert link.packets(f"ip.src == {AR1} && (udp.dstport == 5555 || tcp.dstport == 8080)", ["ip.src"]), \
        f"the unsolicited probes from ar1 are not in the capture {pcap}: the check proves nothing"
