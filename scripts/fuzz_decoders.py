#!/usr/bin/env python3
"""Fuzz the wire decoders at scale (not part of CI): every decoder gets N inputs (default 1,000,000),
random bytes and mutations of valid messages built by scapy (an independent encoder), and may only
answer with nodes.wire.errors.DecodeError. Anything else is a crash: it is counted, and the first
inputs of each kind are saved under reports/fuzz/ for replay.

    .venv/bin/python scripts/fuzz_decoders.py [--inputs 1000000] [--seed 1] [--only ikev2,esp,mip,ipv4]

Prints inputs per decoder, inputs/s, decode errors by reason, crashes; writes reports/fuzz/fuzz.json.
Target: 0 crashes.
"""
from __future__ import annotations

import argparse
import json
import random
import time
import traceback
from collections import Counter
from pathlib import Path

from scapy.contrib.ikev2 import IKEv2, IKEv2_Nonce, IKEv2_SA, IKEv2_Proposal, IKEv2_Transform, IKEv2_KE, IKEv2_Notify
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.mobileip import MobileIP, MobileIPRRP, MobileIPRRQ, MobileIPTunnelData

from nodes.wire import esp as wesp
from nodes.wire import ikev2 as wike
from nodes.wire import ipv4 as wip
from nodes.wire import mip as wmip
from nodes.wire.errors import DecodeError

OUT = Path(__file__).resolve().parent.parent / "reports" / "fuzz"


def ike_seeds() -> list[bytes]:
    # scapy counts neither the transforms nor the key-length attribute: both set by hand
    sa = IKEv2_SA(prop=IKEv2_Proposal(trans_nb=3, trans=IKEv2_Transform(transform_type="Encryption", transform_id=12,
                                                                        length=12, key_length=128)
                                      / IKEv2_Transform(transform_type="PRF", transform_id=5)
                                      / IKEv2_Transform(transform_type="GroupDesc", transform_id=19)))
    init = IKEv2(init_SPI=b"\x11" * 8, exch_type=34, flags="Initiator") / sa / IKEv2_KE(group=19, ke=b"k" * 64) \
        / IKEv2_Nonce(nonce=b"n" * 32) / IKEv2_Notify(type=16388, notify=b"h" * 20)
    info = IKEv2(init_SPI=b"\x11" * 8, resp_SPI=b"\x22" * 8, exch_type=37, flags="Response")
    return [bytes(init), bytes(info)]


def mip_seeds() -> list[bytes]:
    rrq = MobileIP(type=1) / MobileIPRRQ(flags=0x02, lifetime=600, homeaddr="10.1.1.100", haaddr="10.1.1.2",
                      coaddr="192.0.2.1", id=0xE8A1B2C311223344) / (b"\x20\x14" + b"\x00\x00\x01\x00" + b"a" * 16)
    rrp = MobileIP(type=3) / MobileIPRRP(code=0, lifetime=600, homeaddr="10.1.1.100", haaddr="10.1.1.2", id=1)
    tunnel = MobileIP(type=4) / MobileIPTunnelData(nexthdr=4) / IP(src="10.1.1.100", dst="10.1.2.10") / ICMP()
    adv = ICMP(type=9, code=0) / (b"\x01\x02\x07\x08" + bytes([192, 0, 2, 1]) + b"\x00\x00\x00\x00"
                                  + b"\x10\x0a\x00\x01\x07\x08\x90\x00" + bytes([192, 0, 2, 1]))
    return [bytes(rrq), bytes(rrp), bytes(tunnel), bytes(adv), bytes(ICMP(type=10))]


def ipv4_seeds() -> list[bytes]:
    return [bytes(IP(src="10.1.1.100", dst="10.1.2.10") / UDP(sport=1, dport=434) / (b"x" * 24)),
            bytes(IP(src="192.0.2.1", dst="10.1.1.2", proto=4) / IP(src="10.1.2.10", dst="10.1.1.100") / ICMP())]


def esp_seeds() -> list[bytes]:
    body = b"\x00\x00\x10\x00" + b"\x00\x00\x00\x01" + b"i" * 8 + b"c" * 32 + b"t" * 16
    return [body, b"\x00\x00\x00\x00" + bytes(ike_seeds()[1]), b"\xff"]


def _ike(data: bytes):
    if len(data) >= 28 and data[0] & 1:  # half the inputs get a consistent length, to reach the payloads
        data = data[:24] + len(data).to_bytes(4, "big") + data[28:]
    wike.decode_header(data)
    return wike.decode_message(data)


