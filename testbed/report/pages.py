"""The report's HTML pages, rendered with Jinja2 from results.json's content (templates/)."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from testbed.naming import case_dirname
from testbed.report import implementation_label
from testbed.report.requirements import catalogue
from testbed.report.verdicts import FAIL, NONCONFORMANCE, ORDER, PASS, WARNED, worst

TEMPLATES = Path(__file__).parent / "templates"
ABOUT = {"ours": "this project's daemons", "strongswan": "charon with kernel-libipsec",
         "strongswan-kernel": "charon with the kernel's XFRM (kernel-netlink)", "libreswan": "pluto with the kernel's XFRM"}


def _env() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                       trim_blocks=True, lstrip_blocks=True)


def case_page(nodeid: str) -> str:
    return f"cases/{case_dirname(nodeid)}/case.html"


def title_of(nodeid: str) -> str:
    path, _, name = nodeid.partition("::")
    area = Path(path).parent.name
    return f"{area}/{Path(path).stem.removeprefix('test_')}: {name.removeprefix('test_')}"


def short_message(c: dict) -> str:
    text = c["message"].strip()
    if c["verdict"] == WARNED and c["warnings"]:
        text = c["warnings"][0]
    if c["verdict"] == NONCONFORMANCE and c.get("nonconformance"):
        nc = c["nonconformance"]
        text = f"{nc['implementation']} ({nc['source']}): {nc['finding']}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # pytest's "E   AssertionError: ..." line says it best
    e_lines = [ln[1:].strip() for ln in lines if ln.startswith("E ")]
    first = e_lines[0] if e_lines else (lines[-1] if lines else "")
    return first if len(first) <= 220 else first[:217] + "..."


def _size(path: Path) -> str:
    try:
        n = path.stat().st_size
    except OSError:
        return ""
    return f"{n} B" if n < 1024 else f"{n / 1024:.0f} kB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MB"


def group_artifacts(report_dir: Path, artifacts: list[str]) -> list[dict]:
    """Captures; logs by node and role (g.gw.log, g.gw.events.jsonl, g.gw.config.json together);
    timeline and the case's own data."""
    groups: dict[str, list] = {}
    for a in artifacts:
        parts = Path(a).parts[2:]  # cases/<case>/...
        name = "/".join(parts)
        if parts and parts[0] == "captures":
            title = "Captures (pcap, open in Wireshark)"
        elif parts and parts[0] == "logs" and len(parts) > 2:  # a role's own directory (a third party's)
            m = re.match(r"^([a-z0-9]+\.[^.]+)", parts[1])
            title = f"Logs: {m.group(1) if m else parts[1]}"
            name = "/".join(parts[1:])
        elif parts and parts[0] == "logs" and len(parts) > 1:
            m = re.match(r"^([a-z0-9]+\.[^.]+)\.", parts[-1])
            title = f"Logs: {m.group(1)}" if m else "Logs"
            name = parts[-1]
        else:
            title = "Timeline and case data"
        groups.setdefault(title, []).append({"href": "/".join(parts),
                                             "name": name, "size": _size(report_dir / a)})
    order = lambda t: (0 if t.startswith("Captures") else 1 if t.startswith("Timeline") else 2, t)
    return [{"title": t, "files": groups[t]} for t in sorted(groups, key=order)]


def _text(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


def _timeline(case_dir: Path) -> list[dict]:
    path = case_dir / "timeline.json"
    if not path.is_file():
        return []
    try:
        events = json.loads(path.read_text())
    except ValueError:
        return []
    t0 = events[0]["t"] if events else 0
    return [{"rel": e["t"] - t0, "event": e.get("event", ""),
             "details": ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("t", "event"))[:300]} for e in events]


