"""World bring-up and teardown: the full world up, a daemon ready and R reaching the Internet.

    sudo .venv/bin/python -m benchmarks.bench_world [--runs 7]
Target: bring-up <= 1.5 s (median); bare Mininet builds a world of this size in about 0.5 s here.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


from benchmarks.common import publish, start_bench_run, summary
from testbed.daemons import start_daemon
from testbed.scenario import load_named
from testbed.world import World


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    run = start_bench_run()
    scenario = load_named("bare-world")
    up, down, built = [], [], []
    try:
        for _ in range(args.runs):
            t0 = time.monotonic()
            world = World.for_scenario(run, Path(tempfile.mkdtemp(prefix="bench-world-")), scenario)
            start_daemon(world, "h", "instruments.sink", args=["--udp", "7"])
            if not world.ping("r", world.plan.address("pub"), timeout=2):
                raise SystemExit("the world came up but R cannot reach the public server")
            up.append(time.monotonic() - t0)
            built.append(world.built_in)
            t1 = time.monotonic()
            world.stop()
            down.append(time.monotonic() - t1)
    finally:
        run.close()
    hosts = len(scenario.plan().nodes)
    publish("world", {
        "what": f"world of {hosts} nodes and {len(scenario.plan().segments)} bridges: build, one daemon ready, R reaches pub",
        "bring_up_s": summary(up), "world_only_s": summary(built), "teardown_s": summary(down),
        "target_bring_up_s": 1.5, "meets_target": summary(up)["median"] <= 1.5,
    })


if __name__ == "__main__":
    main()
