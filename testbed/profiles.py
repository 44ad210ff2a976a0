"""Vendor profiles: which implementation fills a role, found through Python entry points.

Every installed distribution may declare profiles in the entry point group `testbed.profiles`
(testbed/profile_api.py says what a profile is):

    [project.entry-points."testbed.profiles"]
    ours = "testbed.daemons:PROFILE"
    strongswan = "testbed.vendors.strongswan:PROFILE"

The entry point's name is the profile's name in scenarios and `--impl ROLE=PROFILE`; its object
is the profile. This project declares `ours` and `strongswan` in its pyproject.toml; a vendor's
package declares its own the same way and is found once installed, without editing this repository.
"""
from __future__ import annotations

import dataclasses
import importlib
import re
import sys
import tomllib
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path

from testbed.profile_api import ENTRY_POINT_GROUP, KINDS, Profile, RoleHandle, RoleUnavailable
from testbed.schema import ConfigError
from testbed.status_schema import completed

__all__ = ["KINDS", "Profile", "RoleHandle", "RoleUnavailable", "ProfileError", "installed", "get", "available",
           "unavailable", "check_role", "start_role", "start_roles", "restart_role", "register_source"]


ProfileError = ConfigError  # the name this module used before the one ConfigError (nodes/config_schema.py)
ENTRY_POINTS_KEY = f'[project.entry-points."{ENTRY_POINT_GROUP}"]'


def installed() -> dict[str, Profile]:
    """Profile name -> profile, for every entry point in `testbed.profiles` of the installed
    distributions (looked up again when sys.path changes). A broken declaration is a ConfigError
    naming the distribution, the entry point, what was expected and what was found."""
    return _discover(tuple(sys.path))


def _declaration(ep) -> tuple[str, str]:
    """(file, key) of an entry point for a ConfigError: the distribution that declares it, and the
    entry point in its pyproject.toml's terms."""
    dist = ep.dist.name if ep.dist else "an unnamed distribution"
    return f"the installed distribution {dist}", f"{ENTRY_POINTS_KEY} {ep.name} = {ep.value}"


@lru_cache(maxsize=4)
def _discover(_path: tuple[str, ...]) -> dict[str, Profile]:
    found: dict[str, Profile] = {}
    origin: dict[str, tuple[str, str]] = {}  # name -> (entry point value, its distribution)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        file, key = _declaration(ep)
        if ep.name in found:
            if ep.value == origin[ep.name][0]:
                continue  # the same declaration seen twice (a distribution on two sys.path entries)
            raise ConfigError(file, key, "a profile name no other installed distribution uses",
                              f"{ep.name!r}, also declared by {origin[ep.name][1]} ({ep.name} = {origin[ep.name][0]})",
                              hint="two installed profiles are called the same: uninstall one of them")
        try:
            profile = ep.load()
        except Exception as exc:
            raise ConfigError(file, key, f"an object that loads (the profile {ep.name!r})",
                              f"{type(exc).__name__}: {exc}",
                              hint="the profile does not load: fix the module or the entry point, or "
                                   "uninstall the distribution") from exc
        _check_profile(profile, ep.name, file, key)
        found[ep.name], origin[ep.name] = profile, (ep.value, file)
    return dict(sorted(found.items()))


def _check_profile(profile, name: str, file: str, key: str) -> None:
    if isinstance(profile, type):
        raise ConfigError(file, key, f"a profile object (PROFILE = {profile.__name__}())",
                          f"the class {profile.__name__}", hint="name the instance, not the class")
    if not isinstance(profile, Profile):
        raise ConfigError(file, key, "a profile: an object with name, kinds, check_config(role, plan) and "
                          "start_role(world, role) (testbed/profile_api.py)", profile)
    if profile.name != name:
        raise ConfigError(file, key, f"a profile called {name!r}", profile.name,
                          hint="the entry point's name and the profile's name must be the same")
    unknown = sorted(set(profile.kinds) - set(KINDS))
    if unknown:
        raise ConfigError(file, key, f"kinds among {list(KINDS)}", unknown,
                          hint="a profile fills only role kinds a scenario can have")


def _no_profiles_hint() -> str:
    return "" if installed() else (" (no profile is installed at all: install this project with scripts/setup or "
                                   "`pip install -e .`, which declares ours and strongswan)")


def get(name: str) -> Profile:
    """The installed profile `name`; RoleUnavailable listing the installed ones otherwise."""
    profiles = installed()
    if name not in profiles:
        raise RoleUnavailable(f"no profile {name!r} is installed; installed profiles: "
                              f"{', '.join(profiles) or 'none'}{_no_profiles_hint()}")
    return profiles[name]


