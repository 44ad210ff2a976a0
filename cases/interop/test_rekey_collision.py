"""Simultaneous child SA rekeying (RFC 7296 2.8.1; found against an independent peer):
gateway and client have the same child_rekey_after (4 s), so both start a CREATE_CHILD_SA for the
same child SA at about the same moment. The collision leaves two new child SAs; the redundant one
(the exchange with the lowest nonce) is deleted by its creator and the old one by the other end.
Over 13 s (three rounds of rekeys) traffic flows, the client ends with one child SA (two while a
delete is in flight), and the rekeys go on (the child SA in use at the end is not the first).
Ours in both roles, and every installed third-party profile in each role opposite ours.
"""
import time

import pytest

from testbed.ipsec_checks import PLAN, role_of, wait_established

pytestmark = [pytest.mark.scenario("remote-access-rekey-collision"),
              pytest.mark.impl_matrix("gw", "client")]

H = str(PLAN.address("h"))


@pytest.mark.req("rfc7296-1.3.3-child-rekey")
def test_colliding_child_rekeys_leave_one_working_child_sa(world, roles):
    client = role_of(roles, "vpn-client")
    _, _, first = wait_established(client, timeout=10)
    deadline = time.monotonic() + 13
    while time.monotonic() < deadline:
        assert world.ping("r", H, timeout=2), "traffic stopped while the rekeys collided"
        time.sleep(0.5)
    status, ike, child = wait_established(client, timeout=5)
    assert child["spi_in"] != first["spi_in"], "the child SA was never rekeyed"
    installed = [c for c in ike.get("child_sas", []) if c.get("state") == "INSTALLED"]
    assert 1 <= len(installed) <= 2, f"redundant child SAs pile up after colliding rekeys: {installed}"
