"""The `testbed` command: up, run, conformance, load, fuzz, clean, scenarios, report
(`testbed <command> --help` explains each option)."""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from testbed import REPO_ROOT
from testbed.schema import ConfigError

DURATIONS = REPO_ROOT / "fixtures" / "test-durations.json"  # recorded case durations for --shard


def _scenario(args):
    from testbed.pytest_plugin import DEFAULT_SCENARIO
    from testbed.scenario import load_named

    impls = dict(spec.split("=", 1) for spec in args.impl)
    return load_named(args.scenario or DEFAULT_SCENARIO).with_impls(impls)


def cmd_up(args) -> int:
    """Build a scenario's world, start its roles, open the Mininet CLI; tear down on exit."""
    from mininet.log import setLogLevel

    from testbed.isolation import enter_private_netns
    from testbed.naming import new_run_id
    from testbed.profiles import start_roles
    from testbed.runs import Run, reap_stale
    from testbed.world import World

    scenario = _scenario(args)
    if scenario.placement_only:
        print(f"error: scenario {scenario.name} places its roles but cannot run yet: {scenario.placement_only}",
              file=sys.stderr)
        return 2
    setLogLevel("critical")
    enter_private_netns()
    for line in reap_stale():
        print(f"cleanup: {line}")
    run_id = new_run_id("up")
    run = Run.register(run_id)
    log_dir = Path(args.report_dir).resolve() / run_id / "up"
    world = None
    # a SIGTERM or SIGHUP ends the run as cleanly as leaving the CLI does
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    try:
        world = World.for_scenario(run, log_dir, scenario)
        handles = start_roles(world, scenario.roles.values())
        info = {"run_id": run_id, "scenario": scenario.name, "built_in_s": round(world.built_in, 3),
                "harness_pid": os.getpid(), "logs": str(log_dir),
                "nodes": {n: world.pid(n) for n in world.plan.nodes}, "roles": sorted(handles),
                "processes": {f"{p.name}@{p.node}": p.pid for p in world.processes}}
        if args.no_cli:
            print("READY " + json.dumps(info), flush=True)
            signal.pause()
        else:
            _print_welcome(world, scenario, info)
            from testbed.demo_cli import TestbedCLI
            setLogLevel("output")
            TestbedCLI(world, handles)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if world is not None:
            world.stop()
        run.close()
    return 0


def _print_welcome(world, scenario, info) -> None:
    print(f"testbed: scenario {scenario.name} -- {scenario.description}")
    print(f"world up in {info['built_in_s']} s; logs in {info['logs']}")
    for name, spec in world.plan.nodes.items():
        addrs = ", ".join(f"{i.name} {i.cidr}" for i in spec.interfaces) or _station_line(world, name)
        print(f"  {name:5} {addrs}")
    print("Commands run inside a node: `r ping 10.1.2.10`, `g iptables -L -nv`, `h tcpdump -ni h-srv`.")
    print("Testbed commands: `roles`, `status ROLE`, `move r fn2`, `linkdown r`, `linkup r` (`help` lists all).")
    print(f"From another shell: nsenter -t <pid> -n -m <command>, pids: {info['nodes']}")
    print("Leave with `exit` or Ctrl-D; everything is torn down.")


def _station_line(world, station: str) -> str:
    seg = world.attached.get(station)
    if seg is None:
        return "station, detached"
    return f"station on {seg}: {world.plan.attachments[seg].address} via {world.plan.attachments[seg].router}"


