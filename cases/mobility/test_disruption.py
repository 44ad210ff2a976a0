"""Handoff disruption, measured with a 1 kHz UDP probe stream (nodes/instruments/probe.py) from the
correspondent H to the node's home address: for every move, the arrival gap that spans it
(testbed/disruption.py: its total length and the part after the carrier came back). The figures go
to the case's disruption.json for the report."""
import json
import statistics
import time

import pytest

from testbed import handoff
from testbed.disruption import disruption
from testbed.mip_checks import (
    COLOCATED_FN3, FA1, FA2, at_home, probe_stream, registered, wait_for,
)

pytestmark = pytest.mark.scenario("mobility-open-intranet")

TOUR = [("fn1", FA1, "fa"), ("fn2", FA2, "fa"), ("fn3", COLOCATED_FN3, "colocated"), ("home", None, None),
        ("fn2", FA2, "fa"), ("fn1", FA1, "fa"), ("home", None, None)]


@pytest.mark.req("mip-handoff-disruption", "rfc5944-2.4.2-move-detection")
def test_disruption_of_each_move(world, roles, case_dir):
    mn = roles["mn"]
    wait_for(lambda: at_home(mn), what="the MN to settle at home")
    rx, _tx = probe_stream(world)

    def received():
        return rx.status()["receiver"]["received"]

    moves = []
    for net, coa, mode in TOUR:
        m = handoff.move(world, "r", net, configure=False)
        if coa:
            wait_for(lambda: registered(mn, coa, mode), what=f"registration on {net}")
        else:
            wait_for(lambda: at_home(mn), what="deregistration at home")
        before = received()
        wait_for(lambda: received() > before + 100, what=f"the stream to flow on {net}")
        moves.append({"to": net, "t_down": m.t_down, "t_up": m.t_up})
        time.sleep(0.05)

    status = rx.status()["receiver"]
    ends = [m["t_down"] for m in moves[1:]] + [float("inf")]
    for move, end in zip(moves, ends):
        d = disruption(move["t_down"], move["t_up"], status)
        move.update(total_s=round(d.total, 6), after_up_s=round(d.after_up, 6))
        # every gap that ended between this move and the next, also one that began after carrier up
        gaps = [g for g in status["gaps"] if move["t_down"] <= g["to_t"] < end]
        move["gap"] = max([g["seconds"] for g in gaps] + [d.total])
        move["lost"] = sum(g["lost"] for g in gaps)
    figures = {"moves": moves, "median_gap": statistics.median(m["gap"] for m in moves),
               "max_gap": max(m["gap"] for m in moves),
               "median_after_up": statistics.median(m["after_up_s"] for m in moves),
               "received": status["received"], "lost": status["lost"]}
    (case_dir / "disruption.json").write_text(json.dumps(figures, indent=1))
    print(json.dumps({k: v for k, v in figures.items() if k != "moves"}),
          [(m["to"], round(m["gap"] * 1000, 1), round(m["after_up_s"] * 1000, 1)) for m in moves])
    assert figures["max_gap"] < 0.5, f"a move interrupted the stream for {figures['max_gap']:.3f} s: {moves}"
