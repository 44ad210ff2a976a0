"""Profiles as plugins: discovery through the entry point group `testbed.profiles`, the example
vendor package examples/socat_profile/ loaded through the same discovery, and the errors a user
meets.

The example is registered the way an installed package is seen: testbed.profiles.register_source
writes the .dist-info that `pip install` would write (METADATA and entry_points.txt taken from the
example's own pyproject.toml) into a temporary directory on sys.path, and importlib.metadata finds
it there like any installed distribution. A real `pip install` in a unit test would need a
package index for the build backend and would leave the package in the shared virtualenv after
the test; the .dist-info on a temporary sys.path entry exercises the same discovery and vanishes
with the test."""
import dataclasses
import re
import sys
import textwrap
from pathlib import Path

import pytest

from testbed import profiles
from testbed.profile_api import KINDS, Profile, RoleHandle
from testbed.scenario import SCENARIO_DIR, load_scenario
from testbed.schema import ConfigError
from testbed.status_schema import check_status

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "socat_profile"


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A fresh site directory; sys.path is restored after the test (so is discovery, keyed on it)
    and the profile modules the test imported are forgotten."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield tmp_path / "site"
    for name in set(sys.modules) - before:
        del sys.modules[name]


def vendor_project(tmp_path, name: str, entry_points: str, module: str) -> Path:
    """A profile project in a source tree: pyproject.toml and one flat module."""
    project = tmp_path / name
    project.mkdir()
    modname = name.replace("-", "_")
    (project / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [project]
        name = "{name}"
        version = "1.0"
        [project.entry-points."testbed.profiles"]
        """) + entry_points.replace("MODULE", modname))
    (project / f"{modname}.py").write_text(textwrap.dedent(module))
    return project


def test_ours_and_strongswan_are_installed_profiles():
    found = profiles.installed()
    assert {"ours", "strongswan", "strongswan-kernel", "libreswan"} <= set(found)
    assert found["ours"].kinds == frozenset(KINDS)
    assert found["strongswan"].kinds == {"vpn-gateway", "vpn-client"}
    assert all(isinstance(p, Profile) and p.name == name for name, p in found.items())


def test_an_unknown_profile_names_the_installed_ones():
    with pytest.raises(profiles.RoleUnavailable, match=r"no profile 'acme' is installed; installed profiles: (\S+, )*ours, "):
        profiles.get("acme")
    role = dataclasses.replace(load_scenario(SCENARIO_DIR / "bare-world.yaml").roles["echo"], impl="acme")
    with pytest.raises(profiles.RoleUnavailable, match=r"no installed profile 'acme' implements echo-sink \(installed "
                                                       r"profiles that do: ours"):
        profiles.start_role(world=None, role=role)


def test_the_example_profile_is_found_through_its_entry_point(site):
    assert "socat" not in profiles.installed()
    assert profiles.register_source(EXAMPLE, site) == ["socat"]
    socat = profiles.get("socat")
    assert socat.kinds == {"echo-sink"} and type(socat).__module__ == "testbed_socat_echo"
    assert profiles.able("echo-sink")[:2] == ["ours", "socat"]
    # a scenario and --impl choose it like any other profile
    bare = load_scenario(SCENARIO_DIR / "bare-world.yaml")
    assert bare.with_impls({"echo": "socat"}).roles["echo"].impl == "socat"
    assert bare.with_impls({"*": "socat"}).roles["echo"].impl == "socat"
    basic = load_scenario(SCENARIO_DIR / "remote-access-basic.yaml")
    with pytest.raises(ConfigError, match=r"--impl gw: expected a profile that implements vpn-gateway "
                                          r"\(libreswan, ours, strongswan, strongswan-kernel\), got 'socat'"):
        basic.with_impls({"gw": "socat"})


def test_the_example_profile_checks_its_config_in_the_scenario_files_style(site, tmp_path):
    profiles.register_source(EXAMPLE, site)
    path = tmp_path / "echo-socat.yaml"
    path.write_text(textwrap.dedent("""\
        name: echo-socat
        description: an echo service on H from socat
        roles:
          echo: {kind: echo-sink, node: h, impl: socat, config: {tcp: [7], udp: [70000]}}
        """))
    with pytest.raises(ConfigError) as err:
        load_scenario(path)
    assert str(err.value) == (f"{path}: roles.echo.config.udp: expected a list of port numbers 1..65535, "
                              "got [70000]")


class FakeProcess:
    def __init__(self, log_path: Path, text: str):
        self.log_path = log_path
        log_path.write_text(text)
        self.stopped = False

    def running(self):
        return not self.stopped

    def stop(self):
        self.stopped = True
        return 0


def test_the_example_profile_reads_arrivals_from_socats_log(site, tmp_path, monkeypatch):
    """start_role against a stand-in world that records what it would start (no root needed; the
    case cases/interop/test_example_profile.py runs it in a real world)."""
    profiles.register_source(EXAMPLE, site)
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    logs = {"tcp": "2026/11/29 08:07:16 socat[8815] N accepting connection from AF=2 10.1.2.10:49726 on AF=2 10.1.2.20:7\n",
            "udp": "2026/11/29 08:07:16 socat[8816] N receiving packet from AF=2 10.1.2.11:59159\n"}
    started = []

    class World:
        def start(self, node, name, argv, ready=None, env=None, timeout=10.0):
            started.append((node, name, argv, ready))
            return FakeProcess(tmp_path / f"{name}.log", logs[argv[3].split("4-")[0].lower()])

    role = dataclasses.replace(load_scenario(SCENARIO_DIR / "bare-world.yaml").roles["echo"], impl="socat")
    handle = profiles.get("socat").start_role(World(), role)
    assert isinstance(handle, RoleHandle)
    assert [(n, name, argv[3]) for n, name, argv, _ in started] == [
        ("h", "echo.socat-tcp-7", "TCP4-LISTEN:7,reuseaddr,fork"), ("h", "echo.socat-udp-7", "UDP4-RECVFROM:7,fork")]
    status = handle.status()
    check_status(status, "echo-sink")  # the example's status fits the schema every echo-sink answers
    assert status["implementation"] == "socat" and status["running"] is True
    assert status["received"] == [{"proto": "tcp", "port": 7, "peer": "10.1.2.10", "peer_port": 49726},
                                  {"proto": "udp", "port": 7, "peer": "10.1.2.11", "peer_port": 59159}]
    assert handle.stop() == [0, 0] and handle.status()["running"] is False


def test_a_broken_entry_point_is_reported_with_its_distribution(site, tmp_path):
    project = vendor_project(tmp_path, "acme-broken", 'acme = "MODULE:NO_SUCH_NAME"\n', "X = 1\n")
    profiles.register_source(project, site)
    with pytest.raises(profiles.ProfileError, match=r"the installed distribution acme-broken: .* acme = "
                                                    r"acme_broken:NO_SUCH_NAME: expected an object that loads "
                                                    r"\(the profile 'acme'\), got .AttributeError.*the profile does not load"):
        profiles.installed()


def profile_module(name: str, kinds: set[str]) -> str:
    """A module whose PROFILE is a profile called `name` that fills `kinds`."""
    return textwrap.dedent(f"""\
        class P:
            name = {name!r}
            kinds = frozenset({sorted(kinds)!r})
            def check_config(self, role, plan): pass
            def start_role(self, world, role): pass
        PROFILE = P()
        """)


@pytest.mark.parametrize("module, expected", [
    ("PROFILE = object()\n", "expected a profile: an object with name, kinds, check_config"),
    (profile_module("other", {"echo-sink"}),
     "expected a profile called 'acme', got 'other'; the entry point's name and the profile's name must be the same"),
    (profile_module("acme", {"router"}), "got ['router']; a profile fills only role kinds a scenario can have"),
    (profile_module("acme", {"echo-sink"}).replace("PROFILE = P()", "PROFILE = P"),
     "expected a profile object (PROFILE = P()), got 'the class P'"),
])
def test_an_entry_point_that_is_not_a_profile_is_refused(site, tmp_path, module, expected):
    profiles.register_source(vendor_project(tmp_path, "acme-odd", 'acme = "MODULE:PROFILE"\n', module), site)
    with pytest.raises(profiles.ProfileError, match=re.escape(expected)):
        profiles.installed()


def test_two_profiles_of_one_name_are_refused(site, tmp_path):
    profiles.register_source(EXAMPLE, site)
    project = vendor_project(tmp_path, "acme-socat", 'socat = "MODULE:PROFILE"\n', profile_module("socat", {"echo-sink"}))
    profiles.register_source(project, site)
    with pytest.raises(profiles.ProfileError, match="got \"'socat', also declared by .*two installed profiles are called the same"):
        profiles.installed()


def test_a_project_without_profiles_is_refused(site, tmp_path):
    project = tmp_path / "empty"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "empty"\nversion = "1"\n')
    with pytest.raises(profiles.ProfileError, match="pyproject.toml: .*expected at least one profile entry point"):
        profiles.register_source(project, site)
