"""Soak: a tunnel whose child SA is rekeyed every few seconds and a mobile node that moves every 2 s, for
--minutes side by side (two worlds, each in its own network namespace: one process per part), then
the memory of every daemon at the start and the end, losses per rekey, and what is left behind.

    sudo .venv/bin/python -m benchmarks.bench_soak [--minutes 10]

  ipsec  scenario remote-access-rekey-child, our gateway and client (child SA rekeys due every 3.5 s
         at the gateway, the scenario's, and every 5 s at the client), a 1 kHz probe stream R -> H through the tunnel (testbed/ipsec_traffic.py):
         rekeys counted from the client's status, probes lost per rekey;
  mip    scenario mobility-open-intranet, R moving fn1 <-> fn2 every 2 s (FA care-of addresses):
         moves, registrations accepted.
Memory: VmRSS of each role's process read from /proc right after the roles are up and at the end
(target: growth < 10 %). Leftovers: after each world is torn down, the PIDs its run registry tracked
still alive and its interfaces still present (target: 0). Figures: reports/bench/soak.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import publish
from testbed import REPO_ROOT

PARTS = ("ipsec", "mip")


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def role_rss(world, handles: dict) -> dict[str, int | None]:
    out = {}
    for name, h in handles.items():
        pids = [p.pid for p in world.processes if p.node == h.role.node and p.name == name and p.running()]
        out[name] = rss_kib(pids[0]) if pids else None
    return out


def run_part(part: str, seconds: float) -> dict:
    """One part in this process's own network namespace; its figures as a dict."""
    import dataclasses

    from mininet.log import setLogLevel

    from testbed import handoff
    from testbed.ipsec_checks import established, wait_established
    from testbed.ipsec_traffic import start_probe, stop_probe
    from testbed.isolation import enter_private_netns
    from testbed.mip_checks import FA1, FA2, registered, wait_for
    from testbed.naming import new_run_id
    from testbed.profiles import start_role
    from testbed.runs import Run, alive
    from testbed.scenario import load_named
    from testbed.world import World

    setLogLevel("critical")
    enter_private_netns()
    run = Run.register(new_run_id(f"soak-{part}"))
    out: dict = {"part": part, "seconds": seconds}
    try:
        if part == "ipsec":
            sc = load_named("remote-access-rekey-child")
            roles = {n: dataclasses.replace(r, config={**r.config, "child_rekey_after": 5}) if r.kind == "vpn-client"
                     else r for n, r in sc.roles.items()}
            sc = dataclasses.replace(sc, roles=roles)
        else:
            sc = load_named("mobility-open-intranet")
        world = World.for_scenario(run, Path(tempfile.mkdtemp(prefix=f"bench-soak-{part}-")), sc)
        try:
            handles = {r.name: start_role(world, r) for r in sc.roles.values()}
            if part == "ipsec":
                client = next(h for h in handles.values() if h.role.kind == "vpn-client")
                wait_established(client, timeout=10)
                first = established(client.status())[1]["spi_in"]
                receiver, sender = start_probe(world)
                out["rss_start_kib"] = role_rss(world, handles)
                spis, t0 = {first}, time.monotonic()
                while time.monotonic() - t0 < seconds:
                    found = established(client.status())
                    if found:
                        spis.add(found[1]["spi_in"])
                    time.sleep(0.5)
                probe = stop_probe(receiver, sender)
                rekeys = len(spis) - 1
                out |= {"rekeys": rekeys, "probes_sent": probe["sent"], "probes_lost": probe["lost"],
                        "lost_per_rekey": round(probe["lost"] / rekeys, 2) if rekeys else None,
                        "max_gap_s": probe["max_gap"]}
            else:
                mn = handles["mn"]
                wait_for(lambda: mn.status()["state"] == "home", timeout=10, what="the MN at home")
                out["rss_start_kib"] = role_rss(world, handles)
                stops, moves, accepted, t0 = [("fn1", FA1), ("fn2", FA2)], 0, 0, time.monotonic()
                while time.monotonic() - t0 < seconds:
                    net, coa = stops[moves % 2]
                    handoff.move(world, "r", net, configure=False)
                    moves += 1
                    try:
                        wait_for(lambda: registered(mn, coa, "fa"), timeout=2.0, what="registration")
                        accepted += 1
                    except AssertionError:
                        pass
                    time.sleep(2.0)
                out |= {"moves": moves, "registered_after_move": accepted}
            out["rss_end_kib"] = role_rss(world, handles)
            out["rss_growth_pct"] = {n: round(100 * (out["rss_end_kib"][n] - s) / s, 1)
                                     for n, s in out["rss_start_kib"].items() if s and out["rss_end_kib"].get(n)}
        finally:
            tracked = dict(run.tracked())
            world.stop()
            out["leftover_pids"] = sorted(pid for pid, info in tracked.items() if alive(pid, info.get("start")))
            links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.splitlines()
            out["leftover_interfaces"] = [line.split(":")[1].strip() for line in links if ": lo:" not in line]
    finally:
        run.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="how long both parts run (at most 10)")
    ap.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)  # internal: one part, JSON on stdout
    args = ap.parse_args()
    seconds = min(args.minutes, 10.0) * 60
    if args.part:
        print("SOAK " + json.dumps(run_part(args.part, seconds)), flush=True)
        return
    t0 = time.monotonic()
    procs = {part: subprocess.Popen([sys.executable, "-m", "benchmarks.bench_soak", "--part", part,
                                     "--minutes", str(args.minutes)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
             for part in PARTS}
    parts = {}
    for part, p in procs.items():
        out, _ = p.communicate()
        line = next((x for x in out.splitlines() if x.startswith("SOAK ")), None)
        parts[part] = json.loads(line[5:]) if line else {"error": f"exit {p.returncode}: {out[-2000:]}"}
    growth = [g for part in parts.values() for g in part.get("rss_growth_pct", {}).values()]
    leftovers = sum(len(part.get("leftover_pids", [])) + len(part.get("leftover_interfaces", []))
                    for part in parts.values())
    publish("soak", {
        "what": "a child SA rekeyed every 5 s under a 1 kHz probe, and a mobile node moving fn1 <-> fn2 every 2 s, "
                "side by side in two worlds; daemon memory at start and end, losses per rekey, leftovers",
        "minutes": args.minutes, "parts": parts,
        "max_rss_growth_pct": max(growth) if growth else None,
        "targets": {"rss_growth_pct": "< 10", "leftover_pids": 0, "leftover_interfaces": 0},
        "meets_targets": bool(growth) and max(growth) < 10 and leftovers == 0,
        "wall_s": round(time.monotonic() - t0, 1),
    })


if __name__ == "__main__":
    main()
