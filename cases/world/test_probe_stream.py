"""The handoff measurement machinery: a 1 kHz probe stream sees a link outage where the timeline has it."""
import time

import pytest

from testbed import handoff
from testbed.daemons import start_daemon
from testbed.disruption import disruption
from testbed.plan import default_plan

pytestmark = pytest.mark.scenario("bare-world")

PUB = str(default_plan().address("pub"))


def wait_for(predicate, timeout=2.0):
    deadline = time.monotonic() + timeout
    while not (ok := predicate()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return ok


@pytest.mark.req("testbed-handoff")
def test_outage_is_measured_against_the_timeline(world):
    rx = start_daemon(world, "pub", "instruments.probe", config={"listen": 9000, "gap": 0.005})
    tx = start_daemon(world, "r", "instruments.probe", config={"send": {"to": PUB, "port": 9000, "rate": 1000}})
    assert wait_for(lambda: rx.status()["receiver"]["received"] > 100), "the probe stream does not arrive"
    t_down = handoff.link_down(world, "r")
    time.sleep(0.2)
    t_up = handoff.link_up(world, "r")
    assert wait_for(lambda: (rx.status()["receiver"]["last_arrival"] or 0) > t_up + 0.1), "the stream did not resume"
    d = disruption(t_down, t_up, rx.status()["receiver"])
    world.mark("disruption", **d.as_dict())
    gap = next(g for g in rx.status()["receiver"]["gaps"] if g["to_t"] >= t_up)
    assert gap["from_t"] <= t_down + 0.01, f"the stream must stop when the carrier drops: {gap}, down at {t_down}"
    assert d.total >= t_up - t_down - 0.01, d
    # R's kernel has no mobility client: an ARP entry that failed during the outage is retried
    # after its retransmission timer (1 s), which bounds the part after carrier up
    assert d.after_up <= 1.2, d
    assert tx.status()["sender"]["sent"] > 300
