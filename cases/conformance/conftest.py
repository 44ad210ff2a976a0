"""Fixtures of the conformance suites (cases/conformance/): the implementation under test in its
role, one world per implementation and worker (testbed/conformance/iut.py), reset before each test
part; the tester in the peer's place; each part's steps and transcript in its case directory.

Every installed profile that fills the role under test runs every part (`--impl ROLE=PROFILE`
narrows it: by the role's name in the scenario, its kind, or *). A suite's own conftest adds its
environment the same way `sgw` is made here (parametrize_iut + iut_world).
"""
from __future__ import annotations

import pytest

from testbed.conformance.iut import iut_world, parametrize_iut
from testbed.conformance.parts import STEPS_PROPERTY, Steps


def pytest_generate_tests(metafunc):
    parametrize_iut(metafunc, "sgw", "vpn-gateway", "gw")
    parametrize_iut(metafunc, "sgw_timers", "vpn-gateway", "gw")


@pytest.fixture(scope="session")
def sgw(request, testbed_run, pytestconfig):
    """A security gateway under test in its remote-access configuration (scenario conformance-sgw)."""
    with iut_world(testbed_run, pytestconfig, "conformance-sgw", "gw", request.param, "SGW-R") as iut:
        yield iut


@pytest.fixture(scope="session")
def sgw_timers(request, testbed_run, pytestconfig):
    """A security gateway under test with short DPD and rekey timers, as the initiator of exchanges
    on the client's IKE SA (scenario conformance-sgw-timers)."""
    with iut_world(testbed_run, pytestconfig, "conformance-sgw-timers", "gw", request.param, "SGW-I") as iut:
        yield iut


@pytest.fixture
def steps(request, case_dir):
    """The part's steps (testbed.conformance.parts.Steps), written next to it and into the report."""
    s = Steps()
    yield s
    s.write(case_dir / "steps.json")
    request.node.user_properties.append((STEPS_PROPERTY, s.as_json()))


def _client_place_tester(iut, request, case_dir):
    """The IKEv2 tester in the client's place (r on fn1) against the gateway under test, after the
    gateway's reset; its transcript (pcap, ladder) lands in the part's directory."""
    from testbed.conformance.ike_env import IkeTester, Peer

    iut.before_part(request)
    plan, gw = iut.world.plan, iut.scenario.roles["gw"]
    user, cfg = next(iter(gw.config["users"].items()))
    peer = Peer(node_pid=iut.world.pid("r"), local=str(plan.attachments["fn1"].address),
                gateway=str(plan.address("g", "dmz")), identity=user, psk=cfg["psk"].encode(),
                inside_host=str(plan.address("h")))
    tester = IkeTester.open(peer)
    yield tester
    tester.close()
    tester.write_transcript(case_dir / "captures")


@pytest.fixture
def ike(sgw, request, case_dir):
    """The tester against the gateway as responder (sgw)."""
    yield from _client_place_tester(sgw, request, case_dir)


@pytest.fixture
def ike_timers(sgw_timers, request, case_dir):
    """The tester against the gateway with short timers (sgw_timers), which starts exchanges itself."""
    yield from _client_place_tester(sgw_timers, request, case_dir)
