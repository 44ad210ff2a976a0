"""Remote-access load, smoke size (testbed/load.py): 200 IKEv2 clients, each with its own identity
and address (198.18.0.0/16 on atk), set up an IKE SA and a child SA with a CP request against the
gateway at 100 setups/s, ping H once through their child SA, and answer one liveness check. Every
client must come up with a pool address and every probe must go through (draft-gupta Appendix B:
each remote host gets its own pool address, routed back to G). Runs against each installed
vpn-gateway profile (through the implementation matrix)."""
from __future__ import annotations

import pytest

from testbed.load import load_in_world

pytestmark = [pytest.mark.scenario("load-smoke")]

CLIENTS, RATE = 200, 100.0


@pytest.mark.req("gupta-3b-pool", "gupta-3b-pool-size")
@pytest.mark.impl_matrix("gw")
def test_load_smoke(world, scenario, roles, case_dir):
    """200 clients at 100 setups/s: every one gets an IKE SA, a pool address and a child SA that
    carries its probe to H and back, and answers one liveness check."""
    res = load_in_world(world, scenario, CLIENTS, RATE, report_dir=case_dir, show_progress=False, timeout=20.0)
    summary = {k: res[k] for k in ("offered", "established", "failed", "setups_per_s", "p95_s", "probes_lost",
                                   "dpd_lost", "gateway_rss_kib_per_sa")}
    assert res["established"] == CLIENTS, f"not every client came up: {summary}"
    assert res["failed"] == {}, summary
    assert res["probes_lost"] == 0, f"probes lost: {summary}"
    assert res["dpd_lost"] == 0, f"liveness checks unanswered: {summary}"
