"""Home Agent registration throughput and scaling: authenticated Registration Requests over UDP.

    sudo .venv/bin/python -m benchmarks.bench_ha_registrations [--nodes 1000 5000 10000] [--passes 3]
        [--window 64] [--profile] [--modes batched unbatched] [--repeat 1]

For each population N of emulated mobile nodes a fresh Home Agent
daemon (nodes/daemons/home_agent.py, our `home-agent` role on node iha of the scenario mobility-open-intranet)
starts with a generated config of N mobile nodes (home addresses 10.128.0.1 upwards, SPI 1000+i,
a 16-byte HMAC-MD5 key each). A load generator on node H (this file with --loadgen, run inside the
node) speaks the wire format only: for every node a Registration Request with a valid timestamp
identification and the MN-HA authentication extension, sent over UDP to 10.1.1.2:434 with at most
--window requests outstanding, counting the replies with code 0.

  * pass 1 creates the N bindings (each: host route into the TUN device, proxy ARP entry and a
    gratuitous ARP on the home link); passes 2.. re-register every node (binding refreshed). The
    headline rates are the first pass (new bindings) and the median re-registration pass;
  * the HA's host changes in both ways, side by side in the same run: "batched"
    (the default: the routes and proxy entries of a turn of the event loop, or of 32 changes, in
    one rtnetlink batch, the replies released by its acknowledgement; nodes/runtime/host/netlink_batch.py)
    and "unbatched" (config batch_host_changes: false: each change sent and acknowledged on its own
    before the next one, as before the batching); gratuitous ARPs are paced after the replies in both;
  * memory per binding: the HA process's RSS (VmRSS) after the first pass minus before it (the
    daemon already holds its N-node config), divided by N (kernel route and neighbour entries are
    not in it);
  * cost per registration: 1 / rate; the scaling figure is its ratio 10k / 1k (flat means ~1);
  * the HA process's CPU time per request in each pass (read from /proc by the load generator), and
    from it the capacity of one core (1 / CPU time per re-registration): on this shared 2-core
    machine the HA, the load generator and other runs compete, so the wall-clock rate can be below
    what the HA's core could do; the CPU time includes the kernel's work done in the HA's context
    (sending the reply through the world's veths, bridges and router);
  * the sans-I/O core alone (nodes/mip/ha.py HomeAgent.receive_datagram, no sockets, no netlink) in this
    process on the same requests, side by side, so the reader sees where the time goes.

Target (the project's): >= 5,000 authenticated registrations per second, new bindings
and re-registrations alike. With --profile the
HA daemon of the largest N runs under cProfile and the top functions are printed. The machine's
load average is recorded with the figures.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from ipaddress import IPv4Address
from pathlib import Path

HA_ADDR = "10.1.1.2"
LOADGEN_NODE, LOADGEN_ADDR = "h", "10.1.2.10"
FIRST_HOME = int(IPv4Address("10.128.0.1"))
FIRST_SPI = 1000
LIFETIME = 1800
TARGET_RPS = 5000
CHUNK = 500  # requests the load generator builds at a time


def node_entry(i: int) -> tuple[str, int, bytes]:
    """(home address, SPI, key) of emulated mobile node i; the same on both sides."""
    return str(IPv4Address(FIRST_HOME + i)), FIRST_SPI + i, hashlib.md5(f"mn-{i}".encode()).digest()


MODES = ("batched", "unbatched")


def ha_config(n: int, batched: bool = True) -> dict:
    return {"address": HA_ADDR, "home_network": "10.1.1.0/24", "max_lifetime": LIFETIME,
            "batch_host_changes": batched,
            "mobile_nodes": [{"home_address": h, "spi": spi, "key": key.hex()}
                             for h, spi, key in map(node_entry, range(n))]}


def build_requests(n: int, coa: str, now: float, bump: int = 0, first: int = 0) -> list[bytes]:
    """One authenticated Registration Request per node first..n-1, identification = now (NTP) + bump."""
    from nodes.wire.mip import EXT_MN_HA_AUTH, RegistrationRequest, append_auth, ntp_now
    ident = ntp_now(now) + bump
    out = []
    for i in range(first, n):
        home, spi, key = node_entry(i)
        req = RegistrationRequest(0, LIFETIME, home, HA_ADDR, coa, ident).encode()
        out.append(append_auth(req, EXT_MN_HA_AUTH, spi, key))
    return out


# ---- the load generator (runs inside node H) ------------------------------------------------------
def loadgen(n: int, passes: int, window: int, coa: str, timeout: float, ha_pid: int | None = None) -> dict:
    """Send every node's request once per pass, at most `window` outstanding; count replies by code."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    s.bind((coa, 0))
    s.connect((HA_ADDR, 434))
    results = []
    for p in range(passes):
        # requests are built a chunk ahead of sending, so their timestamps stay within the HA's
        # replay tolerance (7 s) however slow a pass is; building costs this process, not the HA
        requests = build_requests(min(n, CHUNK), coa, time.time(), bump=p)
        codes: dict[int, int] = {}
        sent = answered = 0
        s.settimeout(timeout)
        t0 = time.perf_counter()
        timed_out = False
        cpu0 = cpu_seconds(ha_pid) if ha_pid else None
        while answered < n:
            while sent < n and sent - answered < window:
                if sent == len(requests):
                    requests += build_requests(min(n, sent + CHUNK), coa, time.time(), bump=p, first=sent)
                s.send(requests[sent])
                sent += 1
            try:
                data = s.recv(2048)
            except (socket.timeout, TimeoutError):
                timed_out = True
                break
            answered += 1
            codes[data[1]] = codes.get(data[1], 0) + 1
        elapsed = time.perf_counter() - t0
        result = {"pass": p + 1, "sent": sent, "answered": answered, "codes": codes, "seconds": elapsed,
                  "accepted_per_s": codes.get(0, 0) / elapsed, "timed_out": timed_out}
        if ha_pid:  # the HA's CPU time in this pass (same /proc: node processes share the PID namespace)
            result["ha_cpu_us_per_request"] = round((cpu_seconds(ha_pid) - cpu0) / max(1, answered) * 1e6, 1)
        results.append(result)
        time.sleep(0.2)  # the HA's log and the kernel settle between passes
    return {"n": n, "passes": results}


