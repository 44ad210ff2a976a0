"""A Mobile IP registration probe run inside a node: send one registration request (well formed or
deliberately wrong) to a foreign or home agent and print the reply as one JSON line.

    python -m nodes.instruments.mipprobe --to 192.0.2.1 --home 10.1.1.100 --ha 10.1.1.2 --coa 192.0.2.1 \\
        --spi 1000 --key 6d6e... [--lifetime 1800] [--ident now|stale|N] [--flags T,D] \\
        [--defect none|no-auth|bad-extension|unknown-mandatory] [--bind 10.1.1.100] [--timeout 2]

Cases use it for the registration negatives of RFC 5944 3.8.2.1 and 3.8.3 (wrong key, stale
identification, lifetime too long, poorly formed requests, an unreachable home agent). It speaks the wire
format only (nodes.wire.mip), never a protocol core. Exit 0 with a reply, 1 without.
"""
from __future__ import annotations

import argparse
import json
import socket
import struct
import sys

from nodes.runtime.clock import SYSTEM  # wall(): identifications are timestamps (RFC 5944 5.7.1)
from nodes.wire.errors import DecodeError
from nodes.wire.mip import (
    EXT_MN_HA_AUTH, MIP_PORT, NTP_UNIX_OFFSET, RegistrationReply, RegistrationRequest, RequestFlags,
    append_auth, ntp_now, ntp_to_unix,
)


def build(args) -> tuple[bytes, int]:
    now = SYSTEM.wall()
    if args.ident == "now":
        ident = ntp_now(now)
    elif args.ident == "stale":
        ident = ntp_now(now - 3600)
    else:
        ident = int(args.ident, 0)
    flags = 0
    for name in filter(None, args.flags.split(",")):
        flags |= RequestFlags[name]
    req = RegistrationRequest(flags, args.lifetime, args.home, args.ha, args.coa, ident).encode()
    if args.defect == "bad-extension":  # a skippable extension whose length runs past the end
        req += bytes([200, 10, 0, 0])
    elif args.defect == "unknown-mandatory":  # type below 128 that nobody knows: discard silently
        req += bytes([120, 2, 0, 0])
    if args.defect != "no-auth":
        req = append_auth(req, EXT_MN_HA_AUTH, args.spi, bytes.fromhex(args.key))
    return req, ident


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m nodes.instruments.mipprobe", description=__doc__.splitlines()[0])
    p.add_argument("--to", required=True, help="agent to send to (FA on the link, or the HA)")
    p.add_argument("--home", required=True)
    p.add_argument("--ha", required=True)
    p.add_argument("--coa", required=True)
    p.add_argument("--spi", type=int, default=1000)
    p.add_argument("--key", required=True, help="MN-HA key, hex")
    p.add_argument("--lifetime", type=int, default=1800)
    p.add_argument("--ident", default="now", help="now, stale (an hour old) or a number")
    p.add_argument("--flags", default="", help="request flags by name, comma-separated: S,B,D,M,G,T")
    p.add_argument("--defect", default="none", choices=["none", "no-auth", "bad-extension", "unknown-mandatory"])
    p.add_argument("--bind", default=None, help="local address (default: the kernel's choice)")
    p.add_argument("--port", type=int, default=0, help="local UDP port (default: any)")
    p.add_argument("--timeout", type=float, default=2.0)
    args = p.parse_args()

    data, ident = build(args)
    result = {"sent_identification": ident, "request_bytes": len(data)}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)  # RFC 3024: a visitor sends TTL 255
        s.bind((args.bind or "0.0.0.0", args.port))
        s.settimeout(args.timeout)
        t0 = SYSTEM.now()
        s.sendto(data, (args.to, MIP_PORT))
        deadline = t0 + args.timeout
        while True:
            try:
                s.settimeout(max(0.001, deadline - SYSTEM.now()))
                raw, peer = s.recvfrom(65535)
            except (socket.timeout, TimeoutError):
                result["reply"] = None
                print(json.dumps(result))
                sys.exit(1)
            if raw[:1] != b"\x03" or len(raw) < 20:
                continue
            ident_back = struct.unpack("!Q", raw[12:20])[0]
            if ident_back & 0xFFFFFFFF != ident & 0xFFFFFFFF:
                continue
            break
    elapsed = SYSTEM.now() - t0
    try:
        reply = RegistrationReply.decode(raw)
        decoded = True
    except DecodeError:
        reply, decoded = RegistrationReply.decode_fixed(raw), False
    result.update({
        "reply": {"code": reply.code, "lifetime": reply.lifetime, "home_address": str(reply.home_address),
                  "home_agent": str(reply.home_agent), "identification": reply.identification,
                  "ident_high_unix": (reply.identification >> 32) - NTP_UNIX_OFFSET,
                  "ident_low_echoed": (reply.identification & 0xFFFFFFFF) == (ident & 0xFFFFFFFF),
                  "ident_unix": ntp_to_unix(reply.identification),
                  "extensions": [type(e).__name__ for e in reply.extensions] if decoded else None,
                  "decoded": decoded},
        "from": f"{peer[0]}:{peer[1]}", "seconds": round(elapsed, 6), "now": SYSTEM.wall(),
    })
    print(json.dumps(result))


if __name__ == "__main__":
    main()
