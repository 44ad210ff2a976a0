"""One report from several shards of a run (CI across machines: `testbed run --shard K/N` on each,
then `testbed report merge OUT SHARD_DIR...`): the cases of every shard, their case directories
(captures, logs, timeline) copied under OUT, the pages rendered again. A case found in two shards
is refused (the shards overlap: they were not cut from the same split).

Durations for the split come from a run's results.json (`testbed report durations RUN`), in
pytest-split's format (node id -> seconds), so the shards take about equally long.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from testbed.report import CaseResult, load_results, write_report


class MergeError(ValueError):
    pass


def merge(out: Path, shards: list[Path], run_id: str | None = None) -> Path:
    results: list[CaseResult] = []
    seen: dict[str, Path] = {}
    metas = []
    for shard in shards:
        if not (shard / "results.json").is_file():
            raise MergeError(f"{shard} holds no results.json: name the shards' run directories (reports/<run-id>)")
        doc, cases = load_results(shard)
        metas.append({"run_id": doc["run_id"], **{k: v for k, v in doc["meta"].items() if k != "shards"}})
        for case in cases:
            if case.nodeid in seen:
                raise MergeError(f"{case.nodeid} ran in both {seen[case.nodeid]} and {shard}: the shards overlap")
            seen[case.nodeid] = shard
            results.append(case)
        if (shard / "cases").is_dir():
            shutil.copytree(shard / "cases", out / "cases", dirs_exist_ok=True)
    run_id = run_id or out.name
    meta = {"shards": metas, "workers": sum(_int(m.get("workers")) for m in metas)}
    return write_report(out, run_id, sorted(results, key=lambda r: r.nodeid), meta)


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 1


def durations(run: Path) -> dict[str, float]:
    """node id -> seconds of every case of a run, as pytest-split's --durations-path reads them."""
    _, cases = load_results(run)
    return {c.nodeid: round(c.duration, 3) for c in cases}


def write_durations(run: Path, path: Path) -> Path:
    path.write_text(json.dumps(durations(run), indent=1, sort_keys=True) + "\n")
    return path