# ---- the core alone, in this process -------------------------------------------------------------
def core_alone(n: int, passes: int) -> dict:
    from nodes.core import Addr
    from nodes.mip.auth import SecurityAssociation
    from nodes.mip.ha import HomeAgent, HomeAgentConfig, MobileNodeEntry
    entries = [MobileNodeEntry(IPv4Address(h), SecurityAssociation(spi, key)) for h, spi, key in map(node_entry, range(n))]
    core = HomeAgent(HomeAgentConfig(HA_ADDR, entries, home_iface="iha-home", max_lifetime=LIFETIME))
    where = Addr(LOADGEN_ADDR, 40000, HA_ADDR, 434)
    out = []
    for p in range(passes):
        now = time.time()
        requests = build_requests(n, LOADGEN_ADDR, now, bump=p)
        accepted = 0
        t0 = time.perf_counter()
        for raw in requests:
            core.receive_datagram(raw, where, now)
            accepted += core.drain_actions()[-1].payload[1] == 0
        elapsed = time.perf_counter() - t0
        out.append({"pass": p + 1, "accepted": accepted, "seconds": elapsed, "per_s": accepted / elapsed,
                    "us_per_registration": elapsed / n * 1e6})
    return {"n": n, "bindings": len(core.bindings), "passes": out}


