"""Faults in Mobile IPv4, each with a bound on the recovery:

  * the home agent restarts between a registration request and its reply: the HA is paused
    (SIGSTOP), R moves to fn1 and registers through FA1 (the request waits, unread, in the paused
    HA's socket), the HA is killed (the request is lost with it) and started again. R must still
    end up registered through FA1, by its own retransmissions (RFC 5944 3.6.3, each with a new
    identification) or after FA1's registration timeout (code 78, RFC 5944 3.7.1), within 15 s
    of the restart, and H reaches the home address again;
  * the NAT in front of a node with an RFC 3519 UDP tunnel forgets its mapping: the tunnel comes
    back with the node's next authenticated registration (measured here: 4.9 s with a 6 s lifetime),
    not from unauthenticated tunnel data arriving from the new port.
"""
from __future__ import annotations

import signal

import pytest

from testbed import handoff
from testbed.faults import kill_role, signal_role, until
from testbed.mip_checks import COLOCATED_FN3, FA1, HOME, binding, registered, wait_for
from testbed.profiles import restart_role, start_role



REREGISTER_BOUND = 15.0


@pytest.mark.scenario("mobility-open-intranet")
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


NAT_RECOVERY_BOUND = 6 + 3.0  # the node's registration lifetime (renewed at 80 %) plus slack


@pytest.mark.scenario("mobility-nat-random")
@pytest.mark.req("rfc3519-nat-traversal")
def test_udp_tunnel_recovers_after_the_nat_forgets_its_mapping(world, scenario, roles):
    """RFC 3519 behind a NAT whose mappings are flushed: the node's keepalives and data now leave
    the NAT from another port, which the HA must not believe from unauthenticated tunnel data (it
    drops them: reverse-outer-mismatch). The tunnel comes back with the node's next authenticated
    registration, at the latest its renewal (lifetime 6 s, renewed at 80 %): H reaches the home address
    again within the lifetime plus 3 s, and the HA's binding names the new port."""
    mn = restart_role(world, scenario, roles, "mn", lifetime=6)
    ha = roles["ha"]
    wait_for(lambda: mn.status()["state"] == "home", what="the MN to settle at home")
    handoff.move(world, "r", "fn3", configure=False)
    wait_for(lambda: registered(mn, COLOCATED_FN3, "colocated"), timeout=10, what="co-located registration behind the NAT")
    before = binding(ha)
    assert before["kind"] == "udp", before
    assert world.ping("h", HOME, timeout=2), "H does not reach the home address through the UDP tunnel"
    world.run_in("nat", ["conntrack", "-F"], check=True)
    world.mark("nat-flushed", remote_port=before["remote_port"])
    took = until(lambda: world.ping("h", HOME, timeout=0.5), NAT_RECOVERY_BOUND, interval=0.2)
    world.mark("recovered", seconds=took)
    assert took is not None, f"H does not reach the home address {NAT_RECOVERY_BOUND} s after the NAT flush"
    after = binding(ha)
    assert after["remote_port"] != before["remote_port"], f"the binding kept the old port {before['remote_port']}"