def cmd_run(args, extra: list[str]) -> int:
    """Run the conformance suite (parallel by default) and write the report."""
    argv = [sys.executable, "-m", "pytest", str(REPO_ROOT / "cases"), "-p", "no:cacheprovider",
            "--report-dir", args.report_dir]
    if args.workers != "1":
        argv += ["-n", args.workers]
    for s in args.scenario_list:
        argv += ["--scenario", s]
    for i in args.impl:
        argv += ["--impl", i]
    if args.keep_captures:
        argv.append("--keep-captures")
    if args.shard:
        try:
            k, n = (int(x) for x in args.shard.split("/"))
            assert 1 <= k <= n
        except (ValueError, AssertionError):
            print(f"error: --shard {args.shard!r}: expected K/N with 1 <= K <= N, e.g. 2/4", file=sys.stderr)
            return 2
        argv += ["--splits", str(n), "--group", str(k), "--durations-path", str(args.durations)]
    return subprocess.call(argv + extra, cwd=REPO_ROOT)


def cmd_clean(_args) -> int:
    """Remove what dead runs left behind (only theirs, found in the run registry)."""
    from testbed.runs import reap_stale

    actions = reap_stale()
    for line in actions:
        print(line)
    if not actions:
        print("nothing to clean: no dead run left anything behind")
    return 0


def cmd_scenarios(_args) -> int:
    from testbed.profiles import available
    from testbed.scenario import list_scenarios, load_scenario

    scenarios = list_scenarios()
    width = max(map(len, scenarios)) + 1
    for name, path in scenarios.items():
        try:
            s = load_scenario(path)
        except ConfigError as exc:
            print(f"{name:22} INVALID: {exc}")
            continue
        missing = sorted({f"{r.kind} ({r.impl})" for r in s.roles.values() if not available(r.impl, r.kind)})
        note = f"  [not runnable yet: {', '.join(missing)}]" if missing else ""
        if s.placement_only:
            note = f"  [placement only: {s.placement_only}]"
        print(f"{name:{width}} {s.description}{note}")
    return 0


def cmd_report(args) -> int:
    """Render a run's pages again from its results.json, or screenshot its index in headless chromium."""
    from testbed.report import load_results, write_report
    from testbed.report.browser import broken_links, load, screenshot

    if args.action == "merge":
        from testbed.report.merge import MergeError, merge
        if not args.run or not args.shards:
            print("error: report merge OUT SHARD_DIR...: name the merged report's directory and the shards' runs",
                  file=sys.stderr)
            return 2
        try:
            print(merge(Path(args.run).resolve(), [Path(s).resolve() for s in args.shards]))
        except MergeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    run_dir = Path(args.run or Path(args.report_dir) / "latest").resolve()
    if not (run_dir / "results.json").is_file():
        print(f"error: {run_dir} holds no results.json: name a run directory (reports/<run-id>)", file=sys.stderr)
        return 2
    if args.action == "durations":
        from testbed.report.merge import write_durations
        print(write_durations(run_dir, Path(args.out or DURATIONS)))
        return 0
    if args.action == "render":
        doc, results = load_results(run_dir)
        print(write_report(run_dir, doc["run_id"], results, doc["meta"]))
        return 0
    index = run_dir / "index.html"
    page = load(index)
    for problem in [f"console: {m}" for m in page.console] + [f"broken link: {x}" for x in broken_links(index, page.dom)]:
        print(problem, file=sys.stderr)
    print(screenshot(index, run_dir / "screenshot.png", width=args.width, height=args.height))
    return 1 if page.console else 0


# the conformance suites: `testbed conformance SUITE` runs these folders of cases/conformance/
CONFORMANCE_SUITES = {"ike": ["ike", "ike_client"], "mip": ["mip", "mip_fa", "mip_mn"]}


def cmd_conformance(args, extra: list[str]) -> int:
    """Run a conformance suite against every installed profile of each role under test (--impl narrows
    it), show its progress part by part, and write the report with conformance.json."""
    names = list(CONFORMANCE_SUITES) if args.suite == "all" else [args.suite]
    dirs = [REPO_ROOT / "cases" / "conformance" / d for n in names for d in CONFORMANCE_SUITES[n]]
    dirs = [str(d) for d in dirs if d.is_dir()]
    if not dirs:
        print(f"error: no test parts for {args.suite} in this build", file=sys.stderr)
        return 2
    argv = [sys.executable, "-m", "pytest", *dirs, "-p", "no:cacheprovider", "--report-dir", args.report_dir,
            "--part-progress", "-q", "--no-header"]
    if args.workers != "1":
        argv += ["-n", args.workers]
    for i in args.impl:
        argv += ["--impl", i]
    return subprocess.call(argv + extra, cwd=REPO_ROOT)


