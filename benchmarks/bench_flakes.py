"""Flakes: the whole conformance suite run several times in a row, and every case that did not pass
in any run, with the runs it failed in. Target: none.

    sudo .venv/bin/python -m benchmarks.bench_flakes [--runs 5] [--workers auto] [-- extra pytest args]

Each run is `pytest cases -n <workers>` exactly as the README's test command runs it (a fresh
report directory per run; a run where a case did not pass keeps its report, with every case's logs
and captures, in reports/bench/flakes-run-N); the figures are in reports/bench/flakes.json.
"""
from __future__ import annotations

import argparse
from collections import defaultdict

from benchmarks.bench_suite import wall_time
from benchmarks.common import BENCH_DIR, publish, summary


def case_id(line: str) -> str:
    """'FAILED cases/x.py::test_y[p] - reason' -> 'cases/x.py::test_y[p]'."""
    return line.split(" ", 1)[1].split(" - ", 1)[0].strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workers", default="auto")
    args, extra = ap.parse_known_args()
    extra = [a for a in extra if a != "--"]
    failed_in: dict[str, list[int]] = defaultdict(list)
    runs = []
    for i in range(1, args.runs + 1):
        kept = BENCH_DIR / f"flakes-run-{i}"
        seconds, rc, not_passed = wall_time(args.workers, extra, keep_failed=kept)
        for line in not_passed:
            failed_in[case_id(line)].append(i)
        runs.append({"run": i, "seconds": round(seconds, 1), "pytest_exit": rc, "not_passed": not_passed,
                     "report": str(kept) if not_passed else None})
        print(f"run {i}/{args.runs}: {seconds:.0f} s, exit {rc}, {len(not_passed)} not passed"
              + "".join(f"\n  {line}" for line in not_passed) + (f"\n  report kept: {kept}" if not_passed else ""),
              flush=True)
    publish("flakes", {
        "what": f"`pytest cases -n {args.workers}` run {args.runs} times in a row; cases that did not pass in any run",
        "runs": runs,
        "wall_time_s": summary([r["seconds"] for r in runs]),
        "cases_not_passing": {case: {"runs": rs, "rate": f"{len(rs)}/{args.runs}"} for case, rs in sorted(failed_in.items())},
        "flaky_count": len(failed_in),
        "target": 0,
    })


if __name__ == "__main__":
    main()