def write_pages(report_dir: Path, doc: dict, bench_dir: Path) -> Path:
    env = _env()
    cat = catalogue()
    cases = []
    for c in doc["cases"]:
        c = dict(c)
        c["page"] = case_page(c["nodeid"])
        c["title"] = title_of(c["nodeid"])
        c["implementation"] = _impl(c)
        c["short"] = short_message(c) if c["verdict"] != PASS else ""
        cases.append(c)
    order = {v: i for i, v in enumerate(ORDER)}
    cases.sort(key=lambda c: (order.get(c["verdict"], 9), c["nodeid"]))

    # the matrix: areas -> requirements -> implementation columns
    columns = sorted({c["implementation"] for c in cases}, key=lambda x: (x != "ours", x))
    matrix, checked = [], set()
    for area, reqs in cat.by_area().items():
        rows = []
        for req in reqs:
            runs = [c for c in cases if req.id in c["reqs"]]
            if not runs:
                continue
            checked.add(req.id)
            cells = []
            for col in columns:
                mine = [c for c in runs if c["implementation"] == col]
                cells.append({"verdict": worst(c["verdict"] for c in mine), "cases": mine})
            rows.append({"req": req, "cells": cells})
        if rows:
            matrix.append({"title": cat.areas[area], "rows": rows})
    # the RFC catalogues' sentences have their own coverage pages (conformance-*.html)
    unchecked = [r for r in cat.requirements.values() if r.id not in checked and not r.area.startswith("rfc")]
    from testbed.report.conformance import write_conformance
    conformance = write_conformance(report_dir, doc["run_id"], cases, env)
    counts = Counter(c["verdict"] for c in cases)
    run = _run_summary(doc, cases, counts)
    area_titles = {**cat.areas, "interop": "Interoperability: third-party implementations in both roles"}
    areas_run = [{"title": area_titles.get(a, a), "cases": n} for a, n in
                 Counter(a for c in cases for a in c["markers"][:1] or ["other"]).most_common()]
    impls = Counter()
    for c in cases:
        for impl in {r.get("impl", "ours") for r in c["roles"].values()} or {"ours"}:
            impls[impl] += 1
    implementations = [{"label": k, "cases": n, "about": ABOUT.get(k, "")} for k, n in impls.most_common()]

    from testbed.napt_matrix import build_matrix, cells_from_run, html_table
    from testbed.report.bench import load_benches
    benches = load_benches(bench_dir)
    napt_cells = cells_from_run(report_dir)
    napt_matrix = html_table(build_matrix(napt_cells), link_base=report_dir) if napt_cells else None
    index = report_dir / "index.html"
    index.write_text(env.get_template("index.html").render(
        run=run, cases=cases, columns=columns, matrix=matrix, unchecked=unchecked, checked=checked,
        catalogue_size=len(cat.requirements), areas_run=areas_run, implementations=implementations,
        attention=[c for c in cases if c["verdict"] in (FAIL, NONCONFORMANCE, WARNED)],
        untraced=[c for c in cases if not c["reqs"]], bench=bool(benches), napt_matrix=napt_matrix,
        conformance=conformance))
    (report_dir / "bench.html").write_text(env.get_template("bench.html").render(run_id=doc["run_id"], benches=benches))

    case_tpl = env.get_template("case.html")
    for c in cases:
        case_dir = report_dir / Path(c["page"]).parent
        case_dir.mkdir(parents=True, exist_ok=True)
        ladder = case_dir / "ladder.svg"
        probe = case_dir / "probe.svg"
        (case_dir / "case.html").write_text(case_tpl.render(
            c=c, run_id=doc["run_id"], root="../../", reqs=[cat.requirements[i] for i in c["reqs"] if i in cat.requirements],
            ladder=ladder.read_text() if ladder.is_file() else None, probe=probe.read_text() if probe.is_file() else None,
            tester_ladder=_text(case_dir / "captures" / "tester-ladder.txt"),
            timeline=_timeline(case_dir), groups=group_artifacts(report_dir, c["artifacts"])))
    return index


def _impl(c: dict) -> str:
    return implementation_label(c["roles"])


def _run_summary(doc: dict, cases: list[dict], counts: Counter) -> dict:
    meta = doc["meta"]
    failed = counts.get(FAIL, 0)
    verdict = "FAIL" if failed else "PASS"
    parts = [f"{len(cases)} case runs", f"{counts.get(PASS, 0)} passed"]
    for v, word in ((FAIL, "failed"), (WARNED, "passed with a check downgraded"),
                    (NONCONFORMANCE, "known third-party nonconformance"), ("INCONCLUSIVE", "inconclusive"),
                    ("NOT-APPLICABLE", "not applicable"), ("NOT-RUN", "not run (an implementation cannot run here)"),
                    ("SKIPPED", "skipped")):
        if counts.get(v):
            parts.append(f"{counts[v]} {word}")
    scenarios = sorted({c["scenario"] for c in cases if c["scenario"]})
    return {"run_id": doc["run_id"], "verdict": verdict, "headline": ", ".join(parts), "counts": {v: counts.get(v, 0) for v in ORDER},
            "total": len(cases), "wall_s": meta.get("wall_s", sum(c["duration"] for c in cases)),
            "workers": meta.get("workers", 1), "written": doc["written"], "machine": meta.get("machine", ""),
            "scenarios": scenarios or ["none"], "junit": bool(meta.get("junit"))}
