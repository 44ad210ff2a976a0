"""Suite wall time with one and with two workers, measured in the same run, and the ratio.

    sudo .venv/bin/python -m benchmarks.bench_suite [--workers 1 2] [-- extra pytest args]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
import time

from benchmarks.common import publish
from testbed import REPO_ROOT


def wall_time(workers: int, extra: list[str], keep_failed: Path | None = None) -> tuple[float, int, list[str]]:
    """Seconds, pytest's exit status and the lines naming cases that did not pass. With `keep_failed`,
    the run's report (every case's logs and captures) is moved there when a case did not pass."""
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as reports:
        argv = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", str(REPO_ROOT / "cases"),
                "--report-dir", reports, "-n", str(workers), *extra]
        t0 = time.monotonic()
        res = subprocess.run(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seconds = time.monotonic() - t0
        not_passed = [line for line in res.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
        if keep_failed is not None and not_passed:
            shutil.rmtree(keep_failed, ignore_errors=True)
            shutil.copytree(reports, keep_failed, symlinks=True)
        return seconds, res.returncode, not_passed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args, extra = ap.parse_known_args()
    extra = [a for a in extra if a != "--"]
    figures = {"what": "wall time of `pytest cases` (the conformance suite)", "runs": {}}
    for n in args.workers:
        seconds, rc, not_passed = wall_time(n, extra)
        figures["runs"][f"n{n}"] = {"seconds": round(seconds, 2), "pytest_exit": rc, "not_passed": not_passed}
    base = figures["runs"][f"n{args.workers[0]}"]["seconds"]
    for n in args.workers[1:]:
        figures[f"speedup_n{n}_vs_n{args.workers[0]}"] = round(base / figures["runs"][f"n{n}"]["seconds"], 2)
    publish("suite", figures)


if __name__ == "__main__":
    main()
