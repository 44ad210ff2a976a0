"""The NAPT application matrix (draft-gupta Appendix C): applications x ways of giving R an
internal presence x gateway implementations, one cell per case of cases/napt/test_matrix.py.

Each cell case records `record_property("napt_cell", {...})` with app, column, works (bool),
how (what was seen), capture (pcap path) and expected (bool), and writes the same dict to
`napt_cell.json` in its case directory (pytest's default junit family, xunit2, drops properties).
`build_matrix` turns those (from a run's report directory, its results.json or junit.xml, or
from cell dicts directly) into a JSON-able matrix, and `html_table` into an HTML table fragment for the report
(each cell links its capture). A cell that did not run says so ("did not run"; its case names why).

    python -m testbed.napt_matrix reports/<run>[/results.json|/junit.xml] [--html out.html] [--json out.json]
"""
from __future__ import annotations

import argparse
import ast
import html
import json
import re
import functools
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from testbed.naming import case_dirname

# our gateway's columns: id -> heading (the order of the table)
OUR_COLUMNS: dict[str, str] = {
    "pool-ours": "pool (Appendix B), our gateway",
    "napt-ours": "NAPT (Appendix A), our gateway",
    "napt-ours-alg": "NAPT, our gateway with its ALGs",
}


def profile_columns() -> dict[str, dict]:
    """The columns every installed gateway profile other than ours adds, as its case data
    napt-matrix.yaml declares them (testbed/profile_api.py case_data): id -> heading, scenario,
    breaks, payload_address, ..."""
    from testbed.profile_api import case_data
    from testbed.profiles import able, get

    out: dict[str, dict] = {}
    for name in able("vpn-gateway"):
        data = case_data(get(name), "napt-matrix") if name != "ours" else None
        for col, spec in ((data or {}).get("columns") or {}).items():
            out[col] = {"profile": name, "heading": col, **spec}
    return out


@functools.lru_cache(maxsize=None)
def columns() -> dict[str, str]:
    """Column id -> heading: ours, then the installed profiles' (the order of the table)."""
    return {**OUR_COLUMNS, **{col: spec["heading"] for col, spec in profile_columns().items()}}

# app id -> row heading (the order of the table)
APPS: dict[str, str] = {
    "ftp-active-eprt": "FTP active, EPRT (vsftpd / tnftp)",
    "ftp-active-port": "FTP active, PORT",
    "ftp-passive-epsv": "FTP passive, EPSV",
    "ftp-passive-pasv": "FTP passive, PASV",
    "tftp-read": "TFTP read (tftpd-hpa / tftp-hpa)",
    "tftp-write": "TFTP write",
    "sip-rtp": "SIP call, RTP both ways (sipp UAC on R, UAS on H)",
    "irc-dcc": "IRC DCC SEND (ngircd, scripted pair)",
    "addr-in-payload": "scripted protocol carrying its own address",
    "multihomed-udp": "multi-homed UDP server answering from H'",
    "x11-no-rule": "intranet -> R (X11-style), no redirection rule",
    "x11-redirect": "intranet -> R (X11-style), with a redirection rule",
    "access-control": "address-based access control on H",
    "traceroute": "ICMP errors: traceroute R -> H",
}

CELL_FILE = "napt_cell.json"  # in each cell case's directory, reports/<run>/cases/<case>/


def cells_from_junit(path: Path) -> list[dict]:
    """The cells of a run from its junit.xml: a case's napt_cell property (legacy/xunit1 junit) or
    its cell file next to the report, else, for a matrix case that did not record one (skipped, or
    an error before it ran), a cell with works=None and the reason."""
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        nodeid = case.get("classname", "").replace(".", "/") + ".py::" + case.get("name", "")
        why = next((e.get("message", "") or (e.text or "") for e in case if e.tag in ("skipped", "error", "failure")), "")
        out += _cell(nodeid, props.get("napt_cell"), Path(path).parent, why)
    return out


def cells_from_results(path: Path) -> list[dict]:
    """The cells of a run from the report's results.json ({"cases": [...]} or a list of case results)."""
    data = json.loads(Path(path).read_text())
    results = data.get("cases", []) if isinstance(data, dict) else data
    out = []
    for r in results:
        props = dict(r.get("properties") or [])
        why = r.get("message", "") if r.get("outcome") != "passed" else ""
        out += _cell(r.get("nodeid", ""), props.get("napt_cell"), Path(path).parent, why)
    return out


def cells_from_run(report_dir: Path) -> list[dict]:
    """The cells of a run from its report directory (results.json, else junit.xml)."""
    report_dir = Path(report_dir)
    if (report_dir / "results.json").exists():
        return cells_from_results(report_dir / "results.json")
    return cells_from_junit(report_dir / "junit.xml")


