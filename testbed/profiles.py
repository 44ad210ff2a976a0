"""Vendor profiles: which implementation fills a role, and how to start and query it.

`ours` runs this project's daemons (python -m nodes.daemons.<module>); a third-party profile (the
`strongswan` profile arrives with the IPsec work) starts and configures its own program. Every
started role answers `status()` with a JSON-able dict, so cases never need to know which
implementation they talk to.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable

KINDS = ("vpn-gateway", "vpn-client", "home-agent", "foreign-agent", "mobile-node", "mobile-vpn-node", "echo-sink")

# profile -> role kind -> how to start it: a module under nodes/ for `ours`
PROFILES: dict[str, dict[str, str]] = {
    "ours": {
        "vpn-gateway": "daemons.vpn_gateway",
        "vpn-client": "daemons.vpn_client",
        "home-agent": "daemons.home_agent",
        "foreign-agent": "daemons.foreign_agent",
        "mobile-node": "daemons.mobile_node",
        "mobile-vpn-node": "daemons.mobile_vpn_node",
        "echo-sink": "instruments.sink",
    },
    "strongswan": {
        "vpn-gateway": "strongswan",
        "vpn-client": "strongswan",
    },
}


class RoleUnavailable(RuntimeError):
    pass


@dataclass
class RoleHandle:
    role: object
    status: Callable[[], dict]
    stop: Callable[[], object]


def available(impl: str, kind: str) -> bool:
    target = PROFILES.get(impl, {}).get(kind)
    if target is None:
        return False
    if impl == "ours":
        return importlib.util.find_spec(f"nodes.{target}") is not None
    return importlib.util.find_spec(f"testbed.vendors.{target}") is not None


def start_role(world, role) -> RoleHandle:
    """Start `role` (a scenario.Role) in the world and wait until it is ready."""
    if not available(role.impl, role.kind):
        raise RoleUnavailable(
            f"role {role.name}: the {role.impl!r} implementation of {role.kind} is not in this build yet "
            f"(see the open issues); choose another scenario or --impl")
    target = PROFILES[role.impl][role.kind]
    if role.impl == "ours":
        from testbed.daemons import start_daemon
        d = start_daemon(world, role.node, target, name=role.name, config=role.config)
        return RoleHandle(role, d.status, d.stop)
    vendor = importlib.import_module(f"testbed.vendors.{target}")
    return vendor.start_role(world, role)


def start_roles(world, roles) -> dict[str, RoleHandle]:
    """Start `roles` (scenario.Role objects) in order; role name -> handle. Raises RoleUnavailable
    for a role this build cannot fill (the roles started before it stay with the world, which
    stops their processes at teardown)."""
    return {role.name: start_role(world, role) for role in roles}
