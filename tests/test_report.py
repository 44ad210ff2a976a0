import json

from testbed.report import CaseResult, collect_artifacts, summarize, write_report


def test_report_has_summary_cases_and_links(tmp_path):
    run = tmp_path / "run-1"
    case = run / "cases" / "c1"
    (case / "captures").mkdir(parents=True)
    (case / "captures" / "g-dmz.pcap").write_bytes(b"x")
    (case / "timeline.json").write_text("[]")
    results = [
        CaseResult("cases/world/test_a.py::ok", "passed", 1.25, ["world"], artifacts=collect_artifacts(run, case)),
        CaseResult("cases/world/test_a.py::bad", "failed", 0.5, ["world"], message="assert <b>1 == 2</b>"),
        CaseResult("cases/world/test_a.py::skip", "skipped", 0.0, message="needs root"),
    ]
    index = write_report(run, "run-1", results, {"workers": 2})
    doc = json.loads((run / "results.json").read_text())
    assert doc["summary"] == {"passed": 1, "failed": 1, "error": 0, "skipped": 1, "total": 3}
    assert doc["cases"][0]["artifacts"] == ["cases/c1/captures/g-dmz.pcap", "cases/c1/timeline.json"]
    page = index.read_text()
    assert "FAIL" in page and '<a href="cases/c1/captures/g-dmz.pcap">captures/g-dmz.pcap</a>' in page
    assert "&lt;b&gt;1 == 2&lt;/b&gt;" in page  # messages are escaped
    assert (tmp_path / "latest").resolve() == run.resolve()


def test_latest_moves_to_the_newest_run(tmp_path):
    for name in ("a", "b"):
        write_report(tmp_path / name, name, [CaseResult("c", "passed", 0.1)])
    assert (tmp_path / "latest").resolve().name == "b"
    assert summarize([])["total"] == 0
