"""The conformance suites' framework: conformance statements, the report's coverage, the
implementation matrix by role."""
import pytest

from testbed.conformance.ics import FEATURES, load_statement, statement_of
from testbed.profiles import get
from testbed.report.conformance import conformance_doc, side_by_side
from testbed.schema import ConfigError


def test_statements_of_the_installed_profiles_load_and_claim_only_known_features():
    for name in ("ours", "strongswan"):
        st = statement_of(get(name))
        assert st.implementation == name and set(st.features) <= set(FEATURES)
    assert statement_of(get("ours")).expected == {}
    assert "IKE.SGW-R.LEN.1" in statement_of(get("strongswan")).expected


def test_our_statement_may_not_hold_an_expected_nonconformance(tmp_path):
    bad = tmp_path / "ours.yaml"
    bad.write_text("implementation: ours\nfeatures: {ikev2.psk: true}\n"
                   "expected: {IKE.X.1: {finding: f, source: s}}\n")
    with pytest.raises(ConfigError, match="no expected nonconformance for our own"):
        load_statement(bad)
    bad.write_text("implementation: v\nfeatures: {ikev2.teleport: true}\n")
    with pytest.raises(ConfigError, match="features"):
        load_statement(bad)


def _case(part_id, impl, reqs, verdict, seconds=0.2):
    return {"nodeid": f"cases/conformance/ike/test_x.py::t[{impl}-{part_id}]", "reqs": reqs, "verdict": verdict,
            "duration": seconds, "part": {"id": part_id, "title": part_id, "role": "SGW-R", "implementation": impl}}


def test_coverage_counts_testable_musts_covered_and_passed_per_implementation():
    cases = [_case("A.1", "ours", ["rfc7296-2.5-h"], "PASS"), _case("A.1", "v", ["rfc7296-2.5-h"], "FAIL"),
             _case("A.2", "ours", ["rfc7296-2.5-b", "rfc7296-1.4-d"], "PASS"),
             _case("A.2", "v", ["rfc7296-2.5-b", "rfc7296-1.4-d"], "NOT-APPLICABLE"),
             {"nodeid": "cases/world/test_w.py::t", "reqs": ["rfc7296-2.5-h"], "verdict": "PASS", "duration": 1}]
    doc = conformance_doc("run", cases)
    assert [p["id"] for p in doc["parts"]] == ["A.1", "A.2", "A.1", "A.2"]  # cases without a part are not parts
    cov = doc["coverage"]["7296"]
    assert cov["ours"]["covered"] == 3 and cov["ours"]["passed"] == 3
    assert cov["v"]["covered"] == 1 and cov["v"]["passed"] == 0  # NOT-APPLICABLE covers nothing
    assert cov["ours"]["testable"] == cov["v"]["testable"] > 100
    assert [r["id"] for r in side_by_side(doc["_records"], ["ours", "v"])] == ["A.1", "A.2"]


def test_impl_matrix_by_role_means_every_other_installed_profile():
    from testbed.pytest_plugin import matrix_variants
    assert matrix_variants("remote-access-basic", ["gw", "client"]) == [
        "gw=libreswan", "gw=strongswan", "gw=strongswan-kernel", "client=libreswan", "client=strongswan", "client=strongswan-kernel"]
    assert matrix_variants("remote-access-basic", ["gw=ours"]) == ["gw=ours"]
    with pytest.raises(pytest.UsageError, match="has no role 'nat'"):
        matrix_variants("remote-access-basic", ["nat"])


def test_an_rfc_no_part_of_an_implementation_names_is_left_out_for_it():
    cases = [_case("A.1", "ours", ["rfc5944-3.8.2.1-a"], "PASS"), _case("B.1", "v", ["rfc7296-2.5-h"], "PASS")]
    cov = conformance_doc("run", cases)["coverage"]
    assert set(cov["5944"]) == {"ours"} and set(cov["7296"]) == {"v"}
