"""Faults that cases inject into a running role, and waiting for the recovery.

    pids = signal_role(world, handle, signal.SIGSTOP)     # pause a role's processes
    kill_role(world, handle)                              # SIGKILL them and reap (then start_role again)
    took = until(lambda: world.ping("r", H, timeout=0.5), bound=3.0)   # seconds, or None
"""
from __future__ import annotations

import os
import signal
import time
from typing import Callable


def role_processes(world, handle) -> list:
    """The running processes the harness started for a role (ours: the daemon named after the role;
    strongswan: its charon)."""
    node, name = handle.role.node, handle.role.name
    procs = [p for p in world.processes
             if p.node == node and (p.name == name or p.name.startswith(name + ".")) and p.running()]
    assert procs, f"no running process of role {name} on {node}"
    return procs


def signal_role(world, handle, sig: int) -> list[int]:
    """Send `sig` to each of the role's process groups; the PIDs."""
    procs = role_processes(world, handle)
    for p in procs:
        os.killpg(p.pid, sig)
    return [p.pid for p in procs]


def kill_role(world, handle) -> list[int]:
    """SIGKILL the role's processes, then let the handle reap them (a profile may take back what it
    added, e.g. the strongswan profile's firewall rules). The PIDs killed."""
    procs = role_processes(world, handle)
    for p in procs:
        os.killpg(p.pid, signal.SIGKILL)
    for p in procs:
        p.popen.wait(5)
    handle.stop()
    return [p.pid for p in procs]


def until(check: Callable[[], object], bound: float, interval: float = 0.1) -> float | None:
    """Seconds until check() is true, or None if it is not within `bound` seconds."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < bound:
        if check():
            return time.monotonic() - t0
        time.sleep(interval)
    return None