# ---- the HA daemon in a world --------------------------------------------------------------------
def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def daemon_run(world, role, n: int, passes: int, window: int, profile: Path | None, mode: str = "batched") -> dict:
    from testbed.daemons import start_daemon
    name = f"ha-{n}-{mode}"
    cfg = ha_config(n, batched=mode == "batched")
    if profile is None:
        d = start_daemon(world, role.node, "daemons.home_agent", name=name, config=cfg, timeout=60)
    else:  # the same daemon under cProfile (written when it exits on SIGTERM)
        cfg_path = world.log_dir / f"{role.node}.{name}.config.json"
        cfg_path.write_text(json.dumps(cfg))
        ctl, events = world.run.path(f"{role.node}.{name}.ctl"), world.log_dir / f"{role.node}.{name}.events.jsonl"
        argv = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "nodes.daemons.home_agent", "--control", str(ctl),
                "--log-json", str(events), "--config", str(cfg_path)]
        proc = world.start(role.node, name, argv, ready=r"^READY$", timeout=60)
        from testbed.daemons import Daemon
        d = Daemon(role.node, name, proc, ctl, events)
    try:
        pid = d.process.pid
        rss0, cpu0 = rss_kib(pid), cpu_seconds(pid)
        cmd = [sys.executable, "-m", "benchmarks.bench_ha_registrations", "--loadgen", str(n), "--passes",
               str(passes), "--window", str(window), "--ha-pid", str(pid)]
        res = world.run_in(LOADGEN_NODE, cmd, timeout=600)
        if res.returncode:
            raise RuntimeError(f"the load generator failed: {res.stdout}{res.stderr}")
        gen = json.loads(res.stdout.strip().splitlines()[-1])
        rss1, cpu1 = rss_kib(pid), cpu_seconds(pid)
        requests = sum(p["answered"] for p in gen["passes"])
        status = d.status()
        first, rest = gen["passes"][0], gen["passes"][1:] or gen["passes"][:1]
        rate = statistics.median(p["accepted_per_s"] for p in rest)
        cpu_rest = [p["ha_cpu_us_per_request"] for p in rest if "ha_cpu_us_per_request" in p]
        cpu_us = statistics.median(cpu_rest) if cpu_rest else None
        return {
            "n": n, "mode": mode, "passes": gen["passes"],
            "first_pass_per_s": round(first["accepted_per_s"]), "reregistration_per_s": round(rate),
            "us_per_registration": round(1e6 / rate, 2) if rate else None,
            "ha_cpu_us_per_request_all_passes": round((cpu1 - cpu0) / max(1, requests) * 1e6, 1),
            "ha_cpu_us_per_reregistration": cpu_us,
            "one_core_capacity_per_s": round(1e6 / cpu_us) if cpu_us else None,
            "ha_cpu_us_first_pass": gen["passes"][0].get("ha_cpu_us_per_request"),
            "bindings": len(status["bindings"]),
            "rss_kib_before": rss0, "rss_kib_after": rss1,
            "bytes_per_binding": round((rss1 - rss0) * 1024 / max(1, len(status["bindings"]))),
            "ha_counters": {k: v for k, v in status["counters"].items() if not k.startswith("accepted")},
            "ha_errors": status.get("errors"),
        }
    finally:
        d.stop()


