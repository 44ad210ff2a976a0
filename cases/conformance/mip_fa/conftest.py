"""The foreign agent under test (scenario conformance-fa) and the tester around it: the mobile
nodes on the visited link fn1 (frames from r's interface) and the home agent beyond the core
(sockets in iha). See testbed/conformance/mip_fa_env.py."""
import pytest

from testbed.conformance.iut import iut_world, parametrize_iut


def pytest_generate_tests(metafunc):
    parametrize_iut(metafunc, "fa", "foreign-agent", "fa")


@pytest.fixture(scope="session")
def fa(request, testbed_run, pytestconfig):
    """A foreign agent under test on ar1 for fn1, no other role (scenario conformance-fa)."""
    with iut_world(testbed_run, pytestconfig, "conformance-fa", "fa", request.param, "FA") as iut:
        yield iut


@pytest.fixture
def tester(fa, request, case_dir):
    """The tester around the FA, after the FA's reset; the FA's link-layer address and last
    advertisement are remembered for the module (learnt once from an advertisement). Its transcript
    (ladder, link pcap) lands in the part's directory."""
    from testbed.conformance.mip_fa_env import FaTester

    fa.before_part(request)
    tester = FaTester.open(fa)
    known = getattr(fa, "fa_agent", None)
    if known is not None:
        tester.fa_mac, tester.advertisement = known
    tester.iut = fa
    yield tester
    if tester.fa_mac is not None:
        fa.fa_agent = (tester.fa_mac, tester.advertisement)
    tester.close()
    tester.write_transcript(case_dir / "captures")
