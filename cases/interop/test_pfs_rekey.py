"""A peer that asks for perfect forward secrecy (RFC 7296 1.3.1; found against an
independent peer): the scenario's third-party client with esp_proposals = aes256gcm16-ecp256
against our gateway with its default proposals (no DH group named). IKE_AUTH creates the first
child SA (no DH there); each rekey (CREATE_CHILD_SA every 3 s) carries a KE payload, which our
gateway must accept: before the fix the first rekey got NO_PROPOSAL_CHOSEN and the tunnel was lost.
"""
import time

import pytest

from testbed.ipsec_checks import PLAN, role_of, wait_established

pytestmark = pytest.mark.scenario("remote-access-pfs")

H = str(PLAN.address("h"))


@pytest.mark.req("rfc7296-1.3.3-child-rekey")
def test_child_rekeys_with_pfs_against_the_default_proposals(world, roles):
    gw, client = role_of(roles, "vpn-gateway"), role_of(roles, "vpn-client")
    _, _, first = wait_established(client, timeout=10)
    time.sleep(7)  # two rekeys
    _, _, now = wait_established(client, timeout=5)
    assert now["spi_in"] != first["spi_in"], "the child SA was not rekeyed"
    assert world.ping("r", H, timeout=3), "no traffic through the rekeyed child SA"
    drops = gw.status()["drops"]["ike"]
    assert not any(k.startswith("child_refused") for k in drops), f"the gateway refused a rekey: {drops}"
