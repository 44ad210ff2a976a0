"""Small black-box helpers for the mobility cases: poll a role's status until a condition holds."""
from __future__ import annotations

import time
from typing import Callable

from testbed.processes import patience

HOME = "10.1.1.100"
HA = "10.1.1.2"
FA1, FA2 = "192.0.2.1", "192.0.2.129"
NAT_PUBLIC = "203.0.113.10"
COLOCATED_FN3 = "10.77.0.100"
H = "10.1.2.10"


def wait_for(probe: Callable[[], object], timeout: float = 3.0, interval: float = 0.02, what: str = "condition"):
    """Call `probe` until it returns something truthy; return it, or fail naming `what`."""
    timeout = patience(timeout)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value {last!r}")


def registered(mn, coa: str | None = None, mode: str | None = None):
    """The MN's status once it is registered (with that care-of address and mode), else None."""
    s = mn.status()
    if s["state"] != "registered":
        return None
    if coa is not None and s["care_of_address"] != coa:
        return None
    if mode is not None and s["mode"] != mode:
        return None
    return s


def at_home(mn):
    s = mn.status()
    return s if s["state"] == "home" and s["location"] == "home" else None


def binding(ha, home: str = HOME):
    for b in ha.status()["bindings"]:
        if b["home_address"] == home:
            return b
    return None


KEY = "6d6e2d68612d6b65792d74657374626564"  # the MN-HA key of the scenario
WRONG_KEY = "00" * 16


def mip_probe(world, node: str = "r", timeout: float = 2.0, **options) -> dict:
    """Send one registration request from `node` with nodes/instruments/mipprobe.py; its JSON result.

    options map to the probe's flags: to, home, ha, coa, spi, key, lifetime, ident, flags, defect, bind."""
    import json
    import sys
    opts = {"home": HOME, "ha": HA, "key": KEY, "bind": HOME, **options}
    argv = [sys.executable, "-m", "nodes.instruments.mipprobe", "--timeout", str(timeout)]
    for k, v in opts.items():
        argv += [f"--{k}", str(v)]
    res = world.run_in(node, argv, timeout=timeout + 10)
    try:
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError(f"the registration probe failed: {res.stdout}{res.stderr}") from None


def neighbour_mac(world, node: str, iface: str, ip: str) -> str | None:
    """The link-layer address `node` holds for `ip` on `iface` (what its ARP cache says)."""
    out = world.run_in(node, ["ip", "-4", "neigh", "show", ip, "dev", iface]).stdout.split()
    return out[out.index("lladdr") + 1] if "lladdr" in out else None


def mac_of(world, node: str, iface: str) -> str:
    return world.run_in(node, ["cat", f"/sys/class/net/{iface}/address"], check=True).stdout.strip()


def scapy_disagreements(pcap, tshark_rows) -> list[str]:
    """Compare scapy's MobileIP layer with tshark's decoding of the same registration messages.

    `tshark_rows`: decode(pcap, "mip", fields=[frame.number, mip.type, mip.homeaddr, mip.haaddr, mip.ident,
    mip.code/lifetime...]). Returns one line per disagreement."""
    from scapy.all import rdpcap
    from scapy.layers.mobileip import MobileIP, MobileIPRRP, MobileIPRRQ

    packets = rdpcap(str(pcap))
    problems = []
    for row in tshark_rows:
        n = int(row["frame.number"][0])
        pkt = packets[n - 1]
        if not pkt.haslayer(MobileIP):
            problems.append(f"frame {n}: scapy sees no MobileIP layer")
            continue
        layer = pkt.getlayer(MobileIPRRQ) or pkt.getlayer(MobileIPRRP)
        if layer is None:
            continue  # tunnel data
        mine = {"mip.homeaddr": layer.homeaddr, "mip.haaddr": layer.haaddr, "mip.life": str(layer.lifetime)}
        if isinstance(layer, MobileIPRRQ):
            mine["mip.coa"] = layer.coaddr
        else:
            mine["mip.code"] = str(layer.code)
        for field, value in mine.items():
            theirs = row.get(field) or []
            if theirs and theirs[0] != value:
                problems.append(f"frame {n}: {field} tshark {theirs[0]} scapy {value}")
    return problems


PROBE_PORT = 9000


def probe_stream(world, rate: int = 1000, gap: float = 0.005):
    """A probe stream (nodes/instruments/probe.py) from the correspondent H to the home address on R.

    Returns (receiver, sender) daemons; the receiver's `status()["receiver"]` has the arrival
    gaps that testbed.disruption lines up with a move."""
    from testbed.daemons import start_daemon
    rx = start_daemon(world, "r", "instruments.probe", name="probe-rx", config={"listen": PROBE_PORT, "bind": HOME, "gap": gap})
    tx = start_daemon(world, "h", "instruments.probe", name="probe-tx",
                      config={"send": {"to": HOME, "port": PROBE_PORT, "rate": rate}})
    wait_for(lambda: rx.status()["receiver"]["received"] > 50, what="the probe stream to arrive at home")
    return rx, tx


def still_bound(world, roles):
    b = binding(roles["ha"])
    assert b is not None and b["care_of_address"] == FA1, f"the binding changed: {b}"
    assert world.ping("h", HOME, timeout=2), "H must still reach the home address"


def session_caught_up(keeper, timeout: float = 8.0) -> dict:
    """Everything written so far has come back on the one TCP connection."""
    target = keeper.status()["sent"]

    def ok():
        s = keeper.status()
        assert s["error"] is None, f"the TCP session broke: {s['error']}"
        return s if s["echoed"] >= target else None

    return wait_for(ok, timeout=timeout, what=f"the TCP session to echo {target} bytes")
