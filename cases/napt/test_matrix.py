"""The NAPT application matrix of draft-gupta Appendix C (issue 10): real applications between R and
H through each way of giving R an internal presence, with each gateway implementation.

Columns (testbed/napt_matrix.py): our gateway in pool mode (Appendix B), our gateway's NAPT
(Appendix A), our NAPT with its ALGs (nodes/ipsec/alg.py; "not-applicable-yet" until the
gateway takes `alg: [...]`), the strongSwan gateway with netfilter SNAT to G_i without and with
conntrack helpers (attached per flow on g with `-j CT --helper`, as testbed/world.py does for the
NAT router of fn3). One world per column (module-scoped fixture), its servers started once; each
cell is its own case, asserting the observed outcome against the EXPECTED one for its column, so
a change either way fails. Each cell records `napt_cell` (app, column, works, how, capture,
expected) for the matrix in the report, and captures H's link.

The X11-style row reuses our gateway's redirection rules (fixtures/scenarios/napt-ours.yaml);
cases/napt/test_redirect.py checks those rules in depth (echo both ways, a port without a rule,
the rule leaving with the tunnel). For strongSwan the case adds the netfilter equivalent (DNAT
G_i:6010 -> R:6000) on g.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator

import pytest

from cases.napt import apps
from testbed.ipsec_checks import check_tunnel
from testbed.napt_matrix import APPS, CELL_FILE, COLUMNS

# junit's default family (xunit2) drops properties; the cell is also written to the case's directory
pytestmark = pytest.mark.filterwarnings("ignore:record_property is incompatible")

# column -> (scenario, conntrack helpers on g)
SCENARIOS = {
    "pool-ours": ("napt-pool-ours", False),
    "napt-ours": ("napt-ours", False),
    "napt-ours-alg": ("napt-ours-alg", False),
    "snat-strongswan": ("napt-strongswan", False),
    "snat-strongswan-helpers": ("napt-strongswan", True),
}
HELPERS = {"ftp": ("tcp", 21), "tftp": ("udp", 69), "irc": ("tcp", 6667), "sip": ("udp", 5060)}
TUN_STRONGSWAN = "ipsec0"

Y, N = True, False
_ALL_WORK = dict.fromkeys(COLUMNS, Y)
# app -> column -> expected works; EVIDENCE: app -> column -> what the wire must show
EXPECTED = {
    "ftp-active-eprt": {"pool-ours": Y, "napt-ours": N, "napt-ours-alg": Y, "snat-strongswan": N, "snat-strongswan-helpers": Y},
    "ftp-active-port": {"pool-ours": Y, "napt-ours": N, "napt-ours-alg": Y, "snat-strongswan": N, "snat-strongswan-helpers": Y},
    "ftp-passive-epsv": _ALL_WORK,
    "ftp-passive-pasv": _ALL_WORK,
    # H's tftpd answers from a new port: our NAPT filters endpoint-independently (RFC 4787), netfilter
    # keeps the 5-tuple and needs its tftp helper
    "tftp-read": {"pool-ours": Y, "napt-ours": Y, "napt-ours-alg": Y, "snat-strongswan": N, "snat-strongswan-helpers": Y},
    "tftp-write": {"pool-ours": Y, "napt-ours": Y, "napt-ours-alg": Y, "snat-strongswan": N, "snat-strongswan-helpers": Y},
    # the SDP names R's own address: signalling gets through (answers go to the source), H's media not
    "sip-rtp": {"pool-ours": Y, "napt-ours": N, "napt-ours-alg": Y, "snat-strongswan": N, "snat-strongswan-helpers": Y},
    # our ALGs are FTP and SIP: DCC stays broken with them; netfilter's irc helper rewrites it
    "irc-dcc": {"pool-ours": Y, "napt-ours": N, "napt-ours-alg": N, "snat-strongswan": N, "snat-strongswan-helpers": Y},
    # no helper knows a protocol of its own
    "addr-in-payload": {"pool-ours": Y, "napt-ours": N, "napt-ours-alg": N, "snat-strongswan": N, "snat-strongswan-helpers": N},
    # "unless it ignores the source for UDP responses": ours does (endpoint-independent filtering)
    "multihomed-udp": {"pool-ours": Y, "napt-ours": Y, "napt-ours-alg": Y, "snat-strongswan": N, "snat-strongswan-helpers": N},
    "x11-no-rule": {"pool-ours": Y, "napt-ours": N, "napt-ours-alg": N, "snat-strongswan": N, "snat-strongswan-helpers": N},
    "x11-redirect": _ALL_WORK,
    "access-control": _ALL_WORK,
    "traceroute": _ALL_WORK,
}
_PAYLOAD = {"pool-ours": "inner", "napt-ours": "inner", "napt-ours-alg": "g_i", "snat-strongswan": "inner",
            "snat-strongswan-helpers": "g_i"}
EVIDENCE = {
    "ftp-active-eprt": {c: {"payload_address": a} for c, a in _PAYLOAD.items()},
    "ftp-active-port": {c: {"payload_address": a} for c, a in _PAYLOAD.items()},
    "sip-rtp": {c: {"payload_address": a} for c, a in _PAYLOAD.items()},
    "irc-dcc": {**{c: {"payload_address": "inner"} for c in COLUMNS}, "snat-strongswan-helpers": {"payload_address": "g_i"}},
    "addr-in-payload": {c: {"payload_address": "inner"} for c in COLUMNS},
    "multihomed-udp": {c: {"answered_from": "h2"} for c, ok in EXPECTED["multihomed-udp"].items() if ok},
    "access-control": {c: {"seen_as": "inner" if c == "pool-ours" else "g_i"} for c in COLUMNS},
}
assert set(EXPECTED) == set(APPS) and all(set(v) == set(COLUMNS) for v in EXPECTED.values())
assert set(apps.APPS) == set(APPS)


def _iptables(world, node: str, *rule: str) -> None:
    world.run_in(node, ["iptables", *rule], check=True)


@contextlib.contextmanager
def _column_world(testbed_run, pytestconfig, key: str, scenario_name: str) -> Iterator[apps.Env]:
    """A world for `scenario_name` with its roles started, the tunnel up, the servers on H, and for
    the strongSwan gateway the netfilter rules every strongSwan column shares."""
    from testbed.pytest_plugin import start_roles_or_skip
    from testbed.scenario import load_named
    from testbed.world import World

    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    d = pytestconfig._testbed["report_dir"] / "cases" / f"napt-matrix-{key}-{worker}"
    scenario = load_named(scenario_name)
    world = World.for_scenario(testbed_run, d / "logs", scenario)
    roles = {}
    try:
        roles = start_roles_or_skip(world, scenario)
        vip = check_tunnel(roles, scenario)["vip"]
        napt = scenario.roles["gw"].config["internal_presence"] == "napt"
        wanted = scenario.roles["gw"].config.get("alg")
        if wanted:
            algs = roles["gw"].status().get("napt_alg", {}).get("algs")
            assert algs == wanted, f"the gateway was configured with alg: {wanted}, its status says {algs}"
        if scenario.roles["gw"].impl == "strongswan":
            g_ibb = world.plan.nodes["g"].interface_on("ibb").name
            # the X11-style redirection rule, netfilter's way
            _iptables(world, "g", "-t", "nat", "-A", "PREROUTING", "-i", g_ibb, "-p", "tcp", "--dport",
                      str(apps.X11_RULE), "-j", "DNAT", "--to-destination", f"{vip}:{apps.X11}")
        servers = apps.start_servers(world, d / "apps")
        yield apps.Env(world, key, vip, napt, d / "apps", servers["payload"], servers["sink"], servers)
    finally:
        for r in reversed(list(roles.values())):
            r.stop()
        world.stop()


@pytest.fixture(scope="module")
def strongswan_env(testbed_run, pytestconfig):
    """One strongSwan world for both strongSwan columns (they differ only in the helpers)."""
    with _column_world(testbed_run, pytestconfig, "strongswan", "napt-strongswan") as env:
        yield env


# with `--dist loadgroup` each world is built by one worker only (default `load` ignores the mark)
_GROUPS = {col: "napt-" + SCENARIOS[col][0] for col in COLUMNS}


@pytest.fixture(scope="module", params=[pytest.param(c, marks=pytest.mark.xdist_group(_GROUPS[c])) for c in COLUMNS])
def column(request, testbed_run, pytestconfig):
    """The column's world with its servers; for the helpers column, conntrack helpers attached on g
    to the flows R starts (`-j CT --helper`, removed when the column is done)."""
    col = request.param
    name, helpers = SCENARIOS[col]
    if name != "napt-strongswan":
        with _column_world(testbed_run, pytestconfig, col, name) as env:
            yield env
        return
    env = request.getfixturevalue("strongswan_env")
    env.column = col
    rules = [["-t", "raw", "PREROUTING", "-i", TUN_STRONGSWAN, "-p", proto, "--dport", str(port),
              "-j", "CT", "--helper", helper] for helper, (proto, port) in HELPERS.items()] if helpers else []
    for r in rules:
        _iptables(env.world, "g", *r[:2], "-A", *r[2:])
    _forget_flows(env.world)
    yield env
    for r in rules:
        _iptables(env.world, "g", *r[:2], "-D", *r[2:])
    _forget_flows(env.world)


def _forget_flows(world) -> None:
    """Both strongSwan columns share one world: a conntrack entry a cell left (sipp's 5060 -> 5060)
    would carry the next column's call without, or with, a helper. Delete those of the helpers'
    ports on g (conntrack exits 1 when there were none)."""
    for proto, port in HELPERS.values():
        world.run_in("g", ["conntrack", "-D", "-p", proto, "--dport", str(port)])


@pytest.mark.req("gupta-appc-payload-addresses", "gupta-appc-multihomed-udp", "gupta-appc-no-mapping",
                 "gupta-appc-redirect", "gupta-3b-napt", "gupta-3b-pool")
@pytest.mark.parametrize("app", list(APPS))
def test_cell(column, app, case_dir, record_property):
    """One cell: the application between R and H in this column, against the expected outcome."""
    t0 = time.monotonic()
    cap = apps.capture_h(column, case_dir / "captures", f"h-{app}")
    obs = apps.APPS[app](column, cap)
    cap.stop()
    expected = EXPECTED[app][column.column]
    want = EVIDENCE.get(app, {}).get(column.column, {})
    seen = {k: obs.evidence.get(k) for k in want}
    cell = {"app": app, "column": column.column, "works": obs.works, "how": obs.how, "capture": str(cap.path),
            "expected": expected, "evidence": obs.evidence, "seconds": round(time.monotonic() - t0, 2)}
    record_property("napt_cell", cell)
    (case_dir / CELL_FILE).write_text(json.dumps(cell, indent=1))
    problems = []
    if obs.works != expected:
        problems.append(f"expected it to {'work' if expected else 'break'}, it {'works' if obs.works else 'breaks'}")
    if seen != want:
        problems.append(f"expected on the wire {want}, saw {seen}")
    assert not problems, (f"{APPS[app]} in column '{COLUMNS[column.column]}': {'; '.join(problems)}. "
                          f"Observed: {obs.how} (capture {cap.path})")
