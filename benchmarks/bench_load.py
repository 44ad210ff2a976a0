"""Remote-access load, ours against strongSwan: the same N clients at the same offered rate and DH
group (testbed/load.py), one gateway after the other in one benchmark run (each in its own world, so
neither competes with the other for the CPU), then both sets of figures and their ratios.

    sudo .venv/bin/python -m benchmarks.bench_load [--clients 1000] [--rate 200] [--group 19] [--auth psk]

Per implementation: offered, established, failed by cause, setups/s achieved, time to establish
(p50/p95/p99), the gateway's CPU seconds and RSS per established SA, probes lost, liveness checks
lost, the generator's CPU (and whether it was the bottleneck), and how busy the whole machine was
(load average before and after, share of all cores busy: other programs included). Ratios: setups/s ours/strongswan and
RSS per SA ours/strongswan. Each run's load.json and load.svg land in reports/bench/load/<impl>/;
the figures in reports/bench/load.json.
"""
from __future__ import annotations

import argparse
import subprocess
import sys

from benchmarks.common import BENCH_DIR, MachineLoad, publish, start_bench_run
from testbed.load import run_load

IMPLS = ("ours", "strongswan")
SHOWN = ("offered", "established", "failed", "setups_per_s", "p50_s", "p95_s", "p99_s", "gateway_rss_kib_per_sa",
         "gateway_cpu_s", "probes_lost", "dpd_lost", "cookies", "generator_cpu_s", "generator_cpu_share",
         "generator_saturated", "milestones")


def gateway_error(exc: Exception) -> str:
    """What stopped an implementation's run, in a line: e.g. its configuration tool did not finish
    loading the users in time."""
    if isinstance(exc, subprocess.TimeoutExpired):
        argv = exc.cmd if isinstance(exc.cmd, list) else [str(exc.cmd)]
        tool = next((a for a in argv if not a.startswith(("mnexec", "-", "env", "STRONGSWAN_CONF")) and "/" not in a
                     and not a.isdigit()), argv[0])
        return f"{tool} did not finish within {exc.timeout:.0f} s while the gateway was being set up"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def ratio(a, b):
    return None if a is None or not b else round(a / b, 3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--group", type=int, choices=[19, 31, 14], default=19)
    ap.add_argument("--auth", choices=["psk", "eap-md5"], default="psk")
    ap.add_argument("--impl", action="append", help="only these profiles (default: ours and strongswan)")
    args = ap.parse_args()
    run = start_bench_run()
    results = {}
    try:
        for impl in args.impl or IMPLS:
            print(f"== {impl}: {args.clients} clients at {args.rate:g}/s, group {args.group}, {args.auth}", file=sys.stderr)
            with MachineLoad() as load:
                try:
                    res = run_load(impl, args.clients, args.rate, auth=args.auth, group=args.group,
                                   report_dir=BENCH_DIR / "load" / impl, run=run)
                except Exception as exc:  # noqa: BLE001 - a gateway that cannot take the load is a result
                    res = {"error": gateway_error(exc)}
                    print(f"!! {impl} did not run: {res['error']}", file=sys.stderr)
            results[impl] = {k: res.get(k) for k in SHOWN + ("error",) if k in res or k != "error"} | {
                "machine_load": load.figures}
            if load.busy_before():
                print(f"!! the machine was busy before {impl}'s run (load average {load.before:.2f} on "
                      f"{load.figures['cores']} cores): its figures are depressed; measure on a quiet machine",
                      file=sys.stderr)
    finally:
        run.close()
    ours, sw = results.get("ours", {}), results.get("strongswan", {})
    figures = {"clients": args.clients, "rate": args.rate, "group": args.group, "auth": args.auth, **results,
               "ratios": {"setups_per_s_ours_over_strongswan": ratio(ours.get("setups_per_s"), sw.get("setups_per_s")),
                          "rss_per_sa_ours_over_strongswan": ratio(ours.get("gateway_rss_kib_per_sa"),
                                                                   sw.get("gateway_rss_kib_per_sa"))}}
    publish("load", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
