"""testbed/napt_matrix.py: the NAPT application matrix from cell records, junit.xml, results.json and
a run's report directory; mismatches counted; HTML and text renderings."""
import json

import pytest

from testbed.napt_matrix import (APPS, CELL_FILE, columns, build_matrix, cells_from_junit,
                                 cells_from_results, cells_from_run, html_table, main, text_table)
from testbed.naming import case_dirname

NODE = "cases/napt/test_matrix.py::test_cell[{}-{}]"


def cell(app, column, works, expected=None, capture=None):
    c = {"app": app, "column": column, "works": works, "how": f"{app} in {column}", "capture": capture}
    if expected is not None:
        c["expected"] = expected
    return c


def test_matrix_rows_columns_and_verdicts():
    m = build_matrix([cell("ftp-active-port", "napt-ours", False, expected=False),
                      cell("ftp-active-port", "pool-ours", True, expected=True),
                      cell("traceroute", "napt-ours", True, expected=False)])
    assert [c["id"] for c in m["columns"]] == list(columns())
    assert [r["app"] for r in m["rows"]] == list(APPS)
    row = {r["app"]: r for r in m["rows"]}
    assert row["ftp-active-port"]["cells"]["napt-ours"]["verdict"] == "breaks"
    assert row["ftp-active-port"]["cells"]["pool-ours"]["verdict"] == "works"
    assert row["ftp-active-port"]["cells"]["snat-strongswan"] is None
    assert m["mismatches"] == 1 and row["traceroute"]["cells"]["napt-ours"]["mismatch"]


def test_unknown_app_is_an_error():
    with pytest.raises(ValueError, match="unknown apps/columns"):
        build_matrix([cell("gopher", "napt-ours", True)])


def test_from_junit_with_properties_files_and_skips(tmp_path):
    (tmp_path / "cases" / case_dirname(NODE.format("pool-ours", "tftp-read"))).mkdir(parents=True)
    (tmp_path / "cases" / case_dirname(NODE.format("pool-ours", "tftp-read")) / CELL_FILE).write_text(
        json.dumps(cell("tftp-read", "pool-ours", True, True)))
    prop = str(cell("irc-dcc", "napt-ours", False, False))  # junit (legacy) writes str(dict)
    (tmp_path / "junit.xml").write_text(f"""<?xml version="1.0"?><testsuites><testsuite>
<testcase classname="cases.napt.test_matrix" name="test_cell[napt-ours-irc-dcc]"><properties>
<property name="napt_cell" value="{prop.replace('"', '&quot;')}"/></properties></testcase>
<testcase classname="cases.napt.test_matrix" name="test_cell[pool-ours-tftp-read]"/>
<testcase classname="cases.napt.test_matrix" name="test_cell[napt-ours-alg-ftp-active-port]">
<skipped message="the role could not start"/></testcase>
<testcase classname="cases.napt.test_redirect" name="test_port_without_rule_reaches_nothing"/>
</testsuite></testsuites>""")
    cells = cells_from_junit(tmp_path / "junit.xml")
    assert {(c["app"], c["column"], c["works"]) for c in cells} == {
        ("irc-dcc", "napt-ours", False), ("tftp-read", "pool-ours", True), ("ftp-active-port", "napt-ours-alg", None)}
    row = {r["app"]: r for r in build_matrix(cells)["rows"]}
    assert row["ftp-active-port"]["cells"]["napt-ours-alg"]["verdict"] == "did not run"


def test_from_results_and_run_dir_and_cli(tmp_path, capsys):
    node = NODE.format("snat-strongswan-helpers", "ftp-active-eprt")
    d = tmp_path / "cases" / case_dirname(node)
    d.mkdir(parents=True)
    cap = d / "captures" / "h.pcap"
    (d / CELL_FILE).write_text(json.dumps(cell("ftp-active-eprt", "snat-strongswan-helpers", True, True, str(cap))))
    (tmp_path / "results.json").write_text(json.dumps({"cases": [
        {"nodeid": node, "outcome": "passed", "message": ""},
        {"nodeid": NODE.format("napt-ours", "traceroute"), "outcome": "error", "message": "world failed"}]}))
    cells = cells_from_results(tmp_path / "results.json")
    assert cells == cells_from_run(tmp_path)
    m = build_matrix(cells)
    html = html_table(m, tmp_path)
    assert f'href="cases/{case_dirname(node)}/captures/h.pcap"' in html and "did not run" in html
    assert "<table" in html and columns()["pool-ours"] in html
    assert text_table(m).splitlines()[1].startswith("ftp-active-eprt")
    assert main([str(tmp_path), "--html", str(tmp_path / "m.html"), "--json", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["mismatches"] == 0
    assert "traceroute" in capsys.readouterr().out


def test_cell_names_with_an_xdist_group_suffix():
    from testbed.napt_matrix import _cell_from_name
    assert _cell_from_name("cases/napt/test_matrix.py::test_cell[snat-strongswan-helpers-irc-dcc]@napt-x") == \
        {"column": "snat-strongswan-helpers", "app": "irc-dcc"}
    assert _cell_from_name("cases/napt/test_redirect.py::test_port_without_rule_reaches_nothing[remote-access-redirect]") is None
