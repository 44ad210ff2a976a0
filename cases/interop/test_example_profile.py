"""The example vendor profile (examples/socat_profile/, README "Adding your implementation") fills
the echo-sink role in a real world. It is found through the entry point group `testbed.profiles`
as an installed package is (testbed.profiles.register_source writes the .dist-info pip would),
started by testbed.profiles.start_role like every profile, and checked black-box: TCP and UDP
echo from the intranet resolver come back, and its status names who came."""
import dataclasses
import shutil
import sys

import pytest

from testbed import REPO_ROOT, profiles
from testbed.plan import default_plan

pytestmark = pytest.mark.scenario("bare-world")

EXAMPLE = REPO_ROOT / "examples" / "socat_profile"
PLAN = default_plan()


@pytest.mark.req("testbed-vendor-profiles")
def test_the_example_profile_fills_the_echo_sink(world, scenario, tmp_path, monkeypatch):
    if shutil.which("socat") is None:
        pytest.skip("the example profile runs socat, which is not installed (Debian package socat; scripts/setup "
                    "installs it)")
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert profiles.register_source(EXAMPLE, tmp_path / "site") == ["socat"]
    echo = dataclasses.replace(scenario.roles["echo"], impl="socat")
    handle = profiles.start_role(world, echo)
    h, peer = PLAN.address("h"), str(PLAN.address("dns"))
    for proto in ("tcp", "udp"):
        res = world.reach("dns", proto, h, 7)
        assert res["result"] == "ok", f"{proto} echo on H:7 from the socat profile: {res}"
    status = handle.status()
    assert status["implementation"] == "socat" and status["running"], status
    assert {(e["proto"], e["port"], e["peer"]) for e in status["received"]} == {("tcp", 7, peer), ("udp", 7, peer)}, status
    handle.stop()
    assert world.reach("dns", "tcp", h, 7, timeout=0.5)["result"] != "ok", "socat still answers after stop()"
