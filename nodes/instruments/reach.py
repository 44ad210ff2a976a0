"""A reachability probe run inside a node: does a TCP connection or a UDP echo get through?

    python -m nodes.instruments.reach tcp 203.0.113.70 22 [--timeout 1]     exit 0: connected
    python -m nodes.instruments.reach udp 203.0.113.70 500 [--timeout 1]    exit 0: the datagram came back
Exit 1 means no answer within the timeout, 2 a refusal (RST or ICMP unreachable).
The result is also printed as one JSON line.
"""
from __future__ import annotations

import argparse
import json
import socket
import sys

from nodes.runtime.clock import SYSTEM


def probe(proto: str, host: str, port: int, timeout: float, payload: bytes = b"testbed-probe") -> dict:
    t0 = SYSTEM.now()
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.settimeout(timeout)
        try:
            s.connect((host, port))
            local = s.getsockname()
            if proto == "udp":
                s.send(payload)
                s.recv(65536)
            result = "ok"
        except socket.timeout:
            result, local = "timeout", None
        except (ConnectionRefusedError, OSError) as exc:
            result, local = f"refused: {exc.strerror or exc}", None
    return {"proto": proto, "host": host, "port": port, "result": result, "local": local,
            "seconds": round(SYSTEM.now() - t0, 4)}


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m nodes.instruments.reach", description=__doc__.splitlines()[0])
    p.add_argument("proto", choices=["tcp", "udp"])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--timeout", type=float, default=1.0)
    a = p.parse_args()
    out = probe(a.proto, a.host, a.port, a.timeout)
    print(json.dumps(out))
    return {"ok": 0, "timeout": 1}.get(out["result"], 2)


if __name__ == "__main__":
    sys.exit(main())
