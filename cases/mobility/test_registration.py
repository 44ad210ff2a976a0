"""Registration through a foreign agent, and reachability of the home address while away."""
import pytest

from testbed import handoff
from testbed.mip_checks import FA1, HOME, binding, registered, wait_for

pytestmark = pytest.mark.scenario("mobility-open-intranet")


@pytest.mark.req("rfc5944-3.7-fa-relay", "rfc5944-4.2.3-ha-tunnels", "ps-2.1-intranet-mobility")
def test_register_via_fa_then_correspondent_reaches_home_address(world, roles):
    mn, ha, fa1 = roles["mn"], roles["ha"], roles["fa1"]
    wait_for(lambda: mn.status()["state"] == "home", what="the MN to settle at home")
    handoff.move(world, "r", "fn1", configure=False)
    s = wait_for(lambda: registered(mn, FA1, "fa"), what="registration via FA1")
    assert s["last_code"] == 0
    b = binding(ha)
    assert b is not None and b["care_of_address"] == FA1 and b["kind"] == "ipip"
    visitors = fa1.status()["visitors"]
    assert [v["home_address"] for v in visitors] == [HOME]
    assert world.ping("h", HOME, timeout=2), "H must reach the home address while R is on fn1"
    # the answers went H -> HA (proxy ARP) -> IP-in-IP -> FA1 -> R
    assert ha.status()["counters"].get("tunnelled", 0) >= 1
    assert fa1.status()["counters"].get("delivered", 0) >= 1
