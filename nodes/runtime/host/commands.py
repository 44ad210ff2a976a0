"""Running `ip`, `iptables` and the like inside the node, with errors that say what failed.

    ip("addr", "add", "10.1.3.1/32", "dev", "vpn0")
    run(["iptables", "-A", "FORWARD", ...])

TUN devices are nodes/runtime/host/tundev.py; sysctls and netlink requests nodes/runtime/host/netlink.py.
"""
from __future__ import annotations

import subprocess


class CommandError(RuntimeError):
    pass


class CommandInterrupted(CommandError):
    """The command was ended by a signal: the daemon's process group is being stopped (SIGTERM reaches
    its children too), not a failure of what the command asked for."""


def run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(argv, capture_output=True, text=True)
    if check and res.returncode < 0:
        raise CommandInterrupted(f"{' '.join(argv)} was ended by signal {-res.returncode}")
    if check and res.returncode:
        raise CommandError(f"{' '.join(argv)} failed (status {res.returncode}): {res.stderr.strip()}")
    return res


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["ip", *args], check)
