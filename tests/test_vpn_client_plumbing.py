"""The VPN client's host plumbing over system calls (no `ip` or `mount` processes): the tunnel's
address and routes over rtnetlink (nodes/runtime/host/tunnel_routes.py) and the resolv.conf bind mount
(nodes/runtime/host/dns_mount.py), each in a namespace of its own (needs root and `unshare`; skipped
without), compared with what `ip` shows."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
needs_unshare = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare")


def unshared(flags: list[str], script: str) -> None:
    """Run `script` with this interpreter under `unshare FLAGS` (nothing touches the machine's)."""
    res = subprocess.run(["unshare", *flags, sys.executable, "-c", textwrap.dedent(script)], cwd=REPO,
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and res.stdout.strip() == "OK", res.stdout + res.stderr


ROUTES = """
    import subprocess
    from nodes.runtime.host.tundev import TunDevice
    from nodes.runtime.host.tunnel_routes import TunnelRoutes, route_get
    sh = lambda c: subprocess.run(c, shell=True, capture_output=True, text=True, check=True).stdout
    sh("ip link set lo up; ip link add va type veth peer name vb; ip link set va up; ip link set vb up;"
       "ip addr add 192.0.2.2/24 dev va; ip route add default via 192.0.2.1")
    tun = TunDevice.open("vpn0", 1400)
    assert route_get("203.0.113.70") == {"dev": "va", "gateway": "192.0.2.1", "prefsrc": "192.0.2.2"}
    assert route_get("192.0.2.9") == {"dev": "va", "prefsrc": "192.0.2.2"}
    bare = sh("ip route")
    r = TunnelRoutes("vpn0")
    r.up("100.64.0.1", "203.0.113.70", None)  # full tunnel
    routes = sh("ip route")
    for want in ("0.0.0.0/1 dev vpn0 proto static scope link src 100.64.0.1",
                 "128.0.0.0/1 dev vpn0 proto static scope link src 100.64.0.1",
                 "203.0.113.70 via 192.0.2.1 dev va proto static"):
        assert want in routes, (want, routes)
    assert "inet 100.64.0.1/32" in sh("ip -4 addr show vpn0") and r.routes == ["0.0.0.0/1", "128.0.0.0/1"]
    assert route_get("203.0.113.70")["dev"] == "va" and route_get("10.1.2.10")["dev"] == "vpn0"
    r.down()
    assert sh("ip route") == bare and "100.64.0.1" not in sh("ip -4 addr show vpn0") and r.routes == []
    r.up("100.64.0.2", "203.0.113.70", ["10.1.0.0/16"])  # split tunnel: no host route
    routes = sh("ip route")
    assert "10.1.0.0/16 dev vpn0 proto static scope link src 100.64.0.2" in routes and "203.0.113.70" not in routes
    r.down()
    r.down()  # nothing left to take back
    assert sh("ip route") == bare
    sh("ip route del default")
    try:
        route_get("203.0.113.70")
    except OSError as exc:
        assert "no route to 203.0.113.70" in str(exc) and "routes toward the gateway" in str(exc), exc
    else:
        raise AssertionError("route_get without a route")
    print("OK")
"""


@needs_unshare
def test_tunnel_routes_over_rtnetlink():
    unshared(["-n"], ROUTES)


RESOLV = """
    from nodes.runtime.host.dns_mount import ResolvConfMount, bind_mount, private_mount_ns, remove_stale_mounts
    assert private_mount_ns() == (True, ""), private_mount_ns()
    before = open("/etc/resolv.conf").read()
    dns = ResolvConfMount()
    assert dns.up(["10.1.2.53"]) == (True, "") and dns.active
    assert "nameserver 10.1.2.53" in open("/etc/resolv.conf").read()
    assert dns.down() and not dns.active and open("/etc/resolv.conf").read() == before
    assert not dns.down()
    left = ResolvConfMount(); left.up(["10.9.9.9"])  # as a killed client leaves it
    assert remove_stale_mounts() == 1 and open("/etc/resolv.conf").read() == before
    why = bind_mount("/nonexistent-resolv.conf", "/etc/resolv.conf")
    assert why.startswith("mount --bind /nonexistent-resolv.conf /etc/resolv.conf: "), why
    print("OK")
"""


@needs_unshare
def test_resolv_conf_bind_mount_by_system_calls():
    unshared(["-m", "--propagation", "private"], RESOLV)
