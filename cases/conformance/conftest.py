"""Fixtures of the conformance suites (cases/conformance/): the implementation under test in its
role, one world per module and implementation, reset before each test part; the tester in the peer's
place; each part's steps and transcript in its case directory.

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


@pytest.fixture(scope="module")
def sgw(request, testbed_run, pytestconfig):
    """A security gateway under test in its remote-access configuration (scenario conformance-sgw)."""
    with iut_world(testbed_run, pytestconfig, "conformance-sgw", "gw", request.param, "SGW-R") as iut:
        yield iut


@pytest.fixture
def steps(request, case_dir):
    """The part's steps (testbed.conformance.parts.Steps), written next to it and into the report."""
    s = Steps()
    yield s
    s.write(case_dir / "steps.json")
    request.node.user_properties.append((STEPS_PROPERTY, s.as_json()))


@pytest.fixture
def ike(sgw, request, case_dir):
    """The IKEv2 tester in the client's place (r on fn1) against the gateway under test, after the
    gateway's reset; its transcript (pcap, ladder) lands in the part's directory."""
    from testbed.conformance.ike_env import IkeTester, Peer

    sgw.before_part(request)
    plan, gw = sgw.world.plan, sgw.scenario.roles["gw"]
    user, cfg = next(iter(gw.config["users"].items()))
    peer = Peer(node_pid=sgw.world.pid("r"), local=str(plan.attachments["fn1"].address),
                gateway=str(plan.address("g", "dmz")), identity=user, psk=cfg["psk"].encode(),
                inside_host=str(plan.address("h")))
    tester = IkeTester.open(peer)
    yield tester
    tester.close()
    tester.write_transcript(case_dir / "captures")
