"""Handoff disruption, measured with a 1 kHz UDP probe stream from the correspondent H to the
node's home address: for every move, the longest gap in arrivals after the carrier dropped.
The figures go to the case's disruption.json for the report."""
import json
import statistics
import time

import pytest

from testbed import handoff
from testbed.daemons import start_daemon
from cases.mobility.helpers import (
    COLOCATED_FN3, FA1, FA2, HOME, at_home, registered, wait_for,
)

pytestmark = pytest.mark.scenario("mobility-open-intranet")

TOUR = [("fn1", FA1, "fa"), ("fn2", FA2, "fa"), ("fn3", COLOCATED_FN3, "colocated"), ("home", None, None),
        ("fn2", FA2, "fa"), ("fn1", FA1, "fa"), ("home", None, None)]


def test_disruption_of_each_move(world, roles, case_dir):
    mn = roles["mn"]
    wait_for(lambda: at_home(mn), what="the MN to settle at home")
    rx = start_daemon(world, "r", "udpstream", name="udp-rx", args=["--recv", "9000", "--bind", HOME])
    start_daemon(world, "h", "udpstream", name="udp-tx", args=["--send", f"{HOME}:9000", "--rate", "1000"])
    wait_for(lambda: rx.status()["received"] > 50, what="the probe stream to arrive at home")

    moves = []
    for net, coa, mode in TOUR:
        m = handoff.move(world, "r", net, configure=False)
        if coa:
            wait_for(lambda: registered(mn, coa, mode), what=f"registration on {net}")
        else:
            wait_for(lambda: at_home(mn), what="deregistration at home")
        received = rx.status()["received"]
        wait_for(lambda: rx.status()["received"] > received + 100, what=f"the stream to flow on {net}")
        moves.append({"to": net, "t_down": m.t_down, "t_up": m.t_up})
        time.sleep(0.05)

    status = rx.status()
    ends = [m["t_down"] for m in moves[1:]] + [float("inf")]
    for move, end in zip(moves, ends):
        gaps = [g for g in status["gaps"] if move["t_down"] <= g["to"] < end]  # gaps that ended after this move
        move["gap"] = max((g["seconds"] for g in gaps), default=0.0)
        move["lost"] = sum(g["lost"] for g in gaps)
    figures = {"moves": moves, "median_gap": statistics.median(m["gap"] for m in moves),
               "max_gap": max(m["gap"] for m in moves), "received": status["received"], "lost": status["lost"]}
    (case_dir / "disruption.json").write_text(json.dumps(figures, indent=1))
    print(json.dumps({k: v for k, v in figures.items() if k != "moves"}),
          [(m["to"], round(m["gap"] * 1000, 1)) for m in moves])
    assert figures["max_gap"] < 0.5, f"a move interrupted the stream for {figures['max_gap']:.3f} s: {moves}"
