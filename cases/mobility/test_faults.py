"""Faults in Mobile IPv4 (issue 12, "faults"), each with a bound on the recovery:

  * the home agent restarts between a registration request and its reply: the HA is paused
    (SIGSTOP), R moves to fn1 and registers through FA1 (the request waits, unread, in the paused
    HA's socket), the HA is killed (the request is lost with it) and started again. R must still
    end up registered through FA1, by its own retransmissions (RFC 5944 3.6.3, each with a new
    identification) or after FA1's registration timeout (code 78, RFC 5944 3.7.1), within 15 s
    of the restart, and H reaches the home address again.
"""
from __future__ import annotations

import signal

import pytest

from testbed import handoff
from testbed.faults import kill_role, signal_role, until
from testbed.mip_checks import FA1, HOME, binding, registered, wait_for
from testbed.profiles import start_role

pytestmark = pytest.mark.scenario("mobility-open-intranet")

REREGISTER_BOUND = 15.0


@pytest.mark.req("rfc5944-3.6-reregister", "rfc5944-3.7-relay-errors")
def test_registration_survives_a_home_agent_restart_mid_request(world, roles, scenario):
    mn, ha = roles["mn"], roles["ha"]
    wait_for(lambda: mn.status()["state"] == "home", what="the MN to settle at home")
    signal_role(world, ha, signal.SIGSTOP)
    handoff.move(world, "r", "fn1", configure=False)
    world.mark("moved-with-ha-paused")
    wait_for(lambda: mn.status()["state"] != "home", timeout=5, what="the MN to leave home and register through FA1")
    kill_role(world, ha)
    world.mark("ha-killed")
    ha = start_role(world, scenario.roles["ha"])
    world.mark("ha-restarted")
    took = until(lambda: registered(mn, FA1, "fa"), REREGISTER_BOUND, interval=0.2)
    world.mark("registered-again", seconds=took)
    assert took is not None, f"R is not registered through FA1 {REREGISTER_BOUND} s after the HA restarted: {mn.status()}"
    b = binding(ha)
    assert b is not None and b["care_of_address"] == FA1, f"the restarted HA holds no binding via FA1: {b}"
    assert world.ping("h", HOME, timeout=3), "H does not reach the home address after the recovery"
