"""The implementation under test (IUT) in its world, shared by the test parts of a suite.

A suite builds one world per implementation and worker (session scope; pytest runs the parts of one
implementation together), and each test part begins with `before_part`: the IUT goes back to a clean
state (the profile's `reset`, or a restart where the profile has none), the part's needs are checked
against the implementation's conformance statement (NOT-APPLICABLE when it does not claim them), and
its expected nonconformance, if the statement lists one, is applied.

One world at a time: the worlds of a worker share its network namespace and their interface names,
so building any world (another environment's, HA after SGW-R, strongSwan after ours, or a scenario
case's) first takes down the environment's (testbed.world.BEFORE_BUILD); a part of an environment
whose world was taken down brings it back.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testbed.conformance.ics import Statement, expect_per_statement, statement_of
from testbed.conformance.parts import PART_PROPERTY, part_of
from testbed.report.verdicts import not_applicable


_LIVE: list["Iut"] = []  # the environment whose world is up in this process (at most one)


def take_down_live() -> None:
    """Before any world is built here (World.build's BEFORE_BUILD): the live environment gives way;
    its next part brings it back."""
    for env in list(_LIVE):
        env.take_down()


def _register() -> None:
    from testbed.world import BEFORE_BUILD
    if take_down_live not in BEFORE_BUILD:
        BEFORE_BUILD.append(take_down_live)


_register()


@dataclass
class Iut:
    """One implementation in one role of a conformance world."""
    role_label: str          # the role under test as the suites name it: SGW-R, EN-I, HA, FA, MN, ...
    impl: str                # the profile's name
    world: object
    scenario: object
    roles: dict              # role name -> RoleHandle (the IUT's and any helpers)
    role: str                # the IUT's role name in the scenario
    statement: Statement
    log_dir: Path
    parts_run: int = 0
    restarts: int = 0
    notes: list[str] = field(default_factory=list)
    testbed_run: object = None
    start_roles: bool = True  # False: the suite starts the IUT itself, per part (a client)
    on_up: object = None      # called with the Iut each time its world has come up (a warm-up)

    # ---- its world: built, taken down, brought back ----------------------------------------
    def bring_up(self) -> None:
        """Build the world (any other world of this process gives way first: take_down_live) and
        start the roles."""
        from testbed.pytest_plugin import start_roles_or_skip
        from testbed.world import World

        self.world = World.for_scenario(self.testbed_run, self.log_dir, self.scenario)
        _LIVE.append(self)
        self.roles = {}
        if self.start_roles:
            self.roles = start_roles_or_skip(self.world, self.scenario)
        if self.on_up is not None:
            self.on_up(self)

    @property
    def alive(self) -> bool:
        return self in _LIVE

    def take_down(self) -> None:
        if self in _LIVE:
            _LIVE.remove(self)
        self.stop_roles()
        if self.world is not None:
            self.world.stop()

    def stop_roles(self) -> None:
        for r in reversed(list(self.roles.values())):
            r.stop()
        self.roles = {}

    @property
    def handle(self):
        return self.roles[self.role]

    def reset(self) -> None:
        """Back to a clean state: the profile's reset, or a restart of the role (also when the reset
        fails: the IUT may have died in the previous part, a finding that part reported)."""
        h = self.handle
        if h.reset is not None:
            try:
                h.reset()
                return
            except Exception as exc:  # noqa: BLE001 - a dead IUT's reset fails; the restart below tells
                self.notes.append(f"reset failed ({type(exc).__name__}: {exc}); restarted")
        from testbed.profiles import restart_role
        self.roles[self.role] = restart_role(self.world, self.scenario, self.roles, self.role)
        self.restarts += 1

    def before_part(self, request) -> dict:
        """Reset, then the conformance statement's word on this part (NOT-APPLICABLE, expected
        nonconformance); records the part's identity for the report. Returns the part's declaration."""
        info = part_of(request.node) or {}
        request.node.user_properties.append((PART_PROPERTY, {
            "id": info.get("id", request.node.name), "title": info.get("title", ""), "role": self.role_label,
            "implementation": self.impl, "needs": list(info.get("needs", ()))}))
        missing = [f for f in info.get("needs", ()) if not self.statement.claims(f)]
        if missing:
            not_applicable(f"the conformance statement of {self.impl} does not claim {', '.join(missing)}")
        if not self.alive:  # another environment's parts ran meanwhile and took the world down
            self.bring_up()
        elif self.parts_run:
            self.reset()
        self.parts_run += 1
        expect_per_statement(request, self.impl, info.get("id", ""))
        return info


def implementations(config, kind: str, role: str) -> list[str]:
    """Every installed profile that fills `kind`, or the one --impl names for the role (by its name,
    its kind or *)."""
    from testbed.profiles import able
    from testbed.pytest_plugin import _parse_impls

    chosen = _parse_impls(config)
    for key in (role, kind, "*"):
        if key in chosen:
            if chosen[key] not in able(kind) and key == "*":
                continue
            return [chosen[key]]
    return able(kind)


@contextmanager
def iut_world(testbed_run, pytestconfig, scenario_name: str, role: str, impl: str, role_label: str,
              cls: type = Iut, start_roles: bool = True, on_up=None):
    """The environment of `scenario_name` with `role` filled by `impl`, its world up and (unless
    `start_roles` is False) every role started; taken down at the end."""
    from testbed.profiles import get
    from testbed.pytest_plugin import skip_unavailable
    from testbed.scenario import load_named

    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    d = pytestconfig._testbed["report_dir"] / "cases" / f"{scenario_name}-{impl}-{worker}"
    scenario = load_named(scenario_name).with_impls({role: impl})
    skip_unavailable(scenario)  # a profile that cannot run here: NOT-RUN with its reason, before any world
    iut = cls(role_label, impl, None, scenario, {}, role, statement_of(get(impl)), d / "logs",
              testbed_run=testbed_run, start_roles=start_roles, on_up=on_up)
    try:
        iut.bring_up()
        yield iut
    finally:
        iut.take_down()


def parametrize_iut(metafunc, fixture: str, kind: str, role: str) -> None:
    """In a conftest's pytest_generate_tests: run the parts that use `fixture` once per
    implementation of `kind`. Session scope: one world per implementation and worker for all the
    suite's modules (pytest orders the parts by implementation; the IUT's reset separates them)."""
    if fixture not in metafunc.fixturenames:
        return
    impls = implementations(metafunc.config, kind, role)
    params = [pytest.param(i, id=i) for i in impls] or [
        pytest.param(None, marks=pytest.mark.skip(reason=f"no installed profile fills {kind}"))]
    metafunc.parametrize(fixture, params, indirect=True, scope="session")
