"""The NAPT application matrix of draft-gupta Appendix C: real applications between R and H through
each way of giving R an internal presence, with each gateway implementation.

Columns: our gateway in pool mode (Appendix B), our gateway's NAPT (Appendix A) and our NAPT with
its ALGs (nodes/ipsec/alg.py), defined here; and the columns every other installed gateway profile
adds as data (testbed/profile_api.py case_data, `napt-matrix.yaml`: per column its scenario, the
apps expected to break, the addresses the payloads must carry, and what the case sets up on g for
it: netfilter conntrack helpers attached per flow from the gateway's tunnel interface with
`-j CT --helper`, as testbed/world.py does for the NAT router of fn3, or netfilter's DNAT for the
X11-style row where the gateway has no redirection rules of its own). One world per scenario
(module-scoped fixture; columns of the same scenario share it), its servers started once; each
cell is its own case, asserting the observed outcome against the expected one for its column, so
a change either way fails. Each cell records `napt_cell` (app, column, works, how, capture,
expected) for the matrix in the report (testbed/napt_matrix.py), and captures H's link.

The X11-style row reuses our gateway's redirection rules (fixtures/scenarios/napt-ours.yaml);
cases/napt/test_redirect.py checks those rules in depth (echo both ways, a port without a rule,
the rule leaving with the tunnel).
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator

import pytest

from cases.napt import apps
from testbed import conntrack_helpers
from testbed.ipsec_checks import check_tunnel
from testbed.napt_matrix import APPS, CELL_FILE, columns, profile_columns

# junit's default family (xunit2) drops properties; the cell is also written to the case's directory
pytestmark = pytest.mark.filterwarnings("ignore:record_property is incompatible")

HELPERS = conntrack_helpers.HELPER_PORTS
# the apps whose payload carries an address (where the wire must show R's inner address or G_i's)
PAYLOAD_APPS = ("ftp-active-eprt", "ftp-active-port", "sip-rtp", "irc-dcc", "addr-in-payload")

# our gateway's columns, in the shape of a profile's napt-matrix.yaml (see _profile_columns):
# scenario, the apps that break, the address each payload app carries (inner: R's tunnel-inner
# address, g_i: rewritten to G_i), conntrack helpers on g, the X11-style row by netfilter
OURS = {
    "pool-ours": {"scenario": "napt-pool-ours", "breaks": [],
                  "payload_address": dict.fromkeys(PAYLOAD_APPS, "inner")},
    # H's tftpd answers from a new port: our NAPT filters endpoint-independently (RFC 4787), so TFTP
    # works; the SDP and the FTP/DCC commands name R's own address; no helper knows a protocol of its
    # own; "unless it ignores the source for UDP responses": ours does (multi-homed UDP works)
    "napt-ours": {"scenario": "napt-ours",
                  "breaks": ["ftp-active-eprt", "ftp-active-port", "sip-rtp", "irc-dcc", "addr-in-payload",
                             "x11-no-rule"],
                  "payload_address": dict.fromkeys(PAYLOAD_APPS, "inner")},
    # our ALGs are FTP and SIP: DCC stays broken with them
    "napt-ours-alg": {"scenario": "napt-ours-alg", "breaks": ["irc-dcc", "addr-in-payload", "x11-no-rule"],
                      "payload_address": {**dict.fromkeys(PAYLOAD_APPS, "inner"), "ftp-active-eprt": "g_i",
                                          "ftp-active-port": "g_i", "sip-rtp": "g_i"}},
}


def _profile_columns() -> dict[str, dict]:
    """The columns every installed gateway profile other than ours adds (its case data napt-matrix)."""
    out: dict[str, dict] = {}
    for col, spec in profile_columns().items():
        unknown = set(spec.get("breaks", [])) - set(APPS)
        assert not unknown, f"profile {spec['profile']}'s napt-matrix column {col} names apps the matrix has not: {unknown}"
        out[col] = {"payload_address": {}, "breaks": [], **spec}
    return out


COLUMNS = {**OURS, **_profile_columns()}
EXPECTED = {app: {col: app not in spec["breaks"] for col, spec in COLUMNS.items()} for app in APPS}


def _evidence(app: str, col: str) -> dict:
    """What the wire must show for `app` in column `col`."""
    spec = COLUMNS[col]
    if app in PAYLOAD_APPS and app != "addr-in-payload":
        return {"payload_address": spec["payload_address"].get(app, "inner")}
    if app == "addr-in-payload":
        return {"payload_address": "inner"}  # no helper knows a protocol of its own
    if app == "multihomed-udp" and EXPECTED[app][col]:
        return {"answered_from": "h2"}
    if app == "access-control":
        return {"seen_as": "inner" if _presence(col) == "pool" else "g_i"}
    return {}


def _presence(col: str) -> str:
    from testbed.scenario import load_named
    return load_named(COLUMNS[col]["scenario"]).roles["gw"].config["internal_presence"]


assert set(apps.APPS) == set(APPS)


def _iptables(world, node: str, *rule: str) -> None:
    world.run_in(node, ["iptables", *rule], check=True)


@contextlib.contextmanager
def _scenario_world(testbed_run, pytestconfig, key: str, scenario_name: str) -> Iterator[apps.Env]:
    """A world for `scenario_name` with its roles started, the tunnel up, the servers on H, and the
    netfilter DNAT for the X11-style row when a column of the scenario asks for it."""
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
        if any(s["scenario"] == scenario_name and s.get("x11_redirect") == "netfilter" for s in COLUMNS.values()):
            g_ibb = world.plan.nodes["g"].interface_on("ibb").name
            # the X11-style redirection rule, netfilter's way
            _iptables(world, "g", "-t", "nat", "-A", "PREROUTING", "-i", g_ibb, "-p", "tcp", "--dport",
                      str(apps.X11_RULE), "-j", "DNAT", "--to-destination", f"{vip}:{apps.X11}")
        servers = apps.start_servers(world, d / "apps")
        env = apps.Env(world, key, vip, napt, d / "apps", servers["payload"], servers["sink"], servers)
        env.tunnel_interface = roles["gw"].status().get("tunnel_interface")
        yield env
    finally:
        for r in reversed(list(roles.values())):
            r.stop()
        world.stop()


@pytest.fixture(scope="module")
def shared_worlds(testbed_run, pytestconfig):
    """The worlds of scenarios that more than one column uses (they differ only in what the case
    sets up on g), built on first use and kept for the module."""
    with contextlib.ExitStack() as stack:
        worlds: dict[str, apps.Env] = {}

        def get(name: str) -> apps.Env:
            if name not in worlds:
                worlds[name] = stack.enter_context(_scenario_world(testbed_run, pytestconfig, name, name))
            return worlds[name]
        yield get


# with `--dist loadgroup` each world is built by one worker only (default `load` ignores the mark)
_GROUPS = {col: "napt-" + spec["scenario"] for col, spec in COLUMNS.items()}


@pytest.fixture(scope="module", params=[pytest.param(c, marks=pytest.mark.xdist_group(_GROUPS[c])) for c in COLUMNS])
def column(request, testbed_run, pytestconfig):
    """The column's world with its servers; for a column with helpers, conntrack helpers attached on g
    to the flows R starts through the gateway's tunnel (`-j CT --helper`, removed when the column is done)."""
    col = request.param
    spec = COLUMNS[col]
    name = spec["scenario"]
    if sum(s["scenario"] == name for s in COLUMNS.values()) == 1:
        with _scenario_world(testbed_run, pytestconfig, col, name) as env:
            yield env
        return
    env = request.getfixturevalue("shared_worlds")(name)
    env.column = col
    rules = []
    if spec.get("conntrack_helpers"):
        assert env.tunnel_interface, f"column {col} asks for conntrack helpers on the gateway's tunnel interface; " \
                                     "its status reports no tunnel_interface"
        env.world.run_in("g", conntrack_helpers.load_nat_modules(HELPERS))
        rules = [["-t", "raw", *r] for r in conntrack_helpers.attach_rules(env.tunnel_interface, HELPERS)]
    for r in rules:
        _iptables(env.world, "g", *r[:2], "-A", *r[2:])
    _forget_flows(env.world)
    yield env
    for r in rules:
        _iptables(env.world, "g", *r[:2], "-D", *r[2:])
    _forget_flows(env.world)


def _forget_flows(world) -> None:
    """Columns that share one world: a conntrack entry a cell left (sipp's 5060 -> 5060) would carry
    the next column's call without, or with, a helper. Delete those of the helpers' ports on g
    (conntrack exits 1 when there were none)."""
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
    want = _evidence(app, column.column)
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
    assert not problems, (f"{APPS[app]} in column '{columns().get(column.column, column.column)}': {'; '.join(problems)}. "
                          f"Observed: {obs.how} (capture {cap.path})")
