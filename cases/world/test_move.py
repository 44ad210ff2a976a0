"""Layer-2 handoff of R between the two foreign networks."""
import pytest

from testbed import handoff
from testbed.plan import default_plan

pytestmark = pytest.mark.scenario("bare-world")

PLAN = default_plan()
AR1, AR2 = PLAN.address("ar1", "fn1"), PLAN.address("ar2", "fn2")


def carrier_changes(world, station="r") -> int:
    return int(world.run_in(station, "cat /sys/class/net/r-eth0/carrier_changes", check=True).stdout)


def on_link(world, router, timeout=2.0) -> bool:
    """Only a router on R's own link answers a ping with TTL 1."""
    return world.ping("r", router, timeout=timeout, ttl=1)


@pytest.mark.req("testbed-handoff")
def test_move_between_foreign_networks(world):
    assert on_link(world, AR1) and not on_link(world, AR2, timeout=0.5)
    before = carrier_changes(world)
    move = handoff.move(world, "r", "fn2")
    assert move.old == "fn1" and move.new == "fn2" and move.t_down <= move.t_up
    assert carrier_changes(world) - before == 2, "R's carrier must go down and come back up"
    assert on_link(world, AR2), "after the move R must reach fn2's access router on its link"
    assert not on_link(world, AR1, timeout=0.5), "after the move fn1's access router must no longer be on R's link"
    assert world.ping("r", PLAN.address("pub")), "R must reach the Internet from fn2"
    assert [e["event"] for e in world.timeline if e["event"] == "move"] == ["move"]


@pytest.mark.req("testbed-handoff")
def test_link_down_and_detach(world):
    handoff.link_down(world, "r")
    assert not world.ping("r", AR1, timeout=0.3)
    handoff.link_up(world, "r")
    assert on_link(world, AR1)
    handoff.detach(world, "r")
    assert world.attached["r"] is None
    assert not world.ping("r", AR1, timeout=0.3)
    handoff.move(world, "r", "fn1")
    assert on_link(world, AR1)
