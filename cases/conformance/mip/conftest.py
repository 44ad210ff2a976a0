"""Fixtures of the Mobile IPv4 conformance suites (cases/conformance/mip/): one section per role
under test. Each section makes its IUT the way cases/conformance/conftest.py makes `sgw`
(parametrize_iut + iut_world: one world per module and implementation, the IUT reset before each
part) and gives the parts a tester in the other parties' places (testbed/conformance/mip_env.py).
"""
from __future__ import annotations

import pytest

from testbed.conformance.iut import iut_world, parametrize_iut


def pytest_generate_tests(metafunc):
    parametrize_iut(metafunc, "ha", "home-agent", "ha")          # home agent under test


# ==== home agent under test (HA): scenario conformance-ha =========================================

@pytest.fixture(scope="session")
def ha(request, testbed_run, pytestconfig):
    """A home agent under test on the home subnet (iha, 10.1.1.2), no MN or FA role running."""
    with iut_world(testbed_run, pytestconfig, "conformance-ha", "ha", request.param, "HA") as iut:
        yield iut


@pytest.fixture
def ha_tester(ha, request, case_dir):
    """The tester as mobile node (r on fn1, nh behind the NAT), foreign agent (ar1, ar2),
    correspondent (h) and home-link listener (ir) against the home agent under test, after its
    reset; its ladders land in the part's directory."""
    from testbed.conformance.mip_env import HaTester

    ha.before_part(request)
    tester = HaTester(ha.world, ha.scenario, ha.role)
    yield tester
    tester.close()
    tester.write_transcript(case_dir / "captures")
