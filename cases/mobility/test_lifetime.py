"""Re-registration before the binding expires, and the HA's expiry when the node falls silent."""
import time

import pytest

from testbed import handoff
from testbed.profiles import restart_role
from testbed.mip_checks import FA1, binding, registered, wait_for

pytestmark = pytest.mark.scenario("mobility-open-intranet")


@pytest.mark.req("rfc5944-3.6-reregister")
def test_short_lifetime_is_renewed_then_expires(world, scenario, roles):
    mn = restart_role(world, scenario, roles, "mn", lifetime=2)
    wait_for(lambda: mn.status()["state"] == "home", what="the MN to settle at home")
    handoff.move(world, "r", "fn1", configure=False)
    wait_for(lambda: registered(mn, FA1, "fa"), what="registration via FA1")
    first = binding(roles["ha"])
    assert first["lifetime"] == 2
    # renewed at 80% of the lifetime: a newer identification before the old binding runs out
    renewed = wait_for(lambda: (b := binding(roles["ha"])) and b["identification"] > first["identification"] and b,
                       timeout=3, what="a re-registration before expiry")
    assert renewed["registered_at"] < first["expires"]
    assert mn.status()["counters"].get("reregistrations", 0) >= 1
    # the node falls silent: the HA removes the binding when its lifetime runs out
    mn.stop()
    last = binding(roles["ha"])
    wait_for(lambda: binding(roles["ha"]) is None, timeout=3.5, what="the binding to expire")
    assert time.time() >= last["expires"] - 0.05
    assert roles["ha"].status()["counters"].get("expired") == 1
