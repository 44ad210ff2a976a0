"""The plugin's verdicts end to end, through a pytest-xdist worker: a downgraded check is WARNED (the
warning crosses from the worker), a third party's known finding is EXPECTED-NONCONFORMANCE and
FAILs once it conforms (strict), not_applicable is NOT-APPLICABLE, a plain skip SKIPPED with its
reason; the requirement ids reach results.json."""
import json
import subprocess
import sys

CASES = '''
import warnings
import pytest
from testbed.report.verdicts import downgraded, expect_nonconformance, not_applicable

@pytest.mark.req("gupta-3-tunnel-mode")
def test_pass():
    pass

@pytest.mark.req("rfc1122-1.2.2-robustness")
def test_downgraded():
    downgraded("the role reports no drop counters")

def test_bare_warning_in_a_case():
    warnings.warn("a check not made")

@pytest.mark.req("gupta-4b-no-unsolicited")
def test_known_finding(request):
    expect_nonconformance(request, "strongswan", "answers SYNs", source="draft-gupta 4 (b)")
    assert False, "R answered"

def test_finding_gone(request):
    expect_nonconformance(request, "strongswan", "answers SYNs", source="draft-gupta 4 (b)")

def test_not_applicable():
    not_applicable("no such feature in this profile")

def test_skipped():
    pytest.skip("needs a VM with XFRM")

def test_fail():
    assert 1 == 2
'''


def test_verdicts_through_xdist(tmp_path):
    (tmp_path / "cases" / "world").mkdir(parents=True)
    (tmp_path / "cases" / "world" / "test_v.py").write_text(CASES)
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "1", "-p", "no:cacheprovider", "--run-id", "r1",
                          "--report-dir", str(tmp_path / "reports"), "cases"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    doc = json.loads((tmp_path / "reports" / "r1" / "results.json").read_text())
    got = {c["nodeid"].split("::")[1]: c for c in doc["cases"]}
    verdicts = {k: c["verdict"] for k, c in got.items()}
    assert verdicts == {"test_pass": "PASS", "test_downgraded": "WARNED", "test_bare_warning_in_a_case": "WARNED",
                        "test_known_finding": "EXPECTED-NONCONFORMANCE", "test_finding_gone": "FAIL",
                        "test_not_applicable": "NOT-APPLICABLE", "test_skipped": "SKIPPED", "test_fail": "FAIL"}, res.stdout
    assert got["test_downgraded"]["warnings"] == ["the role reports no drop counters"]
    assert "R answered" in got["test_known_finding"]["message"]
    assert got["test_known_finding"]["nonconformance"]["implementation"] == "strongswan"
    assert "now conforms" in got["test_finding_gone"]["message"]
    assert got["test_skipped"]["message"] == "needs a VM with XFRM"
    assert got["test_pass"]["reqs"] == ["gupta-3-tunnel-mode"]
    page = (tmp_path / "reports" / "r1" / "index.html").read_text()
    assert "the role reports no drop counters" in page
