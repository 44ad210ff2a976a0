"""Reports: reports/<run-id>/ with junit.xml (pytest writes it), results.json and index.html.

results.json is for machines (CI, later comparisons); index.html is for a person: a summary,
then each case with its verdict, duration, the reason when it did not pass, and links to its
captures, logs and timeline. reports/latest points to the newest run.
"""
from __future__ import annotations

import html
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

OUTCOMES = ("passed", "failed", "error", "skipped")


@dataclass
class CaseResult:
    nodeid: str
    outcome: str
    duration: float
    markers: list[str] = field(default_factory=list)
    message: str = ""
    artifacts: list[str] = field(default_factory=list)  # paths relative to the report directory


def summarize(results: list[CaseResult]) -> dict[str, int]:
    counts = {o: 0 for o in OUTCOMES}
    for r in results:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    counts["total"] = len(results)
    return counts


def collect_artifacts(report_dir: Path, case_dir: Path) -> list[str]:
    if not case_dir.is_dir():
        return []
    return sorted(str(p.relative_to(report_dir)) for p in case_dir.rglob("*") if p.is_file())


def write_report(report_dir: Path, run_id: str, results: list[CaseResult], meta: dict | None = None) -> Path:
    """Write results.json and index.html, point reports/latest here; returns index.html's path."""
    report_dir.mkdir(parents=True, exist_ok=True)
    doc = {"run_id": run_id, "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "summary": summarize(results), "meta": meta or {}, "cases": [asdict(r) for r in results]}
    (report_dir / "results.json").write_text(json.dumps(doc, indent=2))
    index = report_dir / "index.html"
    index.write_text(render_html(doc))
    _point_latest(report_dir)
    return index


def _point_latest(report_dir: Path) -> None:
    latest = report_dir.parent / "latest"
    tmp = report_dir.parent / f".latest-{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(report_dir.name)
        tmp.replace(latest)  # atomic, so parallel runs never see a missing link
    except OSError:
        pass


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.35em .6em;text-align:left;vertical-align:top}
.passed{color:#176f2c}.failed,.error{color:#b00020;font-weight:bold}.skipped{color:#8a6d00}
pre{white-space:pre-wrap;margin:.3em 0;font-size:.85em;background:#f6f6f6;padding:.4em}
.sum span{margin-right:1.5em;font-size:1.1em}
"""


def render_html(doc: dict) -> str:
    s = doc["summary"]
    esc = html.escape
    rows = []
    for c in doc["cases"]:
        # shown relative to the case's directory (cases/<case>/...): logs/g.gw.strongswan/swanctl.conf
        links = " ".join(f'<a href="{esc(a)}">{esc("/".join(Path(a).parts[2:]) or a)}</a>' for a in c["artifacts"])
        msg = f"<pre>{esc(c['message'])}</pre>" if c["message"] else ""
        rows.append(
            f'<tr><td>{esc(c["nodeid"])}{msg}</td><td class="{esc(c["outcome"])}">{esc(c["outcome"])}</td>'
            f'<td>{c["duration"]:.2f} s</td><td>{esc(", ".join(c["markers"]))}</td><td>{links}</td></tr>')
    meta = "".join(f"<li>{esc(str(k))}: {esc(str(v))}</li>" for k, v in doc["meta"].items())
    verdict = "PASS" if s.get("failed", 0) + s.get("error", 0) == 0 else "FAIL"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>testbed run {esc(doc['run_id'])}</title>
<style>{_STYLE}</style></head><body>
<h1>Conformance run {esc(doc['run_id'])}: {verdict}</h1>
<p class="sum"><span>{s['total']} cases</span><span class="passed">{s['passed']} passed</span>
<span class="failed">{s['failed']} failed</span><span class="error">{s['error']} errors</span>
<span class="skipped">{s['skipped']} skipped</span></p>
<ul>{meta}<li>written: {esc(doc['written'])}</li><li>machine-readable: <a href="results.json">results.json</a>,
<a href="junit.xml">junit.xml</a></li></ul>
<table><tr><th>case</th><th>verdict</th><th>duration</th><th>areas</th><th>captures, logs, timeline</th></tr>
{''.join(rows)}</table></body></html>
"""