def cmd_load(args) -> int:
    """Run the remote-access load generator (testbed/load.py) against one vpn-gateway profile."""
    from testbed.load import run_load
    from testbed.naming import new_run_id

    impls = dict(spec.split("=", 1) for spec in args.impl)
    profile = impls.get("vpn-gateway") or impls.get("gw") or impls.get("*") or "ours"
    out = Path(args.report_dir).resolve() / new_run_id("load")
    res = run_load(profile, args.clients, args.rate, auth=args.auth, group=args.group, report_dir=out)
    print(json.dumps({k: v for k, v in res.items() if k not in ("samples", "gateway")}, indent=2))
    print(f"written to {out / 'load.json'} and {out / 'load.svg'}")
    return 0 if res["established"] else 1


def cmd_fuzz(args) -> int:
    """IKEv2 robustness: a seeded mutation fuzzer against every installed vpn-gateway profile (or the one
    --impl names), with health checks; writes fuzz.json (testbed/conformance/fuzz.py)."""
    from testbed.conformance.fuzz import run_cli
    return run_cli(args)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `testbed scenarios | head` ends quietly
    p = argparse.ArgumentParser(prog="testbed", description="Conformance testbed for IPsec remote access and Mobile IPv4 across VPN gateways")
    p.add_argument("--report-dir", default=str(REPO_ROOT / "reports"),
                   help="where each run's directory reports/<run-id>/ goes (default: reports/)")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="build a scenario, start its roles, open the Mininet CLI")
    up.add_argument("--scenario", help="a scenario name (see `testbed scenarios`)")
    up.add_argument("--impl", action="append", default=[], metavar="ROLE=PROFILE",
                    help="fill a role with an installed profile (by role name or kind, or * for every role it can fill), e.g. gw=strongswan; repeatable")
    up.add_argument("--no-cli", action="store_true", help="print READY and a JSON description, then wait for a signal")
    run = sub.add_parser("run", help="run the conformance suite and write the report (extra args go to pytest)")
    run.add_argument("--scenario", dest="scenario_list", action="append", default=[], metavar="NAME",
                     help="run only the cases of these scenarios (repeatable; `testbed scenarios` lists them)")
    run.add_argument("--impl", action="append", default=[], metavar="ROLE=PROFILE",
                     help="fill a role with an installed profile (by role name or kind, or * for every role it can fill), e.g. gw=strongswan; repeatable")
    run.add_argument("-n", "--workers", default="auto", help="parallel workers (pytest-xdist); 1 for serial")
    run.add_argument("--keep-captures", action="store_true", help="keep the pcaps of passing cases too (by default only "
                     "failing cases keep theirs)")
    run.add_argument("--shard", metavar="K/N", help="run only the K-th of N shards of equal duration (pytest-split; "
                     "merge the shards' reports with `testbed report merge`)")
    run.add_argument("--durations", default=str(DURATIONS), help="recorded case durations for --shard")
    conf = sub.add_parser("conformance", help="run a conformance suite (crafted exchanges, a verdict per test part "
                          "and requirement) against every installed implementation of its roles; writes the report "
                          "and conformance.json (extra args go to pytest)")
    conf.add_argument("suite", choices=[*CONFORMANCE_SUITES, "all"], help="ike: IKEv2, ESP and UDP encapsulation "
                      "(RFC 7296, 4303, 3948); mip: Mobile IPv4 (RFC 5944, 3024, 3519, 5265)")
    conf.add_argument("--impl", action="append", default=[], metavar="ROLE=PROFILE",
                      help="only this profile in a role, e.g. vpn-gateway=strongswan (by role name, kind or *)")
    conf.add_argument("-n", "--workers", default="2", help="parallel workers (pytest-xdist); 1 for serial")
    load = sub.add_parser("load", help="remote-access load: N IKEv2 clients at a rate against a vpn-gateway profile; "
                          "writes load.json and load.svg")
    load.add_argument("--impl", action="append", default=[], metavar="vpn-gateway=PROFILE",
                      help="the gateway's profile (default: ours)")
    load.add_argument("--clients", type=int, default=100, help="IKEv2 clients to set up, one user each (default 100)")
    load.add_argument("--rate", type=float, default=50.0, help="offered setups per second")
    load.add_argument("--auth", choices=["psk", "eap-md5"], default="psk", help="the clients' authentication (default psk)")
    load.add_argument("--group", type=int, choices=[19, 31, 14], default=19,
                      help="the Diffie-Hellman group of IKE_SA_INIT (19 ECP-256, 31 Curve25519, 14 MODP-2048; default 19)")
    load.add_argument("--report-dir", default=argparse.SUPPRESS, help="where the run's directory goes (reports/)")
    fuzz = sub.add_parser("fuzz", help="robustness: seeded mutations of each IKEv2 exchange against every installed "
                          "vpn-gateway profile, with health checks (crash, hang, lost tunnel); writes fuzz.json")
    fuzz.add_argument("protocol", choices=["ike"], help="the protocol to fuzz (ike: IKEv2 against a vpn-gateway)")
    fuzz.add_argument("--impl", action="append", default=[], metavar="vpn-gateway=PROFILE",
                      help="only this gateway profile (default: every installed one)")
    fuzz.add_argument("--seed", type=int, default=None, help="the run's seed (default: a random one, printed)")
    fuzz.add_argument("--count", type=int, default=500, help="mutations per implementation")
    fuzz.add_argument("--seconds", type=float, default=300.0, help="time limit per implementation")
    fuzz.add_argument("--only", metavar="I[,J...]", help="replay only these mutation indexes of --seed")
    fuzz.add_argument("--check-every", type=int, default=20, help="a health check every N mutations")
    fuzz.add_argument("--no-narrow", action="store_true", help="do not replay the suspects of a hang or lost tunnel")
    fuzz.add_argument("--report-dir", default=argparse.SUPPRESS, help="where the run's directory goes (reports/)")
    sub.add_parser("clean", help="remove leftovers of dead runs (never anything else)")
    sub.add_parser("scenarios", help="list scenarios with a one-line description")
    rep = sub.add_parser("report", help="render a run's report again, or screenshot it in headless chromium")
    rep.add_argument("action", choices=["render", "screenshot", "merge", "durations"],
                     help="render: the pages again; screenshot: in headless chromium; merge OUT SHARD...: one report "
                          "from shards; durations: a run's case durations for --shard (fixtures/test-durations.json)")
    rep.add_argument("run", nargs="?", help="the run's directory (default: reports/latest); for merge: the output")
    rep.add_argument("shards", nargs="*", help="merge: the shards' run directories")
    rep.add_argument("--out", help="durations: where to write them")
    rep.add_argument("--width", type=int, default=1400, help="screenshot: the window's width in pixels")
    rep.add_argument("--height", type=int, default=900, help="screenshot: the window's height in pixels")
    args, extra = p.parse_known_args(argv)
    if extra and args.cmd not in ("run", "conformance"):
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.cmd == "run":
            return cmd_run(args, extra)
        if args.cmd == "conformance":
            return cmd_conformance(args, extra)
        return {"up": cmd_up, "clean": cmd_clean, "load": cmd_load, "fuzz": cmd_fuzz, "scenarios": cmd_scenarios, "report": cmd_report}[args.cmd](args)
    except (ConfigError, RuntimeError) as exc:  # bad data files; no root; a role that failed to start
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