def _first_that_decodes(decoders, data: bytes):
    """Every decoder sees the input (a crash in any counts); the outcome is the first that decodes,
    else the last decoder's error."""
    error = None
    for decode in decoders:
        try:
            decode(data)
        except DecodeError as exc:
            error = exc
    if error is not None and len(decoders) == 1:
        raise error
    return error


MIP_DECODERS = {1: wmip.RegistrationRequest.decode, 3: wmip.RegistrationReply.decode, 4: wmip.TunnelData.decode,
                9: wmip.AgentAdvertisement.decode, 10: wmip.AgentSolicitation.decode}


def _mip(data: bytes):
    """The decoder the first byte (message or ICMP type) selects, as a daemon would; others too for odd types."""
    decode = MIP_DECODERS.get(data[0]) if data else None
    if decode is not None:
        return decode(data)
    _first_that_decodes(list(MIP_DECODERS.values()), data)
    raise DecodeError("unknown-type")


def _ipv4(data: bytes):
    packet = wip.IPv4.decode(data, verify_checksum=False)
    if packet.proto == 17:
        wip.UDP.decode(packet.payload)
    elif packet.proto == 1:
        wip.ICMP.decode(packet.payload)


def _esp(data: bytes):
    wesp.decode_udp_encap(data)
    error = _first_that_decodes([lambda d, iv=iv, icv=icv: wesp.ESPPacket.decode(d, iv, icv)
                                 for iv, icv in ((8, 16), (16, 16), (0, 12))], data)
    if error is not None:
        raise error


DECODERS = {"ikev2": (_ike, ike_seeds), "mip": (_mip, mip_seeds), "ipv4": (_ipv4, ipv4_seeds), "esp": (_esp, esp_seeds)}


def mutate(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 6)):
        op = rng.random()
        if op < 0.5 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op < 0.65 and data:
            del data[rng.randrange(len(data)):][:rng.randint(1, 8)]
        elif op < 0.8:
            pos = rng.randint(0, len(data))
            data[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op < 0.9 and len(data) >= 2:  # a length or count field pushed to an edge
            pos = rng.randrange(len(data) - 1)
            data[pos:pos + 2] = rng.choice([b"\x00\x00", b"\xff\xff", b"\x00\x01", b"\x7f\xff"])
        else:
            data = data[:rng.randint(0, len(data))]
    return bytes(data)


def fuzz(name: str, n: int, rng: random.Random) -> dict:
    decode, seeds_of = DECODERS[name]
    seeds = seeds_of()
    reasons: Counter[str] = Counter()
    crashes: Counter[str] = Counter()
    saved = 0
    t0 = time.monotonic()
    for i in range(n):
        data = rng.randbytes(rng.randint(0, 200)) if i % 4 == 0 else mutate(rng, rng.choice(seeds))
        try:
            decode(data)
            reasons["decoded"] += 1
        except DecodeError as exc:
            reasons[exc.reason] += 1
        except Exception as exc:  # noqa: BLE001 - a crash is what this script looks for
            kind = f"{type(exc).__name__} at {traceback.extract_tb(exc.__traceback__)[-1].name}"
            crashes[kind] += 1
            if crashes[kind] <= 3:
                OUT.mkdir(parents=True, exist_ok=True)
                (OUT / f"{name}-crash-{saved}.bin").write_bytes(data)
                saved += 1
    seconds = time.monotonic() - t0
    return {"inputs": n, "seconds": round(seconds, 1), "inputs_per_s": round(n / seconds),
            "outcomes": dict(reasons.most_common(12)), "crashes": dict(crashes), "crash_count": sum(crashes.values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", default=",".join(DECODERS))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    results = {}
    for name in args.only.split(","):
        results[name] = fuzz(name, args.inputs, rng)
        r = results[name]
        print(f"{name}: {r['inputs']} inputs in {r['seconds']} s ({r['inputs_per_s']}/s), crashes: {r['crash_count']} {r['crashes']}",
              flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "fuzz.json").write_text(json.dumps({"seed": args.seed, "decoders": results}, indent=2))
    print(f"written to {OUT / 'fuzz.json'}")
    raise SystemExit(1 if any(r["crash_count"] for r in results.values()) else 0)


if __name__ == "__main__":
    main()
