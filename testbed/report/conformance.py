"""The conformance suites' results: conformance.json (for CI and for comparing runs) and the report's
conformance pages (one per implementation, and a side-by-side page of the implementations).

conformance.json holds one record per test part and implementation

    {"id", "title", "role", "implementation", "requirements", "verdict", "seconds", "nodeid"}

and a coverage summary per RFC and implementation: of the RFC's testable MUST-level sentences
(fixtures/conformance, class wire) how many a part checked on that implementation (`covered`: a part
naming it ran, whatever its verdict, NOT-APPLICABLE and SKIPPED aside) and how many every such part
passed (`passed`), with the same per section for the pages; an RFC no part of the implementation's
roles names is left out for it.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from testbed.conformance.catalogue import rfc_catalogues
from testbed.report.verdicts import FAIL, NOT_APPLICABLE, NOT_RUN, PASS, SKIPPED, WARNED

RAN = lambda v: v not in (NOT_APPLICABLE, NOT_RUN, SKIPPED)  # noqa: E731
PASSED = (PASS, WARNED)


def part_records(cases: list[dict]) -> list[dict]:
    out = []
    for c in cases:
        p = c.get("part")
        if not p:
            continue
        out.append({"id": p["id"], "title": p.get("title", ""), "role": p["role"], "implementation": p["implementation"],
                    "requirements": list(c["reqs"]), "verdict": c["verdict"], "seconds": round(c["duration"], 3),
                    "nodeid": c["nodeid"], "message": c.get("short", "")})
    return sorted(out, key=lambda r: (r["implementation"], r["role"], r["id"]))


def coverage(records: list[dict]) -> dict:
    """{rfc: {implementation: {"testable", "covered", "passed", "sections": {sec: {...}}}}} over the
    RFCs some part names."""
    by_impl: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        for req in r["requirements"]:
            by_impl[r["implementation"]][req].append(r["verdict"])
    named = {req.split("-")[0] for r in records for req in r["requirements"]}
    out: dict = {}
    for rfc, cat in rfc_catalogues().items():
        if f"rfc{rfc}" not in named:
            continue
        testable = cat.testable_musts()
        per_impl = {}
        for impl, verdicts in sorted(by_impl.items()):
            if not any(req.startswith(f"rfc{rfc}-") for req in verdicts):
                continue  # no part of this implementation's roles judges this RFC
            sections: dict[str, dict] = {}
            for e in testable:
                s = sections.setdefault(e.section, {"testable": 0, "covered": 0, "passed": 0})
                s["testable"] += 1
                ran = [v for v in verdicts.get(e.id, []) if RAN(v)]
                if ran:
                    s["covered"] += 1
                    if all(v in PASSED for v in ran):
                        s["passed"] += 1
            per_impl[impl] = {k: sum(s[k] for s in sections.values()) for k in ("testable", "covered", "passed")}
            per_impl[impl]["sections"] = sections
        out[str(rfc)] = per_impl
    return out


def conformance_doc(run_id: str, cases: list[dict]) -> dict | None:
    records = part_records(cases)
    if not records:
        return None
    cov = coverage(records)
    times = sorted(r["seconds"] for r in records)
    return {
        "run_id": run_id,
        "parts": [{k: r[k] for k in ("id", "title", "role", "implementation", "requirements", "verdict", "seconds")}
                  for r in records],
        "coverage": {rfc: {impl: {k: v for k, v in c.items() if k != "sections"} for impl, c in per.items()}
                     for rfc, per in cov.items()},
        "timing": {"parts": len(records), "median_s": times[len(times) // 2],
                   "slowest": [{"id": r["id"], "implementation": r["implementation"], "seconds": r["seconds"]}
                               for r in sorted(records, key=lambda r: -r["seconds"])[:10]]},
        "_records": records, "_coverage": cov,
    }


def write_conformance(report_dir: Path, run_id: str, cases: list[dict], env) -> list[dict]:
    """conformance.json and the pages; returns the links for the index ([{"href", "label"}])."""
    doc = conformance_doc(run_id, cases)
    if doc is None:
        return []
    records, cov = doc.pop("_records"), doc.pop("_coverage")
    (report_dir / "conformance.json").write_text(json.dumps(doc, indent=1))
    impls = sorted({r["implementation"] for r in records}, key=lambda x: (x != "ours", x))
    titles = {rfc: cat.title for rfc, cat in rfc_catalogues().items()}
    links = []
    page = env.get_template("conformance.html")
    for impl in impls:
        mine = [r for r in records if r["implementation"] == impl]
        counts = defaultdict(int)
        for r in mine:
            counts[r["verdict"]] += 1
        rows = [{"rfc": rfc, "title": titles[int(rfc)], **per[impl],
                 "sections": sorted(per[impl]["sections"].items(), key=lambda kv: _section_key(kv[0]))}
                for rfc, per in cov.items() if impl in per]
        name = f"conformance-{impl}.html"
        (report_dir / name).write_text(page.render(run_id=run_id, impl=impl, parts=mine, counts=dict(counts),
                                                   coverage=rows, case_page=_case_page))
        links.append({"href": name, "label": f"{impl}: {len(mine)} test parts"})
    if len(impls) > 1:
        (report_dir / "conformance-compare.html").write_text(env.get_template("conformance_compare.html").render(
            run_id=run_id, impls=impls, rows=side_by_side(records, impls), case_page=_case_page))
        links.append({"href": "conformance-compare.html", "label": "the implementations side by side"})
    return links


def side_by_side(records: list[dict], impls: list[str]) -> list[dict]:
    """One row per (role, part id) that ran on several implementations with different verdicts."""
    table: dict[tuple[str, str], dict] = {}
    for r in records:
        row = table.setdefault((r["role"], r["id"]), {"role": r["role"], "id": r["id"], "title": r["title"], "cells": {}})
        row["cells"][r["implementation"]] = r
    rows = []
    for row in table.values():
        verdicts = {row["cells"][i]["verdict"] if i in row["cells"] else None for i in impls}
        if len(verdicts) > 1:
            rows.append(row)
    return sorted(rows, key=lambda r: (r["role"], r["id"]))


def _section_key(section: str) -> tuple:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in section.split("."))


def _case_page(nodeid: str) -> str:
    from testbed.report.pages import case_page
    return case_page(nodeid)


def failing(records: list[dict]) -> list[dict]:
    return [r for r in records if r["verdict"] == FAIL]
