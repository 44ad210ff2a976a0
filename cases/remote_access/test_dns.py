"""H's internal DNS name resolves on R only while the tunnel is up (draft-gupta section 5: "the remote
host must direct all DNS queries to an appropriate resolver within the protected network ... learned
as part of the key negotiation process"; RFC 7296 section 3.15, INTERNAL_IP4_DNS).

The internal resolver is dnsmasq on node dns (10.1.2.53, the address the gateway hands out in its
configuration payload), answering h.intranet.example with H's address. The name is looked up on R
through the node's ordinary resolver configuration (glibc: /etc/resolv.conf, as `getent hosts` does),
so the case sees what an application on R sees, whatever way the client implementation uses to point
the resolver at the internal server.
"""
import subprocess
import sys

import pytest

from testbed.ipsec_checks import PLAN, check_tunnel, role_of, start_dns_server
from testbed.profiles import RoleUnavailable, start_roles
from testbed.report.verdicts import not_run

pytestmark = pytest.mark.scenario("remote-access-basic")

H = str(PLAN.address("h"))
RESOLVER = str(PLAN.address("dns"))  # 10.1.2.53
NAME = "h.intranet.example"


@pytest.fixture
def internal_dns(world):
    """dnsmasq on node dns: authoritative for nothing else, no upstream, only H's name."""
    return start_dns_server(world, "dns", RESOLVER, {NAME: H})


# one A query straight to a server (no resolver configuration involved); prints the first answer's address
QUERY = r"""
import socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
q = struct.pack("!6H", 0x7e57, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack("!2H", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(q, (server, 53))
a = s.recv(512)
print(socket.inet_ntoa(a[-4:]) if struct.unpack("!H", a[6:8])[0] else "no answer")
"""


def resolve(world, node: str) -> subprocess.CompletedProcess:
    """`getent hosts NAME` in the node, through its /etc/resolv.conf; one try of one second per server
    (RES_OPTIONS), so a resolver that cannot be reached fails fast instead of after glibc's 5 s x 2."""
    return world.run_in(node, ["env", "RES_OPTIONS=timeout:1 attempts:1", "timeout", "5",
                               "getent", "hosts", NAME], timeout=10)


def resolv_conf(world, node: str) -> str:
    return world.run_in(node, ["cat", "/etc/resolv.conf"]).stdout.strip()


@pytest.mark.req("gupta-5-internal-dns", "rfc7296-3.15-cp")
def test_internal_name_resolves_only_while_the_tunnel_is_up(world, internal_dns, scenario):
    """Before the tunnel: the name does not resolve on R. With the tunnel: it resolves to H's address
    (the internal resolver the gateway announced, reached through the tunnel). After the client role
    stops: it does not resolve any more (R's own resolver configuration is back)."""
    # the resolver answers inside the intranet, and R cannot use it without the tunnel
    inside = world.run_in("h", [sys.executable, "-c", QUERY, RESOLVER, NAME], timeout=10)
    assert inside.stdout.strip() == H, f"the internal resolver does not answer H: {inside.stdout}{inside.stderr}"
    before = resolve(world, "r")
    assert before.returncode != 0, f"{NAME} resolves on R before any tunnel exists: {before.stdout!r}"
    before_conf = resolv_conf(world, "r")

    try:
        started = start_roles(world, scenario.roles.values())
    except RoleUnavailable as exc:
        not_run(str(exc))
    t = check_tunnel(started, scenario)
    client = role_of(started, "vpn-client")
    gw_dns = scenario.roles[role_of(started, "vpn-gateway").role.name].config["dns"]
    announced = t["client"].get("dns")
    assert announced == [gw_dns], \
        f"the client role ({client.role.impl}) did not take the internal resolver {gw_dns} from G: dns={announced}"

    up = resolve(world, "r")
    assert up.returncode == 0 and up.stdout.split()[:1] == [H], (
        f"{NAME} does not resolve to {H} on R while the tunnel is up (getent status {up.returncode}, "
        f"output {up.stdout.strip()!r}). The client role ({client.role.impl}) reports the internal resolver "
        f"{announced} but R's resolver configuration does not use it; /etc/resolv.conf in R reads:\n"
        f"{resolv_conf(world, 'r')}")
    assert world.ping("r", H, timeout=3), "the tunnel carries DNS but not ICMP to H?"

    client.stop()
    after = resolve(world, "r")
    assert after.returncode != 0, (f"{NAME} still resolves on R after the client role stopped "
                                   f"({after.stdout.strip()!r}); /etc/resolv.conf: {resolv_conf(world, 'r')}")
    assert resolv_conf(world, "r") == before_conf, "R's resolver configuration was not restored"
