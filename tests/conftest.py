"""Fixtures shared by the unit tests."""
import pytest


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    """A small run's report (tests/test_report.py: small_run), drawn once per test process: the
    report tests read it, the browser test renders it."""
    from test_report import small_run

    return small_run(tmp_path_factory.mktemp("report"))
