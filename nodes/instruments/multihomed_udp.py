"""The multi-homed UDP server of draft-gupta Appendix C: a request/response service on UDP (NFS-like)
on a host with two addresses that answers from its *other* address H' (IP_PKTINFO chooses the
source), and its client, which matches answers by transaction id from whatever source they come.

"If H were multi-homed and had such an implementation, it could respond to an NFS mount request
(a UDP message) with source address H' even if the request were sent to H. In this situation, G
may be unable to carry out the reverse NAPT translation (unless it ignores the source for UDP
responses) and R may not be able to use H as an NFS server."

    python -m nodes.instruments.multihomed_udp serve --port 2049 --reply-from 10.1.2.11
    python -m nodes.instruments.multihomed_udp call 10.1.2.10 2049 [--timeout 2]    (one JSON line)
"""
from __future__ import annotations

import json
import os
import socket
import struct

from nodes.instruments import serve_call
from nodes.runtime.clock import SYSTEM

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


def serve(port: int, reply_from: str) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    src = struct.pack("=I4s4s", 0, socket.inet_aton(reply_from), socket.inet_aton("0.0.0.0"))
    print("listening", flush=True)
    while True:
        data, peer = s.recvfrom(2048)
        xid = data.split()[1] if data.startswith(b"XID ") and len(data.split()) > 1 else b"?"
        s.sendmsg([b"XID " + xid + b" OK " + reply_from.encode()], [(socket.IPPROTO_IP, IP_PKTINFO, src)], 0, peer)
        print(json.dumps({"peer": f"{peer[0]}:{peer[1]}", "xid": xid.decode(errors="replace"),
                          "answered_from": reply_from}), flush=True)


def call(host: str, port: int, timeout: float) -> dict:
    xid = os.urandom(4).hex()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # unconnected: any source may answer
        s.settimeout(0.3)
        deadline = SYSTEM.now() + timeout
        tries = 0
        while SYSTEM.now() < deadline:
            s.sendto(f"XID {xid} GETATTR".encode(), (host, port))
            tries += 1
            try:
                data, src = s.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError as exc:  # ICMP port unreachable from a NAPT that could not translate back
                return {"result": f"error: {exc}", "xid": xid, "tries": tries}
            if data.split()[:2] == [b"XID", xid.encode()]:
                return {"result": "ok", "xid": xid, "from": src[0], "asked": host, "tries": tries}
    return {"result": "timeout", "xid": xid, "asked": host, "tries": tries}


def main() -> int:
    return serve_call.main("nodes.instruments.multihomed_udp", __doc__, serve, call, port=2049, timeout=2.0,
                           serve_options={"--reply-from": {"required": True, "help": "the other address H' the answers leave from"}})


if __name__ == "__main__":
    raise SystemExit(main())
