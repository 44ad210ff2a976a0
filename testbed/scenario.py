"""Scenarios: data files (fixtures/scenarios/*.yaml) that place roles onto the world.

A scenario names where each station starts, how the NAT router behaves, and its roles: each
role has a kind (vpn-gateway, home-agent, ...), the node it runs on, the implementation that
fills it (a vendor profile: `ours`, `strongswan`) and a free-form config the implementation
reads. Several roles may share a node (a combined VPN gateway and home agent), and a kind may
appear several times (an internal and an external home agent), so the five deployment
scenarios of the MIPv4/VPN problem statement are five files, not five code paths.

    name: remote-access-basic          # must match the file name
    description: one line
    source: "draft-gupta section 3"    # where the scenario comes from
    variants: [open-intranet]          # changes to the world (fixtures/world.yaml, variants)
    stations: {r: fn1}                 # station -> segment it attaches to first
    nat: {mapping: port-preserving, helpers: [ftp]}
    roles:
      gw: {kind: vpn-gateway, node: g, impl: ours, config: {internal_presence: napt}}
    placement_only: "why"              # the roles are placed but not configured to run yet
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from testbed import FIXTURES
from testbed.plan import Plan, default_plan
from testbed import profiles
from testbed.profile_api import KINDS
from testbed.schema import ConfigError, Reader, load_yaml
from testbed.world import NatOptions

SCENARIO_DIR = FIXTURES / "scenarios"


@dataclass(frozen=True)
class Role:
    name: str
    kind: str
    node: str
    impl: str
    config: dict = field(default_factory=dict, hash=False)
    source: str = field(default="", compare=False)  # the scenario file, for error messages


@dataclass
class Scenario:
    name: str
    description: str
    source: str
    file: Path
    stations: dict[str, str]
    nat: NatOptions
    roles: dict[str, Role]
    variants: tuple[str, ...] = ()
    placement_only: str = ""  # why the roles' configs are not complete yet; empty: runnable

    def plan(self) -> Plan:
        """The world's plan with this scenario's variants applied."""
        return default_plan().with_variants(self.variants)

    def with_impls(self, overrides: dict[str, str]) -> "Scenario":
        """The same scenario with some roles' implementations replaced.

        `overrides` maps a role name or a role kind to a profile name; '*' means every role
        the profile can fill.
        """
        roles = {}
        plan = None if self.placement_only else self.plan()
        for name, role in self.roles.items():
            impl = overrides.get(name) or overrides.get(role.kind)
            if impl is None and "*" in overrides and profiles.available(overrides["*"], role.kind):
                impl = overrides["*"]
            roles[name] = Role(name, role.kind, role.node, impl or role.impl, role.config, role.source)
            if impl:
                profiles.check_role(roles[name], plan, key=f"--impl {name}")
        return Scenario(self.name, self.description, self.source, self.file, self.stations, self.nat, roles,
                        self.variants, self.placement_only)

    def roles_of(self, kind: str) -> list[Role]:
        return [r for r in self.roles.values() if r.kind == kind]


def load_scenario(path: Path, plan: Plan | None = None) -> Scenario:
    plan = plan or default_plan()
    top = Reader(path, load_yaml(path))
    top.only_keys(["name", "description", "source", "variants", "stations", "nat", "roles", "placement_only"])
    name = top.child("name").str()
    if name != path.stem:
        raise top.child("name").fail(f"the file's name {path.stem!r}", name,
                                     hint="rename the file or change name: to match")
    stations = {}
    for station, seg in top.child("stations", {}).items():
        if station not in plan.stations():
            raise seg.fail(f"a station of the world {plan.stations()}", station, key=seg.key)
        stations[station] = seg.str(plan.attachments)
    n = top.child("nat", {})
    n.only_keys(["mapping", "helpers"])
    nat = NatOptions(
        mapping=n.child("mapping", "port-preserving").str(NatOptions.MAPPINGS),
        helpers=tuple(h.str(NatOptions.HELPER_PORTS) for h in n.child("helpers", []).list()),
    )
    roles = {}
    for role_name, r in top.child("roles", {}).items():
        r.only_keys(["kind", "node", "impl", "config"])
        kind = r.child("kind").str(KINDS)
        node = r.child("node").str(plan.nodes)
        impl = r.child("impl", "ours").str()
        config = r.child("config", {}).mapping()
        roles[role_name] = Role(role_name, kind, node, impl, config, str(path))
    variants = tuple(v.str(plan.variants) for v in top.child("variants", []).list())
    runnable = not top.child("placement_only", "").str()  # placed roles' configs are not complete yet
    for role in roles.values():
        profiles.check_role(role, plan.with_variants(variants) if runnable else None)
    return Scenario(name, top.child("description").str(), top.child("source", "").str(), path, stations, nat, roles,
                    variants, top.child("placement_only", "").str())


def scenario_path(name: str) -> Path:
    path = SCENARIO_DIR / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(path, "(file)", f"a scenario of {sorted(list_scenarios())}", name,
                          hint="`testbed scenarios` lists them with a line each")
    return path


def list_scenarios() -> dict[str, Path]:
    return {p.stem: p for p in sorted(SCENARIO_DIR.glob("*.yaml"))}


def load_named(name: str) -> Scenario:
    return load_scenario(scenario_path(name))
