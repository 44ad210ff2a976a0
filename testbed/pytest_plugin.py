"""The pytest plugin: fixtures for the world, scenarios, roles and captures; area markers;
options to choose scenarios and implementations; the report at the end of the session.

Works with pytest-xdist: the controller picks the run id and writes the report; each worker
builds its worlds in a network namespace of its own.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from testbed import REPO_ROOT
from testbed.conformance.parts import PART_PROPERTY, STEPS_PROPERTY
from testbed.naming import case_dirname, new_run_id
from testbed.report import CaseResult, collect_artifacts, render_evidence, write_report
from testbed.report.requirements import check_req_ids, req_ids
from testbed.report.verdicts import NA_PREFIX, NONCONFORMANCE_PROPERTY, is_downgrade, not_run, verdict_of

AREAS = ("world", "remote_access", "mobility", "vpn_traversal", "napt", "security", "interop", "conformance")
DEFAULT_SCENARIO = "bare-world"
_CONTROLLER: dict = {}  # the config of the process that writes the report (not an xdist worker)


def pytest_addoption(parser):
    g = parser.getgroup("testbed", "conformance testbed")
    g.addoption("--scenario", action="append", default=[], metavar="NAME",
                help="run cases only for these scenarios (repeatable; `testbed scenarios` lists them)")
    g.addoption("--impl", action="append", default=[], metavar="ROLE=PROFILE",
                help="fill a role (by role name or kind, or * for all) with a profile: ours, strongswan")
    g.addoption("--keep-captures", action="store_true", help="keep pcaps of passing cases too")
    g.addoption("--report-dir", default=str(REPO_ROOT / "reports"), help="where reports/<run-id>/ goes")
    g.addoption("--run-id", default=None, help="name of this run (default: time, worker, pid)")
    g.addoption("--part-progress", action="store_true",
                help="print a line per finished case: 'part i of N', its verdict, id and implementation")


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    config.addinivalue_line("markers", "scenario(*names): the scenarios a case applies to (default: bare-world)")
    config.addinivalue_line("markers", "impl_matrix(*overrides): also run with these ROLE=PROFILE overrides")
    config.addinivalue_line("markers", "req(*ids): the requirements a case checks (fixtures/requirements.yaml)")
    config.addinivalue_line("markers", "conformance_part(id, title, needs): a conformance test part (testbed/conformance/parts.py)")
    for area in AREAS:
        config.addinivalue_line("markers", f"{area}: conformance area")
    if _is_worker(config):
        run_id = config.workerinput["testbed_run_id"]
    else:
        run_id = config.getoption("run_id") or new_run_id()
    report_dir = Path(config.getoption("report_dir")).resolve() / run_id
    config._testbed = {"run_id": run_id, "report_dir": report_dir, "results": {}, "warnings": {},
                       "started": time.monotonic()}
    if not _is_worker(config):
        _CONTROLLER["config"] = config
        runs_cases = any("cases" in Path(a).parts for a in config.args)
        if runs_cases and not config.option.xmlpath and not config.option.collectonly:
            config.option.xmlpath = str(report_dir / "junit.xml")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):  # xdist: hand the run id to each worker
    node.workerinput["testbed_run_id"] = node.config._testbed["run_id"]


def pytest_collection_modifyitems(config, items):
    cases = REPO_ROOT / "cases"
    for item in items:
        path = Path(str(item.fspath))
        if cases in path.parents:
            area = path.relative_to(cases).parts[0]
            if area in AREAS:
                item.add_marker(getattr(pytest.mark, area))
        ids = req_ids(item)
        if ids:
            check_req_ids(item.nodeid, ids)
            item.user_properties.append(("req", ids))  # travels with the reports (also from xdist workers)


def _parse_impls(config) -> dict[str, str]:
    out = {}
    for spec in config.getoption("impl"):
        role, sep, profile = spec.partition("=")
        if not sep:
            raise pytest.UsageError(f"--impl {spec!r}: expected ROLE=PROFILE, e.g. --impl gw=strongswan or --impl '*=strongswan'")
        out[role] = profile
    return out


def pytest_generate_tests(metafunc):
    """Parametrize `scenario` by the case's scenarios and, unless --impl was given, by its
    implementation matrix: `@pytest.mark.impl_matrix("gw", "client")` runs the case once with the
    scenario's own implementations and once for every other installed profile that fills each
    named role (those runs are marked `interop`), so a vendor's installed profile gets the same
    cases without editing them. A ROLE=PROFILE entry names one combination."""
    if "scenario" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("scenario")
    applies = list(marker.args) if marker else [DEFAULT_SCENARIO]
    chosen = metafunc.config.getoption("scenario")
    names = [n for n in applies if not chosen or n in chosen]
    if not names:
        reason = f"{NA_PREFIX}applies to scenarios {applies}; this run chose {chosen}"
        metafunc.parametrize("scenario", [pytest.param(None, marks=pytest.mark.skip(reason=reason))], indirect=True)
        return
    matrix = metafunc.definition.get_closest_marker("impl_matrix")
    roles = list(matrix.args) if matrix and not metafunc.config.getoption("impl") else []
    params = [pytest.param((name, v), id=name + (f"+{v}" if v else ""), marks=[pytest.mark.interop] if v else [])
              for name in names for v in [""] + matrix_variants(name, roles)]
    metafunc.parametrize("scenario", params, indirect=True)


def matrix_variants(scenario_name: str, entries: list[str]) -> list[str]:
    """The ROLE=PROFILE overrides of an implementation matrix: a role name stands for every installed
    profile that fills its kind other than the scenario's own."""
    from testbed.profiles import able
    from testbed.scenario import load_named

    out: list[str] = []
    roles = load_named(scenario_name).roles
    for entry in entries:
        if "=" in entry:
            out.append(entry)
            continue
        role = roles.get(entry)
        if role is None:
            raise pytest.UsageError(f"impl_matrix({entry!r}): scenario {scenario_name} has no role {entry!r} "
                                    f"(its roles: {', '.join(roles)})")
        out += [f"{entry}={p}" for p in able(role.kind) if p != role.impl and f"{entry}={p}" not in out]
    return out


