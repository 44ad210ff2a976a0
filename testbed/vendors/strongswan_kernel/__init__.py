"""The `strongswan-kernel` vendor profile: strongSwan's charon in its normal mode, with the
kernel's XFRM as its data plane (kernel-netlink) instead of kernel-libipsec, in the vpn-gateway and
vpn-client roles; modelled on the `strongswan` profile (testbed/vendors/strongswan/).

Where the kernel has no XFRM (the kernel this project is developed on), start_role raises
RoleUnavailable with that reason, so a case that would use it is reported NOT-RUN, never PASS.
Where XFRM exists (the Vagrant VM's stock kernel), it still raises RoleUnavailable: charon's
kernel-netlink setup per node namespace is not written yet, and saying so is the honest answer.
"""
from __future__ import annotations

from testbed.profile_api import RoleHandle, RoleUnavailable
from testbed.vm_kernel import xfrm_unavailable


class StrongSwanKernelProfile:
    name = "strongswan-kernel"
    kinds = frozenset({"vpn-gateway", "vpn-client"})

    def check_config(self, role, plan) -> None:
        from testbed.vendors.strongswan.config import render
        render(role, plan)  # the same role configs as the libipsec profile

    def start_role(self, world, role) -> RoleHandle:
        if reason := xfrm_unavailable():
            raise RoleUnavailable(f"role {role.name}: strongswan-kernel needs the kernel's XFRM: {reason}")
        raise RoleUnavailable(f"role {role.name}: strongswan-kernel (charon with kernel-netlink per node "
                              "namespace) is not implemented yet; use the strongswan profile (kernel-libipsec)")


PROFILE = StrongSwanKernelProfile()
