"""The `libreswan` vendor profile: Libreswan's pluto (Debian 12's libreswan 4.10) with the kernel's
XFRM as its data plane, in the vpn-gateway and vpn-client roles (remote access: the gateway hands
the client an address from its pool with an IKEv2 configuration payload, Libreswan's "modecfg").

  config.py  the role config (read with the strongswan profile's reader) rendered as ipsec.conf
             and ipsec.secrets; what Libreswan cannot do of a valid config, listed
  pluto.py   one pluto in a node: mount namespace, NSS database, start, addconn/whack, node
             plumbing, stop
  status.py  the role's status in the public shape, from whack and the kernel's XFRM states

Its data: conformance.yaml (the conformance statement). Installed by scripts/install-libreswan into
a private prefix, not with apt-get install: Debian's libreswan conflicts with strongSwan's packages
(docs/libreswan.md).

start_role raises RoleUnavailable (the case is reported NOT-RUN, never PASS) where the kernel has
no ESP in XFRM (testbed/vm_kernel.py; the kernel this project is developed on), where Libreswan is
not installed, and where the role config asks for what Libreswan 4.10 cannot do (EAP-MD5, ...).
TESTBED_XFRM_PROBE=skip starts pluto without the kernel check, for development on a kernel without
ESP: IKE then completes and only the SA install fails.
"""
from __future__ import annotations

from pathlib import Path

from testbed.profile_api import RoleHandle, RoleUnavailable
from testbed.vm_kernel import kernel_plane_unavailable


class LibreswanProfile:
    name = "libreswan"
    kinds = frozenset({"vpn-gateway", "vpn-client"})
    conformance_statement = Path(__file__).with_name("conformance.yaml")

    def check_config(self, role, plan) -> None:
        """Refuses a malformed role config (ConfigError); what Libreswan cannot do of a valid one is
        refused when the role starts (RoleUnavailable), so a scenario stays loadable."""
        from testbed.vendors.libreswan.config import render
        render(role, plan)

    def render_config(self, role, plan) -> dict[str, str]:
        """ipsec.conf and ipsec.secrets as rendered for the role."""
        from testbed.vendors.libreswan.config import render
        rendered = render(role, plan)
        return {"ipsec.conf": rendered.ipsec_conf, "ipsec.secrets": rendered.secrets}

    def unavailable(self, kind: str) -> str | None:
        """Why this machine cannot run the profile (no ESP in the kernel's XFRM, or Libreswan not
        installed), or None: asked before a case builds its world."""
        from testbed.vendors.libreswan.pluto import installed
        return kernel_plane_unavailable(self.name) or installed()

    def start_role(self, world, role) -> RoleHandle:
        from testbed.vendors.libreswan.config import render
        from testbed.vendors.libreswan.pluto import PlutoRole

        if reason := self.unavailable(role.kind):
            raise RoleUnavailable(f"role {role.name}: {reason}")
        unsupported = render(role, world.plan).info.get("unsupported")
        if unsupported:
            raise RoleUnavailable(f"role {role.name}: Libreswan 4.10 as this profile runs it cannot do "
                                  f"{'; '.join(unsupported)}")
        pluto = PlutoRole(world, role).start()
        return RoleHandle(role, pluto.status, pluto.stop, reset=pluto.reset)


PROFILE = LibreswanProfile()