# ---- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def testbed_run(pytestconfig):
    """This process's run: a private network namespace and an entry in the run registry."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the world is built in network namespaces (run as root, or with sudo)")
    from mininet.log import setLogLevel

    from testbed.isolation import enter_private_netns
    from testbed.runs import Run, reap_stale

    setLogLevel("critical")  # Mininet's own chatter; the harness reports what matters
    enter_private_netns()
    reap_stale()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    run = Run.register(f"{pytestconfig._testbed['run_id']}-{worker}")
    yield run
    run.close()


@pytest.fixture
def scenario(request, pytestconfig):
    from testbed.scenario import load_named
    from testbed.schema import ConfigError

    name, variant = request.param
    overrides = dict(spec.split("=", 1) for spec in variant.split(",") if spec)
    try:
        s = load_named(name).with_impls({**overrides, **_parse_impls(pytestconfig)})
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    request.node.user_properties.append(("scenario", {"name": s.name, "roles": {
        r.name: {"kind": r.kind, "impl": r.impl} for r in s.roles.values()}}))
    skip_unavailable(s)
    return s


def skip_unavailable(scenario) -> None:
    """Skip the case, before any world is built, when a profile of the scenario says it cannot fill
    its role on this machine (profiles.unavailable: e.g. no ESP in this kernel's XFRM)."""
    from testbed.profiles import unavailable

    for role in scenario.roles.values():
        if reason := unavailable(role):
            not_run(reason)


@pytest.fixture
def case_dir(request, pytestconfig) -> Path:
    d = pytestconfig._testbed["report_dir"] / "cases" / case_dirname(request.node.nodeid)
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def world(request, testbed_run, scenario, case_dir):
    """A fresh world for the case, built from the scenario; torn down after it."""
    from testbed.world import World

    w = World.for_scenario(testbed_run, case_dir / "logs", scenario)
    w.mark("world-up", seconds=round(w.built_in, 3), scenario=scenario.name)
    yield w
    w.stop()
    (case_dir / "timeline.json").write_text(json.dumps(w.timeline, indent=1))
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.passed and not request.config.getoption("keep_captures"):
        shutil.rmtree(case_dir / "captures", ignore_errors=True)
    # the ladder (only where captures are kept) and the probe plot, drawn here in the worker
    render_evidence(case_dir, w.timeline)


@pytest.fixture(autouse=True)
def no_silent_errors(request):
    """The sentinel (testbed/sentinel.py): an exception one of our programs caught and logged while
    the case ran fails it, with the log excerpt, even when everything on the wire looked right."""
    if not request.node.nodeid.startswith("cases/"):
        yield
        return
    from testbed import sentinel

    watch = sentinel.Watch()
    yield
    errors = watch.errors()
    sentinel.forget_stopped()
    if errors:
        pytest.fail(sentinel.report(errors), pytrace=False)


@pytest.fixture
def capture(world, case_dir):
    """capture(node, interface, bpf=None, wire=False) starts tcpdump there (wire: on the other end of
    the link, testbed/capture.py); the pcap goes to the case's captures/."""
    from testbed.capture import start_capture, start_wire_capture

    def start(node: str, interface: str, bpf: str | None = None, name: str | None = None, wire: bool = False):
        how = start_wire_capture if wire else start_capture
        return how(world, node, interface, case_dir / "captures", bpf=bpf, name=name)

    return start


@pytest.fixture
def roles(world, scenario):
    """The scenario's roles, started (dict: role name -> handle with status() and stop())."""
    return start_roles_or_skip(world, scenario)


def start_roles_or_skip(world, scenario) -> dict:
    """Start the scenario's roles in `world`; a role whose implementation is not installed here ends
    the case as a skip that names the role and what is missing (RoleUnavailable's message). For
    fixtures that build their own (module-scoped) world as well as for `roles`."""
    from testbed.profiles import RoleUnavailable, start_roles

    try:
        return start_roles(world, scenario.roles.values())
    except RoleUnavailable as exc:
        not_run(str(exc))


# ---- the report ---------------------------------------------------------------------------------
def pytest_warning_recorded(warning_message, when, nodeid, location):
    """Warnings raised while a case ran (forwarded from xdist workers too): a downgraded check."""
    config = _CONTROLLER.get("config")
    if config is None or not nodeid.startswith("cases/"):
        return
    category = getattr(warning_message.category, "__name__", str(warning_message.category))
    if is_downgrade(category, str(warning_message.filename), str(config.rootpath / "cases")):
        config._testbed["warnings"].setdefault(nodeid, []).append(str(warning_message.message))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    config = _CONTROLLER.get("config")
    if config is not None:
        config._testbed["collected"] = len(ids)


def pytest_collection_finish(session):
    if not _is_worker(session.config):
        session.config._testbed.setdefault("collected", len(session.items))


def _progress(config, res) -> None:
    """`--part-progress`: one line per finished case (part i of N, verdict, id, implementation)."""
    tb = config._testbed
    tb["done"] = tb.get("done", 0) + 1
    verdict = verdict_of(res.outcome, res.message, res.nonconformance is not None, tb["warnings"].get(res.nodeid, []))
    what = f"{res.part['id']} [{res.part['implementation']}] {res.part['title']}" if res.part else res.nodeid
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(f"part {tb['done']} of {tb.get('collected', '?')}: {verdict:<12} {what}")


def pytest_runtest_logreport(report):
    config = _CONTROLLER.get("config")
    if config is None or not report.nodeid.startswith("cases/"):
        return
    results = config._testbed["results"]
    res = results.setdefault(report.nodeid, CaseResult(report.nodeid, "passed", 0.0))
    res.duration += report.duration
    res.markers = [k for k in AREAS if k in report.keywords]
    props = dict(report.user_properties)
    res.reqs = list(props.get("req", []))
    if "scenario" in props:
        res.scenario, res.roles = props["scenario"]["name"], props["scenario"]["roles"]
    if NONCONFORMANCE_PROPERTY in props:
        res.nonconformance = props[NONCONFORMANCE_PROPERTY]
    if PART_PROPERTY in props:
        res.part = props[PART_PROPERTY]
        res.roles = {res.part["role"]: {"kind": res.part["role"], "impl": res.part["implementation"]}}
    if STEPS_PROPERTY in props:
        res.steps = props[STEPS_PROPERTY]
    if hasattr(report, "wasxfail") and report.skipped:
        res.outcome = "xfailed"
        res.message = "\n".join(report.longreprtext.splitlines()[-15:]) if report.longreprtext else report.wasxfail
    elif report.skipped:
        res.outcome = "skipped"
        if isinstance(report.longrepr, tuple):
            res.message = str(report.longrepr[2]).removeprefix("Skipped: ")
    elif report.failed:
        res.outcome = "failed" if report.when == "call" else "error"
        text = report.longreprtext
        res.message = "\n".join(text.splitlines()[-15:])
    if report.when == "teardown" and config.getoption("part_progress"):
        _progress(config, res)


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if _is_worker(config) or config.option.collectonly:
        return
    tb = config._testbed
    results = list(tb["results"].values())
    if not results:
        return
    report_dir = tb["report_dir"]
    for r in results:
        r.artifacts = collect_artifacts(report_dir, report_dir / "cases" / case_dirname(r.nodeid))
        r.warnings = tb["warnings"].get(r.nodeid, [])
        r.verdict = verdict_of(r.outcome, r.message, r.nonconformance is not None, r.warnings)
    meta = {"scenarios": ", ".join(config.getoption("scenario")) or "per case",
            "implementations": ", ".join(config.getoption("impl")) or "scenario defaults",
            "workers": getattr(config.option, "numprocesses", None) or 1,
            "wall_s": round(time.monotonic() - tb["started"], 1), "junit": bool(config.option.xmlpath)}
    tb["index"] = write_report(report_dir, tb["run_id"], results, meta)


def pytest_terminal_summary(terminalreporter, config):
    index = getattr(config, "_testbed", {}).get("index")
    if index:
        terminalreporter.write_line(f"testbed report: {index}")
