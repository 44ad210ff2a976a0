"""The kernel-XFRM vendor profiles (strongswan-kernel, libreswan) never pretend: on a kernel without
ESP in XFRM they refuse every role with that reason (the case is NOT-RUN, never PASS), and where the
kernel has it they still refuse until their per-namespace daemons are written."""
from __future__ import annotations

import pytest

from testbed.profile_api import RoleUnavailable
from testbed.vendors.libreswan import PROFILE as LIBRESWAN
from testbed.vendors.strongswan_kernel import PROFILE as STRONGSWAN_KERNEL
from testbed.vm_kernel import xfrm_unavailable


class Role:
    name = "gw"
    kind = "vpn-gateway"


@pytest.mark.parametrize("profile", [STRONGSWAN_KERNEL, LIBRESWAN], ids=lambda p: p.name)
def test_refuses_with_the_reason(profile):
    assert profile.kinds == {"vpn-gateway", "vpn-client"}
    reason = xfrm_unavailable()
    with pytest.raises(RoleUnavailable, match="role gw: ") as exc:
        profile.start_role(None, Role())
    if reason:
        assert "XFRM" in str(exc.value) and reason in str(exc.value)
    else:
        assert "not implemented yet" in str(exc.value) or "not installed" in str(exc.value)
