"""Mobile IPv4 across the VPN gateway: handoff disruption and IKE messages per move, per scenario and nesting.

    sudo .venv/bin/python -m benchmarks.bench_traversal [--moves 20] [--dwell 0.3] [--scenarios ...]

The baseline the RFC 5265 work must beat. For each scenario (one
world each, the scenario's own implementations; `--impl gw=strongswan` puts strongSwan in G) the
mobile VPN node (nodes/daemons/mobile_vpn_node.py) moves back and forth between fn1 and fn2
(co-located care-of addresses) --moves times after one warm-up move. A 1 kHz UDP probe stream runs
from H to the address the intranet knows R by: the home address (2.1, MIP inside IPsec) or the VPN
tunnel's inner address (2.2 to 2.5, IPsec inside MIP), or the i-HoA (RFC 5265 cvc: x-MIP, IPsec,
i-MIP; the RFC 5265 row, zero IKE per outside move expected). Per move: the outage (the longest arrival
gap around the move, testbed.traversal_checks.outage: `total`, and `after_up` from carrier up to
the first probe after it) and the IKE messages, counted by the node and on the wire at G_e
(tcpdump + tshark, the same capture filter as the cases: IKE also inside the MIP tunnel). Medians and p95 go to
reports/bench/traversal.json with the machine's load average (with --impl: traversal-<role>-<profile>.json).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


from benchmarks.common import publish, start_bench_run, summary
from testbed.capture import start_capture
from testbed.profiles import start_roles
from testbed.scenario import load_named
from testbed.mip_checks import wait_for
from testbed.traversal_checks import (
    IKE_BPF_IN_MIP, IKE_SA_INIT, ike_messages, rfc5265_layers_up, start_probe, visit, wait_both_layers,
)
from testbed.world import World

SCENARIOS = ["mipvpn-ha-intranet", "mipvpn-ha-dmz", "mipvpn-combined", "mipvpn-ha-outside", "mipvpn-local-link",
             "rfc5265-cvc"]
STOPS = [("fn2", "192.0.2.228"), ("fn1", "192.0.2.100")]


def measure_moves(world, rx, go, moves: int, dwell: float, label: str, stops=STOPS) -> list[dict]:
    """R moves back and forth between `stops` ((network, care-of address) pairs) --moves times after
    one warm-up move; `go(net, coa)` makes one move and returns its record (visit()'s: to, t_down,
    t_up, the outage figures). IKE messages at G_e per move (tcpdump + tshark, from one move's
    carrier drop to the next's) are added as `ike_messages_wire`. The counted moves' records."""
    cap = start_capture(world, "g", "g-dmz", world.log_dir / "captures", bpf=IKE_BPF_IN_MIP, name="g-dmz-ike")
    samples = []
    for i in range(moves + 1):  # move 0 is the warm-up
        net, coa = stops[i % 2]
        mv = go(net, coa)
        mv.pop("status", None)
        time.sleep(dwell)
        if i:
            samples.append(mv)
            print(f"  {label} #{i:2d} -> {net}: after_up {mv['after_up_s'] * 1000:7.1f} ms, "
                  f"total {mv['total_s'] * 1000:7.1f} ms, lost {mv['lost']}", flush=True)
    t_end = time.time()
    cap.stop()
    ends = [m["t_down"] for m in samples[1:]] + [t_end]
    wire = ike_messages(cap.path, [(m["t_down"], e) for m, e in zip(samples, ends)])
    for m, w in zip(samples, wire):
        m["ike_messages_wire"] = len(w)
        m["ike_sa_init_wire"] = sum(1 for x in w if x["exchange"] == IKE_SA_INIT)  # a new IKE SA's first exchange
    return samples


def move_figures(samples: list[dict]) -> dict:
    """Median, p95 (and the rest of summary()) of the outage and of IKE messages per move."""
    return {"after_up_s": summary([m["after_up_s"] for m in samples]),
            "total_s": summary([m["total_s"] for m in samples]),
            "ike_messages_per_move_wire": summary([m["ike_messages_wire"] for m in samples]),
            "ike_sa_init_per_move_wire": summary([m["ike_sa_init_wire"] for m in samples])}


def run_scenario(run, name: str, impls: dict, moves: int, dwell: float, gap: float, stops=STOPS) -> dict:
    sc = load_named(name).with_impls(impls)
    logs = Path(tempfile.mkdtemp(prefix=f"bench-traversal-{name}-"))
    world = World.for_scenario(run, logs, sc)
    try:
        roles = start_roles(world, sc.roles.values())
        mvn = roles["mn"]
        s = wait_both_layers(mvn, stops[1][1])
        nesting = s["nesting"]
        if nesting == "rfc5265":  # the i-HoA, once i-MIP is registered through the tunnel
            nesting = wait_for(lambda: rfc5265_layers_up(mvn), what="x-MIP, the VPN tunnel and i-MIP all up")["mode"]
            target = sc.roles["mn"].config["inner"]["home_address"]
        elif nesting == "mip-inside-ipsec":
            target = sc.roles["mn"].config["mn"]["home_address"]
        else:
            target = s["vpn"]["virtual_ip"]
        rx, _tx = start_probe(world, target, gap=gap)
        samples = measure_moves(world, rx, lambda net, coa: visit(world, mvn, rx, None, net, coa),
                                moves, dwell, name, stops)
        counted = [m["ike_messages"] for m in mvn.status()["moves"]][-len(samples):]
        for m, c in zip(samples, counted):
            m["ike_messages_node"] = c
        print(f"logs of {name} in {logs}", flush=True)
    finally:
        world.stop()
    return {"nesting": nesting, "probe_to": target, "gateway": sc.roles["gw"].impl, **move_figures(samples),
            "ike_messages_per_move_node": summary([m["ike_messages_node"] for m in samples]),
            "moves": samples}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=20, help="counted moves per scenario (after one warm-up)")
    ap.add_argument("--dwell", type=float, default=0.3, help="seconds on a network after the stream resumed")
    ap.add_argument("--gap", type=float, default=0.005, help="arrival gaps longer than this are recorded")
    ap.add_argument("--scenarios", nargs="+", default=SCENARIOS, choices=SCENARIOS)
    ap.add_argument("--impl", action="append", default=[], metavar="ROLE=PROFILE", help="e.g. gw=strongswan")
    args = ap.parse_args()
    impls = dict(spec.split("=", 1) for spec in args.impl)
    run = start_bench_run()
    load_before = os.getloadavg()
    results = {}
    try:
        for name in args.scenarios:
            print(f"{name}: {args.moves} moves fn1 <-> fn2", flush=True)
            results[name] = run_scenario(run, name, impls, args.moves, args.dwell, args.gap)
    finally:
        run.close()
    for name, r in results.items():
        print(f"{name:20s} {r['nesting']:17s} after up: median {r['after_up_s']['median'] * 1000:7.1f} ms, "
              f"p95 {r['after_up_s']['p95'] * 1000:7.1f} ms; total: median {r['total_s']['median'] * 1000:7.1f} ms; "
              f"IKE messages per move (wire) median {r['ike_messages_per_move_wire']['median']}")
    suffix = "".join(f"-{role}-{profile}" for role, profile in sorted(impls.items()))
    publish(f"traversal{suffix}", {
        "what": "per move fn1 <-> fn2 (co-located care-of addresses): the outage of a 1 kHz UDP probe stream H -> "
                "R's intranet-facing address, and IKE messages seen at G_e (tshark) and counted by the node",
        "moves_per_scenario": args.moves, "dwell_s": args.dwell, "gap_threshold_s": args.gap, "impl": impls,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
        "scenarios": results,
    })


if __name__ == "__main__":
    main()
