"""Shared by the benchmarks: where figures go and how they are printed."""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from testbed import REPO_ROOT
from testbed.report import machine

BENCH_DIR = REPO_ROOT / "reports" / "bench"


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
