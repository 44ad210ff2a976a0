"""An address-based access-control service (draft-gupta Appendix C context: services on H that admit
only intranet sources, e.g. NFS exports or tcp_wrappers): a TCP server that greets a client whose
source address lies in one of the allowed prefixes and refuses any other, and its client.

    python -m nodes.instruments.acl_service serve --port 7171 --allow 10.1.0.0/16
    python -m nodes.instruments.acl_service call 10.1.2.10 7171 [--timeout 2]      (one JSON line)
"""
from __future__ import annotations

import ipaddress
import json
import socket

from nodes.instruments import serve_call


def serve(port: int, allow: list[str]) -> None:
    nets = [ipaddress.IPv4Network(a) for a in allow]
    srv = socket.create_server(("0.0.0.0", port))
    print("listening", flush=True)
    while True:
        conn, peer = srv.accept()
        with conn:
            admitted = any(ipaddress.IPv4Address(peer[0]) in n for n in nets)
            conn.sendall(f"{'WELCOME' if admitted else 'DENIED'} {peer[0]}\n".encode())
        print(json.dumps({"peer": peer[0], "admitted": admitted}), flush=True)


def call(host: str, port: int, timeout: float) -> dict:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            line = s.makefile("r").readline().strip()
    except OSError as exc:
        return {"result": f"error: {exc}"}
    verdict, _, seen_as = line.partition(" ")
    return {"result": "ok" if verdict == "WELCOME" else verdict.lower() or "no-answer", "seen_as": seen_as}


def main() -> int:
    return serve_call.main("nodes.instruments.acl_service", __doc__, serve, call, port=7171, timeout=2.0,
                           serve_options={"--allow": {"action": "append", "required": True, "help": "an allowed source prefix (repeatable)"}})


if __name__ == "__main__":
    raise SystemExit(main())
