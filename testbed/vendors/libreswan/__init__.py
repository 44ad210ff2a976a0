"""The `libreswan` vendor profile: Libreswan's pluto with the kernel's XFRM as its data plane, in
the vpn-gateway and vpn-client roles.

Libreswan has no userspace data plane, so where the kernel has no XFRM (the kernel this project is
developed on) start_role raises RoleUnavailable with that reason, and a case that would use it is
reported NOT-RUN, never PASS. Where XFRM exists (the Vagrant VM's stock kernel), it says whether
pluto is installed (Debian's libreswan package) and that running pluto per node namespace is not
written yet.
"""
from __future__ import annotations

import shutil

from testbed.profile_api import RoleHandle, RoleUnavailable
from testbed.vm_kernel import xfrm_unavailable


class LibreswanProfile:
    name = "libreswan"
    kinds = frozenset({"vpn-gateway", "vpn-client"})

    def check_config(self, role, plan) -> None:
        """pluto checks its own configuration when it starts."""

    def start_role(self, world, role) -> RoleHandle:
        if reason := xfrm_unavailable():
            raise RoleUnavailable(f"role {role.name}: libreswan needs the kernel's XFRM: {reason}")
        if not (shutil.which("pluto") or shutil.which("ipsec")):
            raise RoleUnavailable(f"role {role.name}: libreswan is not installed (Debian package libreswan)")
        raise RoleUnavailable(f"role {role.name}: the libreswan profile (pluto per node namespace) is not "
                              "implemented yet")


PROFILE = LibreswanProfile()
