"""Several child SAs in one IKE SA (RFC 7296 1.3 and 2.9; found against an independent
peer): the scenario's third-party client creates one child for the server subnet 10.1.2.0/24 and a second for the
home subnet 10.1.1.0/24 in the same IKE SA. Our gateway must send each answer through the child SA
whose selectors cover it (an SPD lookup, RFC 4301 4.4.1), not through the newest child: before the
fix, answers from 10.1.2.0/24 were dropped as "outside selectors" once the second child existed.
"""
import pytest

from testbed.ipsec_checks import PLAN, role_of, wait_established

pytestmark = pytest.mark.scenario("remote-access-two-children")

H = str(PLAN.address("h"))                 # 10.1.2.10, first child
IR_HOME = str(PLAN.address("ir", "home"))  # 10.1.1.1, second child


@pytest.mark.req("rfc7296-2.9-several-children")
def test_each_child_sa_carries_its_own_subnet(world, roles):
    gw, client = role_of(roles, "vpn-gateway"), role_of(roles, "vpn-client")
    wait_established(client, timeout=10)
    _, g_ike, _ = wait_established(gw)
    children = [c for c in g_ike["child_sas"] if c.get("state") == "INSTALLED"]
    assert len(children) == 2, f"the gateway should hold two child SAs in the client's IKE SA: {g_ike}"
    for _ in range(3):  # both directions of both children, repeatedly, in either order
        assert world.ping("r", H, timeout=2), "no answer from H (the first child's subnet)"
        assert world.ping("r", IR_HOME, timeout=2), "no answer from the home subnet (the second child's)"
    drops = gw.status()["drops"]["esp"]
    assert not drops.get("outside-selectors-out"), f"the gateway dropped answers as outside selectors: {drops}"
