"""Shards merged into one report (testbed report merge), and durations for pytest-split."""
import json

import pytest

from testbed.report import CaseResult, load_results, write_report
from testbed.report.merge import MergeError, durations, merge


def shard(tmp_path, name: str, nodeids: list[str]):
    d = tmp_path / name
    results = []
    for i, nodeid in enumerate(nodeids):
        case = d / "cases" / f"case{name}{i}"
        case.mkdir(parents=True)
        (case / "timeline.json").write_text("[]")
        results.append(CaseResult(nodeid, "passed", 1.5 + i, ["world"], verdict="PASS",
                                  artifacts=[f"cases/case{name}{i}/timeline.json"]))
    write_report(d, name, results, {"workers": 2}, bench_dir=tmp_path / "bench")
    return d


def test_merge_keeps_every_case_and_its_artifacts(tmp_path):
    a = shard(tmp_path, "a", ["cases/x.py::test_1", "cases/x.py::test_2"])
    b = shard(tmp_path, "b", ["cases/y.py::test_3"])
    index = merge(tmp_path / "merged", [a, b])
    doc, cases = load_results(index.parent)
    assert [c.nodeid for c in cases] == ["cases/x.py::test_1", "cases/x.py::test_2", "cases/y.py::test_3"]
    assert doc["summary"]["PASS"] == 3 and [s["run_id"] for s in doc["meta"]["shards"]] == ["a", "b"]
    assert all((index.parent / art).is_file() for c in cases for art in c.artifacts)


def test_overlapping_shards_are_refused(tmp_path):
    a = shard(tmp_path, "a", ["cases/x.py::test_1"])
    b = shard(tmp_path, "b", ["cases/x.py::test_1"])
    with pytest.raises(MergeError, match="overlap"):
        merge(tmp_path / "merged", [a, b])


def test_durations_in_pytest_splits_format(tmp_path):
    a = shard(tmp_path, "a", ["cases/x.py::test_1", "cases/x.py::test_2"])
    assert durations(a) == {"cases/x.py::test_1": 1.5, "cases/x.py::test_2": 2.5}
    json.dumps(durations(a))