def print_profile(path: Path, top: int = 25) -> None:
    import pstats
    if not path.exists():
        print(f"no profile at {path}")
        return
    pstats.Stats(str(path)).sort_stats("tottime").print_stats(top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[1000, 5000, 10000])
    ap.add_argument("--passes", type=int, default=4, help="passes over all nodes (the first creates the bindings)")
    ap.add_argument("--window", type=int, default=64, help="requests outstanding at most")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs of every population and mode, interleaved; the median run by new-binding rate is reported")
    ap.add_argument("--profile", action="store_true", help="run the largest N's HA daemon under cProfile (first mode)")
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                    help="how the HA sends its host changes: batched, unbatched (each on its own), or both side by side")
    ap.add_argument("--loadgen", type=int, metavar="N", help=argparse.SUPPRESS)  # inside node H
    ap.add_argument("--timeout", type=float, default=2.0, help=argparse.SUPPRESS)
    ap.add_argument("--ha-pid", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.loadgen:
        print(json.dumps(loadgen(args.loadgen, args.passes, args.window, LOADGEN_ADDR, args.timeout, args.ha_pid)))
        return

    from testbed.scenario import load_named
    from testbed.world import World
    from benchmarks.common import publish, start_bench_run

    core = {}
    load_core = os.getloadavg()
    for n in args.nodes:
        core[n] = core_alone(n, args.passes)
        r = statistics.median(p["per_s"] for p in core[n]["passes"][1:] or core[n]["passes"])
        core[n]["reregistration_per_s"] = round(r)
        core[n]["us_per_registration"] = round(1e6 / r, 2)
        core[n]["first_pass_per_s"] = round(core[n]["passes"][0]["per_s"])
        print(f"core alone, {n:6d} nodes: first pass {core[n]['first_pass_per_s']:7d}/s, "
              f"re-registration {core[n]['reregistration_per_s']:7d}/s ({core[n]['us_per_registration']} us each)",
              flush=True)

    run = start_bench_run()
    sc = load_named("mobility-open-intranet")
    role = sc.roles["ha"]
    daemon: dict[str, dict[int, dict]] = {m: {} for m in args.modes}
    load_before = os.getloadavg()
    profile = None
    try:
        world = World.for_scenario(run, Path(tempfile.mkdtemp(prefix="bench-ha-")), sc)
        try:
            runs: dict[str, dict[int, list]] = {m: {n: [] for n in args.nodes} for m in args.modes}
            for r in range(args.repeat):
                for n in args.nodes:
                    for mode in args.modes:  # the modes alternate, so they meet the same load
                        profiled = args.profile and r == 0 and n == max(args.nodes) and mode == args.modes[0]
                        profile = world.log_dir / f"ha-{n}.prof" if profiled else profile
                        d = daemon_run(world, role, n, args.passes, args.window, profile if profiled else None, mode)
                        runs[mode][n].append(d)
                        print(f"HA daemon,  {n:6d} nodes, {mode:9s}: new bindings {d['first_pass_per_s']:6d}/s, "
                              f"re-registration {d['reregistration_per_s']:6d}/s, HA CPU {d['ha_cpu_us_first_pass']} us per "
                              f"new binding, {d['ha_cpu_us_per_reregistration']} us per re-registration, "
                              f"{d['bytes_per_binding']} B RSS per binding, load {os.getloadavg()[0]:.2f}", flush=True)
            for mode in args.modes:  # with --repeat: the median run by new-binding rate, and every run's rates
                for n in args.nodes:
                    ordered = sorted(runs[mode][n], key=lambda d: d["first_pass_per_s"])
                    daemon[mode][n] = {**ordered[len(ordered) // 2],
                                       "runs_first_pass_per_s": [d["first_pass_per_s"] for d in runs[mode][n]],
                                       "runs_reregistration_per_s": [d["reregistration_per_s"] for d in runs[mode][n]],
                                       "runs_ha_cpu_us_first_pass": [d["ha_cpu_us_first_pass"] for d in runs[mode][n]]}
        finally:
            world.stop()
    finally:
        run.close()
    load_after = os.getloadavg()
    if profile is not None:
        print_profile(profile)

    lo, hi = min(args.nodes), max(args.nodes)
    main_mode = args.modes[0]
    dm = daemon[main_mode]
    scaling = {"daemon_ratio": round(dm[hi]["us_per_registration"] / dm[lo]["us_per_registration"], 3),
               "core_ratio": round(core[hi]["us_per_registration"] / core[lo]["us_per_registration"], 3),
               "daemon_first_pass_ratio": round(dm[lo]["first_pass_per_s"] / max(1, dm[hi]["first_pass_per_s"]), 3)}
    side_by_side = {}
    if len(args.modes) == 2:
        for n in args.nodes:
            b, u = daemon["batched"][n], daemon["unbatched"][n]
            side_by_side[str(n)] = {
                "new_bindings_per_s": {"batched": b["first_pass_per_s"], "unbatched": u["first_pass_per_s"],
                                       "ratio": round(b["first_pass_per_s"] / max(1, u["first_pass_per_s"]), 2)},
                "reregistrations_per_s": {"batched": b["reregistration_per_s"], "unbatched": u["reregistration_per_s"]},
                "ha_cpu_us_per_new_binding": {"batched": b["ha_cpu_us_first_pass"], "unbatched": u["ha_cpu_us_first_pass"]},
            }
    figures = {
        "what": "authenticated MIPv4 registrations (HMAC-MD5 MN-HA auth, timestamp identification) per second "
                "answered with code 0 by our HA daemon: new bindings (first pass) and re-registrations; load "
                "generator on H over UDP; host changes batched and unbatched side by side; the HA core alone beside it",
        "window": args.window, "passes": args.passes, "repeat": args.repeat, "cpus": os.cpu_count(), "modes": args.modes,
        "load_average_core_run": [round(x, 2) for x in load_core],
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "daemon": {str(n): v for n, v in dm.items()},
        **{f"daemon_{m}": {str(n): v for n, v in daemon[m].items()} for m in args.modes[1:]},
        "batched_vs_unbatched": side_by_side,
        "core_alone": {str(n): v for n, v in core.items()},
        f"per_registration_cost_ratio_{hi}_to_{lo}": scaling,
        "target_per_s": TARGET_RPS,
        "meets_target": all(d["reregistration_per_s"] >= TARGET_RPS for d in dm.values()),
        "meets_target_new_bindings": all(d["first_pass_per_s"] >= TARGET_RPS for d in dm.values()),
    }
    for mode in args.modes:
        for n in args.nodes:
            d, c = daemon[mode][n], core[n]
            print(f"{n:6d} nodes, {mode:9s}: new bindings {d['first_pass_per_s']:6d}/s (HA CPU {d['ha_cpu_us_first_pass']} us), "
                  f"re-registration {d['reregistration_per_s']:6d}/s ({d['us_per_registration']:.1f} us; HA CPU "
                  f"{d['ha_cpu_us_per_reregistration']} us = {d['one_core_capacity_per_s']}/s on one core); core alone "
                  f"{c['reregistration_per_s']:6d}/s ({c['us_per_registration']:.1f} us); {d['bytes_per_binding']} B per binding")
    for n, row in side_by_side.items():
        nb, cpu = row["new_bindings_per_s"], row["ha_cpu_us_per_new_binding"]
        b, u = daemon["batched"][int(n)], daemon["unbatched"][int(n)]
        print(f"{int(n):6d} nodes: new bindings batched {nb['batched']}/s {b['runs_first_pass_per_s']} vs unbatched "
              f"{nb['unbatched']}/s {u['runs_first_pass_per_s']} (x{nb['ratio']}); HA CPU per new binding "
              f"{cpu['batched']} us vs {cpu['unbatched']} us; re-registration {b['reregistration_per_s']}/s vs "
              f"{u['reregistration_per_s']}/s")
    print(f"per-registration cost {hi}/{lo} ({main_mode}): daemon x{scaling['daemon_ratio']}, core x{scaling['core_ratio']}; "
          f"target >= {TARGET_RPS}/s ({main_mode}): re-registrations {'met' if figures['meets_target'] else 'NOT met'}, "
          f"new bindings {'met' if figures['meets_target_new_bindings'] else 'NOT met'} "
          f"(largest N: {dm[hi]['first_pass_per_s']}/s new, {dm[hi]['reregistration_per_s']}/s re-registered); "
          f"load average {figures['load_average_before'][0]} before, {figures['load_average_after'][0]} after")
    publish("ha_registrations", figures)


if __name__ == "__main__":
    main()
