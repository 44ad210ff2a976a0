"""A UDP probe stream for measuring handoff disruption: one side sends numbered datagrams at a
fixed rate (1 kHz by default), the other records when they arrive and the gaps between them.

    python -m nodes.udpstream --control PATH --send 10.1.1.100:9000 [--rate 1000] [--bind ADDR]
    python -m nodes.udpstream --control PATH --recv 9000 [--bind ADDR] [--gap 0.005]

Status of a receiver: datagrams received, the highest sequence number, losses, and every gap
at least `--gap` long with its start and end (Unix time), so a case can match gaps to moves.
"""
from __future__ import annotations

import asyncio
import socket
import struct
import time

from nodes.runtime import daemon

HEADER = struct.Struct("!Qd")  # sequence number, send time


async def sender(args, log):
    host, _, port = args.send.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if args.bind:
        sock.bind((args.bind, 0))
    sock.setblocking(False)
    state = {"sent": 0, "errors": 0, "rate": args.rate}
    interval = 1.0 / args.rate
    pad = b"\0" * max(0, args.size - HEADER.size)

    async def run():
        start = time.monotonic()
        while True:
            due = int((time.monotonic() - start) / interval) + 1
            while state["sent"] < due:
                try:
                    sock.sendto(HEADER.pack(state["sent"], time.time()) + pad, (host, int(port)))
                except OSError:  # no route for a moment, buffer full: the gap shows at the receiver
                    state["errors"] += 1
                state["sent"] += 1
            await asyncio.sleep(max(0.0, start + state["sent"] * interval - time.monotonic()))

    task = asyncio.create_task(run())

    async def cleanup():
        task.cancel()
        sock.close()

    return {"status": lambda req: dict(state)}, cleanup


async def receiver(args, log):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    sock.bind((args.bind or "0.0.0.0", args.recv))
    sock.setblocking(False)
    state = {"received": 0, "highest": -1, "duplicates_or_late": 0, "gaps": [], "max_gap": 0.0, "last_at": None,
             "first_at": None}
    loop = asyncio.get_running_loop()

    def readable():
        while True:
            try:
                data = sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            if len(data) < HEADER.size:
                continue
            seq, _sent = HEADER.unpack_from(data)
            now = time.time()
            last = state["last_at"]
            if last is not None:
                gap = now - last
                state["max_gap"] = max(state["max_gap"], gap)
                if gap >= args.gap:
                    state["gaps"].append({"from": round(last, 6), "to": round(now, 6), "seconds": round(gap, 6),
                                          "lost": max(0, seq - state["highest"] - 1)})
            else:
                state["first_at"] = now
            state["last_at"] = now
            state["received"] += 1
            if seq > state["highest"]:
                state["highest"] = seq
            else:
                state["duplicates_or_late"] += 1

    loop.add_reader(sock.fileno(), readable)

    def status(_req):
        lost = state["highest"] + 1 - state["received"] + state["duplicates_or_late"]
        return {**state, "lost": lost}

    async def cleanup():
        loop.remove_reader(sock.fileno())
        sock.close()

    return {"status": status}, cleanup


def main() -> None:
    p = daemon.base_parser("udpstream", __doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--send", metavar="HOST:PORT")
    mode.add_argument("--recv", type=int, metavar="PORT")
    p.add_argument("--bind", help="local address")
    p.add_argument("--rate", type=float, default=1000.0, help="datagrams per second (sender)")
    p.add_argument("--size", type=int, default=64, help="datagram size in bytes (sender)")
    p.add_argument("--gap", type=float, default=0.005, help="record arrival gaps at least this long (receiver)")
    args = p.parse_args()
    daemon.run("udpstream", args, sender if args.send else receiver)


if __name__ == "__main__":
    main()
