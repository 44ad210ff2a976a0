"""The `strongswan-kernel` vendor profile: strongSwan's charon in its normal mode, with the kernel's
XFRM as its data plane (kernel-netlink) instead of kernel-libipsec, in the vpn-gateway and
vpn-client roles. It is the `strongswan` profile (testbed/vendors/strongswan/) with the other data
plane (config.KERNEL): one charon per node in its own mount namespace, the same swanctl.conf, vici
and status; no TUN device (the gateway's FORWARD rules match XFRM's policies), plain ESP unless a
NAT is detected, charon's routes in table 220 and the client's virtual IP on its interface.

Where the kernel has no ESP in XFRM (the kernel this project is developed on), the profile is
unavailable (`unavailable`, asked before a case builds its world; start_role raises RoleUnavailable
with the same reason), so a case that would use it is reported NOT-RUN with that reason, never PASS.
It runs where the kernel has ESP, e.g. in the Vagrant VM (scripts/vm).

TESTBED_XFRM_PROBE=skip (for developing the profile on a kernel without ESP) starts charon anyway:
IKE_SA_INIT and IKE_AUTH complete, and installing the CHILD_SA in the kernel fails.
"""
from __future__ import annotations

from pathlib import Path

from testbed.profile_api import RoleHandle, RoleUnavailable
from testbed.vendors.strongswan import StrongSwanProfile
from testbed.vm_kernel import kernel_plane_unavailable


class StrongSwanKernelProfile(StrongSwanProfile):
    name = "strongswan-kernel"
    conformance_statement = Path(__file__).with_name("conformance.yaml")
    case_data = None  # no NAPT matrix columns of its own (they would need a scenario with this gateway)

    def unavailable(self, kind: str) -> str | None:
        """Why this machine cannot run the profile (no ESP in the kernel's XFRM), or None."""
        return kernel_plane_unavailable(self.name)

    def start_role(self, world, role) -> RoleHandle:
        if reason := self.unavailable(role.kind):
            raise RoleUnavailable(f"role {role.name}: {reason}")
        return super().start_role(world, role)


PROFILE = StrongSwanKernelProfile()
