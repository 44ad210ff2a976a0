"""Micro-benchmark of the ESP SA core: encrypt and decrypt of 1400-byte inner packets.

CORE-ONLY figures: no TUN device, no sockets, no system calls, one thread. They bound what the
userspace data plane can do; they are not comparable 1:1 with an end-to-end iperf3 figure
(strongSwan kernel-libipsec measured here at ~400 Mbit/s AES-GCM, ~250 AES-CBC/SHA-256).

    .venv/bin/python -m benchmarks.bench_esp_sa [--seconds 1.0]

Prints a table and writes reports/bench/esp_sa.json.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import cryptography

from benchmarks.common import publish
from nodes.ipsec.esp_sa import ALGORITHMS, make_sa
from nodes.wire.ipv4 import ipv4_udp

PACKET_SIZE = 1400


def _rate(fn, seconds: float) -> float:
    """Calls of `fn` per second, over batches until `seconds` have passed."""
    count, batch, start = 0, 2000, time.perf_counter()
    while True:
        for _ in range(batch):
            fn()
        count += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed


def bench_algorithm(name: str, seconds: float) -> dict:
    alg = ALGORITHMS[name]
    enc, integ = os.urandom(alg.enc_keymat_len), os.urandom(alg.integ_key_len)
    out = make_sa(name, enc, integ, 0x1000, "out", 0.0)
    inb = make_sa(name, enc, integ, 0x1000, "in", 0.0, replay_window=1024)
    inner = ipv4_udp("10.1.0.5", "192.168.1.20", 40000, 5201, bytes(PACKET_SIZE - 28))
    assert len(inner) == PACKET_SIZE
    # each ESP packet may be decrypted once only (anti-replay), so the decrypt-only figure
    # runs over a window-disabled SA
    replay_off = make_sa(name, enc, integ, 0x1000, "in", 0.0, replay_window=0)
    sample = out.encrypt(inner, 0.0)
    rates = {
        "encrypt": _rate(lambda: out.encrypt(inner, 0.0), seconds),
        "decrypt": _rate(lambda: replay_off.decrypt(sample, 0.0), seconds),
        "encrypt+decrypt": _rate(lambda: inb.decrypt(out.encrypt(inner, 0.0), 0.0), seconds),
    }
    return {
        op: {"packets_per_s": round(pps), "mbit_per_s": round(pps * PACKET_SIZE * 8 / 1e6, 1)}
        for op, pps in rates.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per algorithm and operation")
    args = parser.parse_args()
    results = {name: bench_algorithm(name, args.seconds) for name in ALGORITHMS}
    report = {
        "benchmark": "esp_sa",
        "scope": "core-only: ESP SA encrypt/decrypt in one Python thread, no TUN, no sockets",
        "packet_size": PACKET_SIZE,
        "mbit_counts": "inner IPv4 packet bytes",
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "machine": platform.machine(),
        "results": results,
    }
    print(f"ESP SA core-only throughput, {PACKET_SIZE}-byte inner packets (no TUN, no sockets)")
    print(f"{'algorithm':32} {'operation':16} {'packets/s':>10} {'Mbit/s':>9}")
    for name, ops in results.items():
        for op, r in ops.items():
            print(f"{name:32} {op:16} {r['packets_per_s']:>10} {r['mbit_per_s']:>9}")
    publish("esp_sa", report)


if __name__ == "__main__":
    main()
