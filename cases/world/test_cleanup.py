"""After a run, no namespace, interface or process of the run remains, also after a SIGKILL."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from testbed import REPO_ROOT
from testbed.daemons import start_daemon
from testbed.isolation import netns_inode
from testbed.runs import RUNS_DIR, reap_stale, start_time

pytestmark = pytest.mark.scenario("bare-world")


def now_ticks() -> float:
    """Now, in the clock ticks since boot that /proc/PID/stat's start time uses."""
    return float(open("/proc/uptime").read().split()[0]) * os.sysconf("SC_CLK_TCK")


def holders(inodes: set[int], started_before: float = float("inf")) -> list[int]:
    """PIDs of processes in any of these network namespaces that started before `started_before`.

    Namespace inode numbers are reused once a namespace is gone, so a world built later by
    another worker can have the same numbers; only processes older than the check can be ours."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes and (start_time(int(entry)) or 0) < started_before:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def wait_gone(pids_or_inodes, probe, timeout=5.0):
    deadline = time.monotonic() + timeout
    while (left := probe(pids_or_inodes)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def alive(started: dict[int, int]) -> list[int]:
    """Those of the processes (pid -> start time) still running; a reused PID does not count."""
    return [p for p, t in started.items() if start_time(p) == t]


def start_times(pids) -> dict[int, int]:
    return {p: start_time(p) for p in pids}


# The fallback devices a kernel with the ipip, ip_gre, ip_vti, sit, ip6_tunnel or ip6_gre module
# puts in every new network namespace (down, and gone with the namespace): the kernel's, not left
# by a run.
KERNEL_FALLBACK_DEVICES = {"tunl0", "gre0", "gretap0", "erspan0", "ip_vti0", "ip6_vti0", "sit0",
                           "ip6tnl0", "ip6gre0"}


def interfaces_here() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
    return [n for n in names if n not in KERNEL_FALLBACK_DEVICES]


@pytest.mark.req("testbed-isolation")
def test_teardown_leaves_nothing(scenario, testbed_run, case_dir):
    from testbed.world import World

    world = World.for_scenario(testbed_run, case_dir / "logs", scenario)
    sink = start_daemon(world, "h", "instruments.sink", args=["--udp", "7"])
    node_pids = [world.pid(n) for n in world.plan.nodes]
    inodes = {netns_inode(p) for p in node_pids}
    shells = [sw.shell.pid for sw in world.net.switches]  # Mininet gives each bridge a shell too
    pids = start_times(node_pids + shells + [sink.process.pid])
    assert len(inodes) == len(node_pids), "each node must have its own network namespace"
    stopped_at = now_ticks()
    world.stop()
    assert alive(pids) == [], "processes of the world survived its teardown"
    assert wait_gone(inodes, lambda i: holders(i, started_before=stopped_at)) == [], "a node's namespace is still held"
    assert interfaces_here() == ["lo"], f"interfaces left in the run's namespace: {interfaces_here()}"
    assert testbed_run.tracked() == {}, "the run registry still lists processes"


@pytest.mark.req("testbed-isolation")
def test_sigkilled_run_leaves_nothing(tmp_path, testbed_run):
    """A CLI run killed with SIGKILL: its nodes and daemons die with it, and the next start removes
    its registry entry (and only that)."""
    proc = subprocess.Popen([sys.executable, "-m", "testbed.cli", "--report-dir", str(tmp_path), "up", "--no-cli"],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = ""
    for line in proc.stdout:
        if line.startswith("READY "):
            break
    assert line.startswith("READY "), f"testbed up did not come up: {line}"
    info = json.loads(line[len("READY "):])
    node_pids = start_times(info["nodes"].values())
    daemons = start_times(info["processes"].values())
    assert daemons, "the scenario's roles should have started daemons"
    inodes = {netns_inode(p) for p in node_pids} | {netns_inode(proc.pid)}
    run_dir = RUNS_DIR / info["run_id"]
    assert run_dir.is_dir()

    killed_at = now_ticks()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert wait_gone(node_pids, alive) == [], "node shells outlived the killed run"
    assert wait_gone(daemons, alive) == [], "daemons outlived the killed run"
    left = wait_gone(inodes, lambda i: holders(i, started_before=killed_at))
    assert left == [], "namespaces of the killed run are still held by processes"
    actions = reap_stale()
    assert not run_dir.exists(), f"the dead run's registry entry was not removed: {actions}"
    assert testbed_run.dir.is_dir(), "reaping must leave live runs alone"
