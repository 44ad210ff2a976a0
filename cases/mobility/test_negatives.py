"""Denials and bad input (RFC 5944 sections 3.4, 3.7.2 and 3.8.2): each request comes from R on fn1 while R's own registration
through FA1 stands; every denial must leave that binding in place and the HA serving."""
import time

import pytest

from testbed.mip_checks import FA1, HA, HOME, WRONG_KEY, binding, mip_probe, still_bound, wait_for
from testbed.profiles import start_role

pytestmark = pytest.mark.scenario("mobility-open-intranet")


@pytest.mark.req("rfc5944-3.8-deny-auth")
def test_wrong_key_gives_131_relayed_by_fa(world, on_fn1):
    r = mip_probe(world, to=FA1, coa=FA1, key=WRONG_KEY)
    assert r["reply"]["code"] == 131, r
    assert r["from"].startswith(f"{FA1}:"), "the denial must come through the FA"
    assert on_fn1["fa1"].status()["counters"].get("relayed-replies:131") == 1
    assert on_fn1["ha"].status()["counters"].get("denied:131") == 1
    still_bound(world, on_fn1)


@pytest.mark.req("rfc5944-5.7-replay")
def test_stale_identification_gives_133_with_the_ha_time(world, on_fn1):
    r = mip_probe(world, to=FA1, coa=FA1, ident="stale")
    reply = r["reply"]
    assert reply["code"] == 133, r
    assert abs(reply["ident_high_unix"] - r["now"]) <= 2, "a 133 reply carries the HA's time in the high 32 bits"
    assert reply["ident_low_echoed"], "a 133 reply echoes the low 32 bits of the request"
    still_bound(world, on_fn1)


@pytest.mark.req("rfc5944-3.7-lifetime-too-long")
def test_lifetime_above_maximum_69_at_fa_capped_at_ha(world, on_fn1):
    r = mip_probe(world, to=FA1, coa=FA1, lifetime=7200)
    assert r["reply"]["code"] == 69 and r["reply"]["lifetime"] == 1800, r
    r = mip_probe(world, to=HA, coa=FA1, lifetime=7200)  # straight to the HA: accepted, capped
    assert r["reply"]["code"] == 0 and r["reply"]["lifetime"] == 1800, r
    assert binding(on_fn1["ha"])["lifetime"] == 1800
    still_bound(world, on_fn1)


@pytest.mark.req("rfc5944-3.7-poorly-formed")
def test_poorly_formed_requests(world, on_fn1):
    r = mip_probe(world, to=FA1, coa=FA1, defect="no-auth")
    assert r["reply"]["code"] == 70, r  # FA: poorly formed (no MN-HA authentication)
    r = mip_probe(world, to=HA, coa=FA1, defect="bad-extension")
    assert r["reply"]["code"] == 134, r  # HA: poorly formed
    r = mip_probe(world, to=HA, coa=FA1, defect="unknown-mandatory", timeout=0.5)
    assert r["reply"] is None, "an unknown non-skippable extension: the request is discarded silently"
    counters = on_fn1["ha"].status()["counters"]
    assert counters.get("denied:134") == 1 and counters.get("drop:decode:unknown-extension") == 1, counters
    still_bound(world, on_fn1)


@pytest.mark.req("rfc5944-2.4.4-agent-reboot")
def test_agent_reboot_makes_the_node_reregister(world, scenario, on_fn1):
    fa1 = on_fn1["fa1"]
    before = on_fn1["mn"].status()["counters"].get("requests", 0)
    fa1.stop()
    time.sleep(0.2)
    restarted = start_role(world, scenario.roles["fa1"])  # sequence numbers start again at 0
    s = wait_for(lambda: (st := on_fn1["mn"].status())["counters"].get("requests", 0) > before and
                 st["state"] == "registered" and st, timeout=4, what="a re-registration after the agent rebooted")
    assert s["counters"].get("agent-rebooted") == 1, s["counters"]
    wait_for(lambda: [v["home_address"] for v in restarted.status()["visitors"]] == [HOME],
             what="the rebooted FA to list the visitor again")
    still_bound(world, on_fn1)


FUZZ = r"""
import os, random, socket, sys
random.seed(4)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.1.1.100", 0))
for i in range(300):
    n = random.choice([0, 1, 3, 8, 23, 24, 27, 28, 40, 60, 200])
    data = bytes([random.choice([1, 3, 4, 9, 255])]) + os.urandom(max(0, n - 1)) if n else b""
    for to in sys.argv[1:]:
        s.sendto(data, (to, 434))
"""


@pytest.mark.req("rfc1122-1.2.2-robustness")
def test_garbage_leaves_agents_serving(world, on_fn1):
    """Random and truncated UDP 434 payloads to the HA and FA1: no crash, no reader error, the
    binding stays and a valid request is still accepted."""
    import sys

    def dropped(role):
        return sum(n for k, n in on_fn1[role].status()["counters"].items() if k.startswith("drop:"))

    before = {role: dropped(role) for role in ("ha", "fa1")}
    world.run_in("r", [sys.executable, "-c", FUZZ, HA, FA1], check=True)
    for name in ("ha", "fa1", "mn"):
        assert on_fn1[name].status()["errors"] == {}, f"{name} hit errors on garbage input"
    for role in ("ha", "fa1"):  # 300 datagrams each; most cannot be decoded (a few may be lost under load)
        grown = dropped(role) - before[role]
        assert grown >= 100, f"{role} counted {grown} drops for 300 garbage datagrams: {on_fn1[role].status()['counters']}"
    still_bound(world, on_fn1)
    r = mip_probe(world, to=FA1, coa=FA1)
    assert r["reply"]["code"] == 0, r
