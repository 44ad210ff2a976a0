"""ICMP errors for a relayed request (RFC 5944 sections 3.4 and 3.7.3, codes 80-88): the FA answers the visitor as
soon as the error arrives, with 80 (home network unreachable), 81 (HA host unreachable), 82 (HA
port unreachable) or 88 (other ICMP error) instead of waiting for the 78 timeout; only a home
agent that stays silent (no answer, no ICMP error) still gives 78 after 7 s. Each request comes
from R on fn1 while R's own registration through FA1 stands."""
import json
import sys

import pytest

from testbed.mip_checks import FA1, H, mip_probe, still_bound

pytestmark = pytest.mark.scenario("mobility-open-intranet")

UNROUTED_HA = "10.99.0.1"  # no route at the core router (ar1 -> core): it answers net unreachable
ABSENT_HA = "10.1.1.99"  # on the home subnet, no node there: the intranet router's ARP fails
CORE_TOWARDS_AR1 = "203.0.113.1"
INTRANET_ROUTER = "10.1.0.2"  # ir on the intranet backbone, where packets from the Internet enter

# a home agent that takes every request on UDP 434 and never answers (no ICMP error either)
SILENT_HA = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 434))
print("silent-ha ready", flush=True)
while True:
    s.recv(65535)
"""


def reporter_of(world, home_agent: str) -> str | None:
    """Who sent the ICMP error the FA logged for a request relayed to `home_agent`."""
    path = world.log_dir / "ar1.fa1.events.jsonl"
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    found = [e for e in events if e.get("event") == "relay-error" and e.get("home_agent") == home_agent]
    return found[-1]["reporter"] if found else None


@pytest.mark.req("rfc5944-3.7-relay-errors")
def test_no_home_agent_listening_gives_82_at_once(world, on_fn1):
    """H (10.1.2.10) is reachable but nothing listens on UDP 434 there: H answers the relayed
    request with ICMP port unreachable, and the FA denies with 82 well before the 7 s timeout."""
    r = mip_probe(world, to=FA1, coa=FA1, ha=H, timeout=3)
    assert r["reply"] is not None and r["reply"]["code"] == 82, r
    assert r["seconds"] <= 1.0, f"the FA must answer at once, took {r['seconds']} s"
    assert r["from"].startswith(f"{FA1}:"), "the denial comes from the FA"
    assert r["reply"]["home_agent"] == H and r["reply"]["identification"] == r["sent_identification"]
    counters = on_fn1["fa1"].status()["counters"]
    assert counters.get("relay-errors:82") == 1 and counters.get("denied:82") == 1, counters
    assert reporter_of(world, H) == H
    assert on_fn1["fa1"].status()["pending"] == 0
    still_bound(world, on_fn1)


@pytest.mark.req("rfc5944-3.7-relay-errors")
def test_unrouted_home_network_gives_80_at_once(world, on_fn1):
    """An HA address in a network nobody routes: the FA's request goes ar1 -> core, the core router
    has no route and answers ICMP destination unreachable, code 0 (network unreachable, what Linux
    sends for a missing route): RFC 5944 maps that to 80."""
    res = world.run_in("ar1", ["ip", "-4", "route", "get", UNROUTED_HA])
    assert f"via {CORE_TOWARDS_AR1}" in res.stdout, f"the FA's path must lead to the core: {res.stdout}"
    ping = world.ping_output("ar1", UNROUTED_HA, timeout=0.5)
    assert f"From {CORE_TOWARDS_AR1}" in ping.stdout and "Net Unreachable" in ping.stdout, \
        f"the core router must answer net unreachable: {ping.stdout}{ping.stderr}"
    r = mip_probe(world, to=FA1, coa=FA1, ha=UNROUTED_HA, timeout=3)
    assert r["reply"] is not None and r["reply"]["code"] == 80, r
    assert r["seconds"] <= 1.0, f"the FA must answer at once, took {r['seconds']} s"
    assert r["reply"]["home_agent"] == UNROUTED_HA
    counters = on_fn1["fa1"].status()["counters"]
    assert counters.get("relay-errors:80") == 1 and counters.get("denied:80") == 1, counters
    assert reporter_of(world, UNROUTED_HA) == CORE_TOWARDS_AR1
    assert on_fn1["fa1"].status()["pending"] == 0
    still_bound(world, on_fn1)


@pytest.mark.req("rfc5944-3.7-relay-errors")
def test_absent_home_agent_on_the_home_subnet_gives_81(world, on_fn1):
    """An HA address on the home subnet where no node answers ARP: the intranet router gives up
    resolving it (about 3 s) and answers ICMP host unreachable, which the FA turns into 81 at once
    (before its own 7 s timeout)."""
    r = mip_probe(world, to=FA1, coa=FA1, ha=ABSENT_HA, timeout=9)
    assert r["reply"] is not None and r["reply"]["code"] == 81, r
    assert r["seconds"] < 6.0, f"81 must come with the router's ICMP error, not the timeout: {r['seconds']} s"
    counters = on_fn1["fa1"].status()["counters"]
    assert counters.get("relay-errors:81") == 1 and counters.get("denied:78") is None, counters
    assert reporter_of(world, ABSENT_HA) == INTRANET_ROUTER
    still_bound(world, on_fn1)


@pytest.fixture
def silent_ha(world):
    proc = world.start("h", "silent-ha", [sys.executable, "-c", SILENT_HA, H], ready=r"silent-ha ready")
    try:
        yield H
    finally:
        proc.stop()


@pytest.mark.req("rfc5944-3.7-relay-errors")
def test_silent_home_agent_still_gives_78_after_7_seconds(world, on_fn1, silent_ha):
    r = mip_probe(world, to=FA1, coa=FA1, ha=silent_ha, timeout=9)
    assert r["reply"] is not None and r["reply"]["code"] == 78, r
    assert 6.5 <= r["seconds"] <= 8.5, f"the FA must time out after about 7 s, took {r['seconds']}"
    counters = on_fn1["fa1"].status()["counters"]
    assert counters.get("relay-errors") is None, f"no ICMP error was expected: {counters}"
    still_bound(world, on_fn1)
