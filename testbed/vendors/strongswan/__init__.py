"""The `strongswan` vendor profile: charon (strongSwan 5.9) with kernel-libipsec in the
vpn-gateway and vpn-client roles (its modules also run `strongswan-kernel`, charon with the
kernel's XFRM: testbed/vendors/strongswan_kernel/).

  vici.py    a minimal vici client: the message codec and the Unix socket protocol
  config.py  the role config read with our daemons' rules, rendered as swanctl.conf and strongswan.conf
  charon.py  one charon in a node: mount namespace, start, swanctl, node plumbing, stop
  status.py  the role's status in the public shape, from vici and the key log
  keylog.py  ESP and IKE keys from charon's level-4 log (for tshark decryption in the cases)

Its data: conformance.yaml (the conformance statement: features claimed, expected nonconformances)
and case_data/ (what the black-box cases need to know beyond that, e.g. its NAPT matrix columns).
"""
from __future__ import annotations

from pathlib import Path

from testbed.profile_api import RoleHandle


class StrongSwanProfile:
    """charon with kernel-libipsec; the data plane is the profile's (config.PLANES, by its name):
    testbed/vendors/strongswan_kernel/ is the same profile with the kernel's XFRM."""
    name = "strongswan"
    kinds = frozenset({"vpn-gateway", "vpn-client"})
    conformance_statement = Path(__file__).with_name("conformance.yaml")
    case_data = Path(__file__).with_name("case_data")

    def check_config(self, role, plan) -> None:
        from testbed.vendors.strongswan.config import render
        render(role, plan)

    def render_config(self, role, plan) -> dict[str, str]:
        """swanctl.conf as rendered for the role (strongswan.conf holds only this run's paths,
        plugins and timers from the same config)."""
        from testbed.vendors.strongswan.config import render
        return {"swanctl.conf": render(role, plan).swanctl}

    def start_role(self, world, role) -> RoleHandle:
        from testbed.vendors.strongswan.charon import CharonRole
        from testbed.vendors.strongswan.config import PLANES
        charon = CharonRole(world, role, PLANES[self.name]).start()
        return RoleHandle(role, charon.status, charon.stop, reset=charon.reset)


PROFILE = StrongSwanProfile()
