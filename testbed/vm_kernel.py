"""What the running kernel offers to a kernel data plane (the Vagrant VM's stock Debian kernel has
it; the kernel this project is developed on has the XFRM framework but no ESP): used by the vendor
profiles whose IPsec data plane is the kernel's XFRM (strongswan-kernel, libreswan)."""
from __future__ import annotations

import os
import shutil
import subprocess
from functools import lru_cache

PROBE_ENV = "TESTBED_XFRM_PROBE"  # "skip": start a kernel-XFRM profile anyway (development on a kernel without ESP)

# an ESP tunnel-mode SA with throwaway keys, added in a network namespace of its own that dies with
# the command: the kernel accepts it only when it has ESP (esp4, loaded on demand on a stock kernel)
PROBE = ["unshare", "--net", "ip", "xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp",
         "spi", "0x100", "mode", "tunnel", "enc", "cbc(aes)", "0x" + "00" * 16,
         "auth-trunc", "hmac(sha256)", "0x" + "00" * 32, "128"]


def xfrm_unavailable() -> str | None:
    """None where this kernel can hold an ESP SA in XFRM; else the reason, in words a report shows."""
    if not (shutil.which("unshare") and shutil.which("ip")):
        return "cannot check the kernel's XFRM: unshare (util-linux) or ip (iproute2) is missing"
    res = subprocess.run(PROBE, capture_output=True, text=True, timeout=10)
    if res.returncode == 0:
        return None
    return ("this kernel has no ESP in XFRM (adding an ESP SA failed: "
            f"{(res.stderr or res.stdout).strip() or res.returncode}); run the profile on a stock kernel, "
            "e.g. in the Vagrant VM (scripts/vm)")


@lru_cache(maxsize=1)
def _probed() -> str | None:
    return xfrm_unavailable()


def kernel_plane_unavailable(profile: str) -> str | None:
    """Why `profile`, whose data plane is the kernel's XFRM, cannot run here (probed once per
    process), or None; TESTBED_XFRM_PROBE=skip says None without probing (IKE then completes and
    the kernel refuses the SA install: for developing a profile on a kernel without ESP)."""
    if os.environ.get(PROBE_ENV) == "skip":
        return None
    reason = _probed()
    return f"{profile} needs the kernel's XFRM: {reason}" if reason else None