def _cell(nodeid: str, prop, report_dir: Path, why: str) -> list[dict]:
    where = _cell_from_name(nodeid)
    if where is None:
        return []
    if prop is not None:
        return [_parse(prop)]
    f = report_dir / "cases" / case_dirname(nodeid) / CELL_FILE
    if f.exists():
        return [json.loads(f.read_text())]
    return [{**where, "works": None, "how": why or "no result recorded"}]


def _parse(value) -> dict:
    if isinstance(value, dict):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return ast.literal_eval(value)  # junit writes str(dict)


def _cell_from_name(name: str) -> dict | None:
    """`...::test_cell[<column>-<app>]` -> {"column", "app"}, else None."""
    found = re.search(r"test_cell\[([^\]]+)\]", name)  # xdist's loadgroup may add "@group" after it
    if found is None:
        return None
    param = found.group(1)
    for column in sorted(columns(), key=len, reverse=True):
        if param.startswith(column + "-") and param[len(column) + 1:] in APPS:
            return {"column": column, "app": param[len(column) + 1:]}
    return None


def build_matrix(cells: list[dict]) -> dict:
    """{"columns": [...], "rows": [{"app", "label", "cells": {column: cell or None}}], "mismatches": n}.
    A cell: works (True/False/None = did not run), how, capture, expected, verdict (works, breaks,
    or the reason it did not run)."""
    table = {(c["app"], c["column"]): c for c in cells}
    unknown = sorted({c["app"] for c in cells} - set(APPS)) + sorted({c["column"] for c in cells} - set(columns()))
    if unknown:
        raise ValueError(f"napt cells name unknown apps/columns {unknown}: add them to testbed/napt_matrix.py")
    rows, mismatches = [], 0
    for app, label in APPS.items():
        row = {}
        for column in columns():
            c = table.get((app, column))
            if c is not None:
                c = dict(c)
                works = c.get("works")
                c["verdict"] = "works" if works else "breaks" if works is False else "did not run"
                if works is not None and "expected" in c and c["expected"] != works:
                    c["mismatch"] = True
                    mismatches += 1
            row[column] = c
        rows.append({"app": app, "label": label, "cells": row})
    return {"columns": [{"id": k, "label": v} for k, v in columns().items()], "rows": rows, "mismatches": mismatches}



def html_table(matrix: dict, link_base: Path | None = None) -> str:
    """An HTML <table> fragment: one row per application, one column per way/implementation; each
    cell says works/breaks with the observation as its title and links its capture."""
    head = "".join(f"<th>{html.escape(c['label'])}</th>" for c in matrix["columns"])
    lines = ['<table class="napt-matrix">', f"<tr><th>application</th>{head}</tr>"]
    for row in matrix["rows"]:
        tds = []
        for col in matrix["columns"]:
            c = row["cells"][col["id"]]
            if c is None:
                tds.append('<td class="missing">-</td>')
                continue
            text = html.escape(c["verdict"] + (" (unexpected)" if c.get("mismatch") else ""))
            cap = c.get("capture")
            if cap:
                href = Path(cap)
                if link_base is not None:
                    try:
                        href = href.resolve().relative_to(Path(link_base).resolve())
                    except ValueError:
                        pass
                text = f'<a href="{html.escape(str(href))}">{text}</a>'
            cls = c["verdict"].replace(" ", "-") + (" mismatch" if c.get("mismatch") else "")
            tds.append(f'<td class="{cls}" title="{html.escape(str(c.get("how", "")))}">{text}</td>')
        lines.append(f"<tr><th>{html.escape(row['label'])}</th>{''.join(tds)}</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def text_table(matrix: dict) -> str:
    """The matrix as plain text (for a terminal or a report): + works, - breaks, ? did not run."""
    cols = [c["id"] for c in matrix["columns"]]
    width = max(len(a) for a in APPS)
    out = [" " * width + "  " + "  ".join(cols)]
    for row in matrix["rows"]:
        marks = []
        for col in cols:
            c = row["cells"][col]
            m = "." if c is None else {"works": "+", "breaks": "-"}.get(c["verdict"], "?")
            marks.append((m + ("!" if c and c.get("mismatch") else "")).center(len(col)))
        out.append(row["app"].ljust(width) + "  " + "  ".join(marks))
    out.append("+ works, - breaks, ? did not run (see the cell), . no case, ! not the expected verdict")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m testbed.napt_matrix", description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path, help="a run's report directory, or its results.json or junit.xml")
    p.add_argument("--html", type=Path, help="write the HTML table fragment here")
    p.add_argument("--json", type=Path, help="write the matrix as JSON here")
    a = p.parse_args(argv)
    if a.source.is_dir():
        cells = cells_from_run(a.source)
    else:
        cells = cells_from_junit(a.source) if a.source.suffix == ".xml" else cells_from_results(a.source)
    matrix = build_matrix(cells)
    if a.html:
        a.html.write_text(html_table(matrix, a.source if a.source.is_dir() else a.source.parent))
    if a.json:
        a.json.write_text(json.dumps(matrix, indent=1))
    print(text_table(matrix))
    return 1 if matrix["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
