"""Fixtures shared by the mobility cases."""
import pytest

from testbed.mip_checks import FA1, registered, wait_for
from testbed import handoff


@pytest.fixture
def on_fn1(world, roles):
    """R registered through FA1; returns the roles."""
    wait_for(lambda: roles["mn"].status()["state"] == "home", what="the MN to settle at home")
    handoff.move(world, "r", "fn1", configure=False)
    wait_for(lambda: registered(roles["mn"], FA1, "fa"), what="registration via FA1")
    return roles
