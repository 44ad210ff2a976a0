"""Shared by the benchmarks: how a run starts, where figures go and how they are printed."""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from testbed import REPO_ROOT
from testbed.report import machine
from testbed.runs import Run

BENCH_DIR = REPO_ROOT / "reports" / "bench"


def start_bench_run() -> Run:
    """A benchmark's run, as `testbed run` starts one: Mininet quiet, a private network namespace for
    its worlds, the run registered (so `testbed clean` finds what a killed benchmark left). The
    caller closes it (run.close()) when its worlds are gone."""
    from mininet.log import setLogLevel

    from testbed.isolation import enter_private_netns
    from testbed.naming import new_run_id

    setLogLevel("critical")
    enter_private_netns()
    return Run.register(new_run_id("bench"))


def summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"n": len(samples), "median": statistics.median(samples), "min": ordered[0], "max": ordered[-1], "p95": p95}


def publish(name: str, figures: dict) -> Path:
    """Print the figures and write them to reports/bench/<name>.json (with the date and machine,
    which the report's benchmarks page shows)."""
    figures = {**figures, "recorded": {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine()}}
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    path = BENCH_DIR / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    print(f"written to {path}")
    return path
