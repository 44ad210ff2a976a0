"""What a vendor profile is: the interface an implementation offers to fill roles in a scenario.

A profile starts its own program for a role (a daemon of ours, charon, a vendor's product) inside
the role's node and answers the role's status as a JSON-able dict, so cases never need to know
which implementation they talk to. Profiles are found through the Python entry point group
`testbed.profiles` (testbed/profiles.py): this project declares `ours` and `strongswan` in its
pyproject.toml, and a vendor's own installed package adds one the same way (README, "Adding your
implementation").

A profile is an object with

  name          the name scenarios and `--impl ROLE=PROFILE` use (the entry point's name)
  kinds         the role kinds it fills, a subset of KINDS
  check_config(role, plan)
                refuses a role config it cannot run with a ConfigError naming the scenario file,
                the key (`roles.<role>.config.<key>`, see config_error) and what was expected;
                called when a scenario is loaded and again before each start. A profile whose
                program checks its own config when it starts may accept everything here.
  conformance_statement
                optional: the path of its conformance statement (testbed/conformance/ics.py),
                the optional features it claims and its expected nonconformances, as data
  render_config(role, plan) -> dict[str, str]
                optional: the configuration files its program runs with for the role, by file
                name, as text, without side effects. Cases compare them across scenarios (e.g. that
                a gateway serves mobile nodes with the configuration of plain remote access); a
                profile without it runs its program with the role config as it is (rendered_config)
  case_data     optional: a directory of YAML files with what black-box cases need to know of the
                implementation beyond its status and statement, by case area (case_data): e.g.
                napt-matrix.yaml, the columns a gateway profile adds to the NAPT application
                matrix (cases/napt/test_matrix.py) with their expected outcomes
  unavailable(kind) -> str | None
                optional: why this machine cannot fill `kind` after all (e.g. its kernel lacks
                what the program needs), in words a report shows, or None; asked once per process
                and kind before a case builds its world (profiles.unavailable), which is then
                skipped with the reason instead of building a world only to hear it from start_role
  start_role(world, role) -> RoleHandle
                starts the role in `world` (testbed.world.World: run_in, start, log_dir, run.path,
                plan) on node `role.node`, waits until it is ready and returns its handle; it
                raises RoleUnavailable when this build cannot fill the role after all.

The status a role answers (RoleHandle.status()) carries "implementation" (the profile's name) and
"kind" (the harness fills both in where a profile leaves them out) and the keys its kind's cases
read; testbed/status_schema.py is its schema (SCHEMAS, check_status, describe): IPsec roles report
`ike_sas` with `child_sas`, and a child SA's `keys` ({"encr_in", "encr_out", "integ_in",
"integ_out"}, hex) let the cases decrypt the capture with tshark (testbed/ipsec_checks.py; None
where the profile cannot know the keys); a home agent `bindings`, a foreign agent `visitors`, a
mobile node its `state` and `care_of_address`, an echo sink what it `received`.
tests/test_status_schema.py checks every installed profile's status against it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

from testbed.schema import ConfigError, Reader, load_yaml

KINDS = ("vpn-gateway", "vpn-client", "home-agent", "foreign-agent", "mobile-node", "mobile-vpn-node", "echo-sink")
ENTRY_POINT_GROUP = "testbed.profiles"


class RoleUnavailable(RuntimeError):
    """This build cannot fill a role (no profile offers it, or its program is missing)."""


@dataclass
class RoleHandle:
    """A started role: `status()` answers a JSON-able dict, `stop()` ends it and takes back what it
    changed in the node (returns the program's exit status, or None). `reset()`, where the profile
    has one, takes the role back to a clean state without a restart (every SA, binding or visitor
    gone): conformance test parts call it between parts; without it, the role is restarted."""
    role: object  # the scenario.Role it fills
    status: Callable[[], dict]
    stop: Callable[[], object]
    reset: Callable[[], None] | None = None


@runtime_checkable
class Profile(Protocol):
    name: str
    kinds: frozenset[str]

    def check_config(self, role, plan) -> None: ...

    def start_role(self, world, role) -> RoleHandle: ...


def rendered_config(profile, role, plan) -> dict[str, str]:
    """The configuration `profile`'s program runs with for `role` (render_config), or, for a profile
    that runs its program with the role config as it is, that config as JSON."""
    render = getattr(profile, "render_config", None)
    if render is not None:
        return render(role, plan)
    return {"config.json": json.dumps(role.config, indent=2, sort_keys=True, default=str)}


def case_data(profile, name: str) -> dict | None:
    """The profile's case data `name` (`<case_data>/<name>.yaml`), or None when it has none; checked
    against the case area's schema (CASE_DATA_SCHEMAS) where there is one: a ConfigError names the
    file and the key."""
    folder = getattr(profile, "case_data", None)
    path = Path(folder) / f"{name}.yaml" if folder is not None else None
    if path is None or not path.exists():
        return None
    data = load_yaml(path) or {}
    check = CASE_DATA_SCHEMAS.get(name)
    if check is not None:
        check(Reader(path, data))
    return data


def _napt_matrix(top: Reader) -> None:
    """napt-matrix.yaml: the columns a gateway profile adds to the NAPT application matrix
    (cases/napt/test_matrix.py): per column its scenario, the apps that break (every other app
    works), the address each payload-carrying app shows (inner or g_i), whether netfilter's
    conntrack helpers are attached, and x11_redirect: netfilter (the case adds netfilter's DNAT)."""
    from testbed.napt_matrix import APPS
    from testbed.scenario import list_scenarios

    top.only_keys(["columns"])
    for _col, c in top.child("columns").items():
        c.only_keys(["heading", "scenario", "conntrack_helpers", "x11_redirect", "breaks", "payload_address"])
        c.child("heading", "").str()
        c.child("scenario").str(list_scenarios())
        c.child("conntrack_helpers", False).bool()
        if c.mapping().get("x11_redirect") is not None:
            c.child("x11_redirect").str(["netfilter"])
        for app in c.child("breaks", []).list():
            app.str(APPS)
        for app, where in c.child("payload_address", {}).items():
            if app not in APPS:
                raise where.fail(f"an app of the matrix ({', '.join(APPS)})", app)
            where.str(["inner", "g_i"])


CASE_DATA_SCHEMAS: dict[str, Callable[[Reader], None]] = {"napt-matrix": _napt_matrix}


def config_error(role, key: str, expected: str, got=None) -> ConfigError:
    """A refusal of `key` in `role`'s config, in the scenario files' style:
    `<scenario file>: roles.<role>.config.<key>: expected <expected>, got <got>`."""
    return ConfigError(role.source or f"(role {role.name}, built by a case)", f"roles.{role.name}.config.{key}",
                       expected, got)
