"""Shared by the benchmarks: how a run starts, where figures go and how they are printed."""
from __future__ import annotations

import json
import os
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


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores, from /proc/stat's first line."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


class MachineLoad:
    """How busy the whole machine was around a measurement (with-block): the load average before and
    after, and the share of all cores busy during it, ours or not. A figure measured on a busy
    machine is depressed; the benchmark prints this next to it instead of guessing."""

    def __enter__(self) -> "MachineLoad":
        self.before = os.getloadavg()[0]
        self._start = _cpu_ticks()
        return self

    def __exit__(self, *exc) -> None:
        busy, total = (a - b for a, b in zip(_cpu_ticks(), self._start))
        self.figures = {"cores": os.cpu_count(), "loadavg_1m_before": round(self.before, 2),
                        "loadavg_1m_after": round(os.getloadavg()[0], 2),
                        "busy_share_all_cores": round(busy / total, 3) if total else None}

    def busy_before(self) -> bool:
        """More than half the cores were already busy when the measurement started."""
        return self.before > 0.5 * (os.cpu_count() or 1)
