"""Reverse tunnelling (RFC 3024) where fn1's access router filters non-topological sources: without
T the node's packets (source: its home address) die at the access router; with T the FA tunnels
them to the HA and they get through."""

import pytest

from testbed import handoff
from testbed.profiles import restart_role
from testbed.mip_checks import FA1, HOME, binding, registered, wait_for

pytestmark = pytest.mark.scenario("mobility-open-intranet")

INGRESS_FILTER = "iptables -A FORWARD -i ar1-fn1 -o ar1-core ! -s 192.0.2.0/25 -j DROP"


def filtered(world) -> int:
    out = world.run_in("ar1", "iptables -L FORWARD -v -n -x", check=True).stdout
    return sum(int(line.split()[0]) for line in out.splitlines() if "DROP" in line and "192.0.2.0/25" in line)


@pytest.mark.req("rfc3024-reverse-tunnel")
def test_reverse_tunnel_gets_past_ingress_filtering(world, scenario, roles):
    mn = roles["mn"]
    wait_for(lambda: mn.status()["state"] == "home", what="the MN to settle at home")
    world.run_in("ar1", INGRESS_FILTER, check=True)

    handoff.move(world, "r", "fn1", configure=False)
    wait_for(lambda: registered(mn, FA1, "fa"), what="registration via FA1 without T")
    assert binding(roles["ha"])["reverse"] is False
    assert not world.ping("h", HOME, timeout=0.5), "without T the answers from the home address must be filtered"
    assert filtered(world) >= 1

    # the same node asking for reverse tunnelling
    mn = restart_role(world, scenario, roles, "mn", reverse_tunnel=True)
    wait_for(lambda: registered(mn, FA1, "fa"), what="registration via FA1 with T")
    assert binding(roles["ha"])["reverse"] is True
    assert [v["reverse"] for v in roles["fa1"].status()["visitors"]] == [True]
    drops = filtered(world)
    assert world.ping("h", HOME, timeout=2), "with T the answers must come back through the reverse tunnel"
    assert filtered(world) == drops, "nothing more may hit the ingress filter"
    assert roles["fa1"].status()["counters"].get("reverse-tunnelled", 0) >= 1
    assert roles["ha"].status()["counters"].get("reverse-tunnelled", 0) >= 1
