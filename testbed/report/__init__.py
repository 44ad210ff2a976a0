"""Reports: reports/<run-id>/ with junit.xml (pytest writes it), results.json, index.html (the
conformance statement: what was tested, against what, how it went, then the implementation x
requirement matrix), a page per case (cases/<case>/case.html: verdict, requirements, failure,
ladder diagram from its captures, probe-stream plot, grouped artifacts) and bench.html (from
reports/bench/*.json), and for the conformance suites conformance.json and their pages
(testbed/report/conformance.py). Every page is self-contained: it opens from the file system, with no
network and no JavaScript. reports/latest points to the newest run.
"""
from __future__ import annotations

import html
import json
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from testbed.report.verdicts import ORDER, worst

EVIDENCE = ("ladder.svg", "probe.svg")  # drawn into the case directory, shown inline on its page


@dataclass
class CaseResult:
    nodeid: str
    outcome: str  # pytest's: passed, failed, error, skipped, xfailed
    duration: float
    markers: list[str] = field(default_factory=list)  # areas
    message: str = ""
    artifacts: list[str] = field(default_factory=list)  # paths relative to the report directory
    verdict: str = ""
    reqs: list[str] = field(default_factory=list)
    scenario: str = ""
    roles: dict = field(default_factory=dict)  # role name -> {kind, impl}
    warnings: list[str] = field(default_factory=list)  # checks downgraded to warnings
    nonconformance: dict | None = None
    part: dict | None = None  # a conformance test part: id, title, role, implementation, needs
    steps: list[dict] = field(default_factory=list)  # its steps (action, expect, observed, ok)

    @property
    def implementation(self) -> str:
        return implementation_label(self.roles)


def implementation_label(roles: dict) -> str:
    """The matrix column of a case run: "ours", or the third-party implementations and their roles."""
    third = {}
    for r in roles.values():
        if r.get("impl", "ours") != "ours":
            third.setdefault(r["impl"], []).append(r["kind"])
    if not third:
        return "ours"
    return "; ".join(f"{impl} as {', '.join(sorted(set(kinds)))}" for impl, kinds in sorted(third.items()))


def summarize(results: list[CaseResult]) -> dict[str, int]:
    counts = {v: 0 for v in ORDER}
    for r in results:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    counts["total"] = len(results)
    return counts


def collect_artifacts(report_dir: Path, case_dir: Path) -> list[str]:
    if not case_dir.is_dir():
        return []
    return sorted(str(p.relative_to(report_dir)) for p in case_dir.rglob("*") if p.is_file()
                  and p.name not in EVIDENCE and p.name != "case.html")


def render_evidence(case_dir: Path, timeline: list[dict] | None = None) -> list[str]:
    """Draw the ladder (from captures/*.pcap) and the probe plot (from the probe's logs) into the
    case directory; returns the files written. Called where the case ran (an xdist worker), for
    cases that keep captures or ran a probe stream, so the report itself stays quick to write."""
    from testbed.report.ladder import ladder
    from testbed.report.probe_plot import probe_plot

    if timeline is None:
        tl = case_dir / "timeline.json"
        timeline = json.loads(tl.read_text()) if tl.is_file() else []
    written = []
    for name, draw in (("ladder.svg", ladder), ("probe.svg", probe_plot)):
        try:
            svg = draw(case_dir, timeline)
        except (OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
            # a diagram that cannot be drawn must not change the case's verdict; its page says why
            svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="900" height="30"><text x="4" y="18" fill="#b00020">'
                   f'{html.escape(name)} could not be drawn: {html.escape(type(exc).__name__)}: {html.escape(str(exc)[:200])}'
                   f'</text></svg>')
        if svg:
            (case_dir / name).write_text(svg)
            written.append(name)
    return written


def machine() -> str:
    return f"{platform.node()}, {os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()}"


def write_report(report_dir: Path, run_id: str, results: list[CaseResult], meta: dict | None = None,
                 bench_dir: Path | None = None) -> Path:
    """Write results.json, index.html, the case pages and bench.html; point reports/latest here.
    Returns index.html's path."""
    from testbed.report.pages import write_pages

    report_dir.mkdir(parents=True, exist_ok=True)
    meta = {"machine": machine(), **(meta or {})}
    doc = {"run_id": run_id, "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "summary": summarize(results), "meta": meta, "cases": [asdict(r) for r in results]}
    (report_dir / "results.json").write_text(json.dumps(doc, indent=2))
    index = write_pages(report_dir, doc, bench_dir if bench_dir is not None else report_dir.parent / "bench")
    _point_latest(report_dir)
    return index


def load_results(report_dir: Path) -> tuple[dict, list[CaseResult]]:
    """A written run's results.json back as CaseResults (to render the pages again)."""
    doc = json.loads((report_dir / "results.json").read_text())
    return doc, [CaseResult(**c) for c in doc["cases"]]


def _point_latest(report_dir: Path) -> None:
    latest = report_dir.parent / "latest"
    tmp = report_dir.parent / f".latest-{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(report_dir.name)
        tmp.replace(latest)  # atomic, so parallel runs never see a missing link
    except OSError:
        pass


__all__ = ["CaseResult", "collect_artifacts", "implementation_label", "load_results", "render_evidence",
           "summarize", "worst", "write_report"]