def able(kind: str) -> list[str]:
    """The installed profiles that fill `kind`."""
    return [name for name, p in installed().items() if kind in p.kinds]


def available(impl: str, kind: str) -> bool:
    profile = installed().get(impl)
    return profile is not None and kind in profile.kinds


def unavailable(role) -> str | None:
    """Why `role`'s profile cannot fill it on this machine (the profile's optional
    unavailable(kind), asked once per process), or None; cheap enough to ask before building a world."""
    profile = installed().get(role.impl)
    if profile is None or not hasattr(profile, "unavailable"):
        return None
    reason = _unavailable(profile, role.kind)
    return f"role {role.name}: {reason}" if reason else None


@lru_cache(maxsize=None)
def _unavailable(profile, kind: str) -> str | None:
    return profile.unavailable(kind)


def check_role(role, plan, key: str | None = None) -> None:
    """Refuse a role whose profile is not installed, does not fill its kind, or does not accept its
    config (a ConfigError naming the scenario file and the key; `key` names where the profile was
    chosen, `roles.<role>.impl` by default). With plan None the config is not checked (a scenario
    that only places its roles)."""
    key = key or f"roles.{role.name}.impl"
    profiles = installed()
    file = role.source or f"(role {role.name})"
    if role.impl not in profiles:
        raise ConfigError(file, key, f"an installed profile ({', '.join(profiles) or 'none'}){_no_profiles_hint()}",
                          role.impl)
    profile = profiles[role.impl]
    if role.kind not in profile.kinds:
        raise ConfigError(file, key, f"a profile that implements {role.kind} ({', '.join(able(role.kind)) or 'none yet'})",
                          role.impl)
    if plan is not None:
        profile.check_config(role, plan)


def start_role(world, role) -> RoleHandle:
    """Start `role` (a scenario.Role) in the world and wait until it is ready. Its handle's status
    carries "implementation" and "kind" (status_schema.completed) whatever the profile answers."""
    if not available(role.impl, role.kind):
        raise RoleUnavailable(
            f"role {role.name}: no installed profile {role.impl!r} implements {role.kind} (installed profiles "
            f"that do: {', '.join(able(role.kind)) or 'none'}); choose another scenario or --impl")
    if reason := unavailable(role):
        raise RoleUnavailable(reason)
    profile = get(role.impl)
    profile.check_config(role, world.plan)
    handle = profile.start_role(world, role)
    handle.status = _completed_status(handle.status, role)
    return handle


def _completed_status(answer, role):
    """The keys every status carries (testbed/status_schema.py), filled in where a profile leaves them out."""
    def status():
        s = answer()
        return completed(s, role) if isinstance(s, dict) else s
    return status


def start_roles(world, roles) -> dict[str, RoleHandle]:
    """Start `roles` (scenario.Role objects) in order; role name -> handle. Raises RoleUnavailable
    for a role this build cannot fill (the roles started before it stay with the world, which
    stops their processes at teardown)."""
    return {role.name: start_role(world, role) for role in roles}


def restart_role(world, scenario, handles: dict, name: str, **config) -> RoleHandle:
    """Stop the started role `name` and start it again with `config` laid over its scenario config;
    `handles` (role name -> handle, as the `roles` fixture gives) gets the new handle."""
    handles[name].stop()
    role = scenario.roles[name]
    handles[name] = start_role(world, dataclasses.replace(role, config={**role.config, **config}))
    return handles[name]


def register_source(project: Path, site: Path) -> list[str]:
    """Make the profiles of a profile project in a source tree (a directory with a pyproject.toml
    and flat modules, as examples/socat_profile/) discoverable in this process without installing
    it: writes the .dist-info that `pip install` would write (METADATA, entry_points.txt from the
    pyproject's `testbed.profiles` entry points) into `site` and puts `site` and `project` on
    sys.path. For a vendor's tests and this project's: discovery then runs exactly as for an
    installed package. Returns the profile names it declares."""
    meta = tomllib.loads((Path(project) / "pyproject.toml").read_text())["project"]
    declared = meta.get("entry-points", {}).get(ENTRY_POINT_GROUP, {})
    if not declared:
        raise ConfigError(Path(project) / "pyproject.toml", ENTRY_POINTS_KEY, "at least one profile entry point",
                          hint=f'add e.g. name = "module:PROFILE" under {ENTRY_POINTS_KEY}')
    dist = Path(site) / f"{re.sub(r'[-_.]+', '_', meta['name'])}-{meta['version']}.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n" + "".join(f"{k} = {v}\n" for k, v in declared.items()))
    for entry in (str(site), str(project)):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    importlib.invalidate_caches()
    return sorted(declared)
