"""RFC 3519 behind the NAT: the HA detects the NAT, tunnels in UDP to the address and port it saw,
and an idle node keeps the NAT mapping alive with tunnelled keepalives."""
import time

import pytest

from testbed import handoff
from testbed.profiles import restart_role
from testbed.mip_checks import COLOCATED_FN3, HOME, NAT_PUBLIC, binding, registered, wait_for

pytestmark = pytest.mark.scenario("mobility-open-intranet")


@pytest.mark.req("rfc3519-nat-traversal", "rfc3519-keepalive")
def test_idle_node_behind_nat_sends_keepalives(world, scenario, roles):
    ha = restart_role(world, scenario, roles, "ha", udp_keepalive=1)
    mn = roles["mn"]
    wait_for(lambda: mn.status()["state"] == "home", what="the MN to settle at home")
    handoff.move(world, "r", "fn3", configure=False)
    s = wait_for(lambda: registered(mn, COLOCATED_FN3, "colocated"), what="co-located registration behind the NAT")
    assert s["tunnel"] == "udp"
    b = binding(ha)
    assert b["kind"] == "udp" and b["remote"] == NAT_PUBLIC and b["remote_port"] is not None
    before = ha.status()["counters"].get("reverse-tunnelled", 0)
    time.sleep(2.6)  # idle: no traffic from the node's applications
    assert ha.status()["counters"].get("reverse-tunnelled", 0) - before >= 2, "keepalives must reach the HA"
    assert mn.status()["dataplane"].get("keepalives", 0) >= 2
    # the NAT mapping still carries traffic to the node
    assert world.ping("h", HOME, timeout=2)
