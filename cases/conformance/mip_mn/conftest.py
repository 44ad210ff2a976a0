"""The mobile node under test (scenario conformance-mn: kind mobile-node on the station r) and the
mobile VPN node under test (scenario conformance-mn-rfc5265: kind mobile-vpn-node), with the tester
around them (testbed/conformance/mip_mn_env.py): the agents on the links, the home agent (the
internal one, i-HA, with RFC 5265) in iha."""
import pytest

from testbed.conformance.iut import iut_world, parametrize_iut


def pytest_generate_tests(metafunc):
    parametrize_iut(metafunc, "mn", "mobile-node", "mn")
    parametrize_iut(metafunc, "mvn", "mobile-vpn-node", "mn")


@pytest.fixture(scope="session")
def mn(request, testbed_run, pytestconfig):
    """A mobile node under test on r, no other role (scenario conformance-mn)."""
    with iut_world(testbed_run, pytestconfig, "conformance-mn", "mn", request.param, "MN", on_up=_warm_up) as iut:
        yield iut


@pytest.fixture(scope="session")
def mvn(request, testbed_run, pytestconfig):
    """A mobile VPN node under test on r (RFC 5265), with the VPN gateway and the external home agent
    as helper roles; the tester is the internal home agent (scenario conformance-mn-rfc5265)."""
    with iut_world(testbed_run, pytestconfig, "conformance-mn-rfc5265", "mn", request.param, "MVN",
                   on_up=_warm_up) as iut:
        yield iut


def _warm_up(iut) -> None:
    """The first attachment change after the world's start stalls the station's link for about a
    second (frames sent then are lost): take it once, before any part times anything."""
    import time
    from testbed import handoff
    handoff.move(iut.world, "r", iut.world.attached.get("r") or "fn2", configure=False)
    time.sleep(1.5)


def _tester(iut, request, mn_cfg: dict):
    from testbed.conformance.mip_mn_env import MnTester

    iut.before_part(request)
    tester = MnTester.open(iut, mn_cfg)
    return tester


@pytest.fixture
def tester(mn, request, case_dir):
    """The tester around the MN, after the MN's reset (its role restarted): taps on fn1, fn2, fn3,
    home and ivn, the home agent's sockets in iha. Its transcript (ladder, links pcap) lands in the
    part's directory."""
    t = _tester(mn, request, mn.scenario.roles[mn.role].config)
    yield t
    t.close()
    t.write_transcript(case_dir / "captures")


@pytest.fixture
def vtester(mvn, request, case_dir):
    """The tester around the mobile VPN node: the internal home agent (i-HA) in iha and the taps,
    after the node's reset. `vtester.inner` is the i-MIP layer's config, `vtester.outer` the x-MIP's."""
    cfg = mvn.scenario.roles[mvn.role].config
    inner = {**cfg["inner"]}
    t = _tester(mvn, request, inner)
    t.inner, t.outer = inner, cfg["mn"]
    yield t
    t.close()
    t.write_transcript(case_dir / "captures")
