"""A UDP probe stream for handoff measurements: a sender at a fixed rate, a receiver that records
gaps in arrival.

    python -m nodes.instruments.probe --control PATH --config probe.json
    {"listen": 9000}                                              receive only
    {"send": {"to": "10.1.1.100", "port": 9000, "rate": 1000}}     send only (from: optional source address)
    {"listen": 9000, "gap": 0.005}                                 gaps longer than 5 ms are reported
    {"listen": 9000, "bind": "10.1.1.100"}                         receive on that local address only

Each datagram carries a sequence number and the sender's time. All nodes share the machine's
clock, so arrival gaps can be lined up with the harness's move timestamps. `status` reports sent
and received counts, loss, reordering and every gap with its start, end and the sequences lost.
"""
from __future__ import annotations

import asyncio
import socket
import struct

from nodes.runtime import daemon
from nodes.runtime.clock import SYSTEM  # wall(): timestamps lined up with the world's timeline

PROBE = struct.Struct("!4sQd")  # magic, sequence, sender time
MAGIC = b"TBPR"


class Receiver(asyncio.DatagramProtocol):
    def __init__(self, gap: float, log):
        self.gap, self.log = gap, log
        self.received = self.reordered = self.malformed = 0
        self.highest = -1
        self.last_arrival: float | None = None
        self.gaps: list[dict] = []

    def datagram_received(self, data, addr):
        now = SYSTEM.wall()
        if len(data) < PROBE.size or data[:4] != MAGIC:
            self.malformed += 1
            return
        _, seq, _sent = PROBE.unpack_from(data)
        self.received += 1
        if seq <= self.highest:
            self.reordered += 1
            return
        if self.last_arrival is not None and now - self.last_arrival > self.gap:
            entry = {"from_t": self.last_arrival, "to_t": now, "seconds": round(now - self.last_arrival, 6),
                     "lost": seq - self.highest - 1, "resumed_seq": seq}
            self.gaps.append(entry)
            self.log("gap", **entry)
        self.highest, self.last_arrival = seq, now

    def status(self) -> dict:
        return {"received": self.received, "highest_seq": self.highest, "reordered": self.reordered,
                "malformed": self.malformed, "lost": max(0, self.highest + 1 - self.received),
                "last_arrival": self.last_arrival, "gap_threshold": self.gap, "gaps": self.gaps}


class Sender:
    def __init__(self, to: str, port: int, rate: float, source: str | None, log):
        self.to, self.port, self.interval = to, port, 1.0 / rate
        self.source, self.log = source, log
        self.sent = self.errors = 0
        self.last_error = ""
        self.task: asyncio.Task | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        local = (self.source, 0) if self.source else None
        transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=local,
                                                           family=socket.AF_INET)
        start = SYSTEM.now()
        try:
            while True:
                due = start + self.sent * self.interval
                delay = due - SYSTEM.now()
                if delay > 0:
                    await asyncio.sleep(delay)
                try:  # a route may be missing mid-handoff: count and go on
                    transport.sendto(PROBE.pack(MAGIC, self.sent, SYSTEM.wall()), (self.to, self.port))
                except OSError as exc:
                    self.errors += 1
                    self.last_error = str(exc)
                self.sent += 1
        finally:
            transport.close()

    def status(self) -> dict:
        if self.task is not None and self.task.done() and not self.task.cancelled() and self.task.exception():
            raise RuntimeError(f"the probe sender stopped: {self.task.exception()!r}")
        return {"sent": self.sent, "to": f"{self.to}:{self.port}", "rate": round(1 / self.interval),
                "send_errors": self.errors, "last_error": self.last_error}


async def setup(args, log):
    config = daemon.load_config(args.config)
    loop = asyncio.get_running_loop()
    closers = []
    receiver = sender = None
    if "listen" in config:
        receiver = Receiver(float(config.get("gap", 0.005)), log)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)  # no drops while the loop is busy
        sock.bind((config.get("bind") or "0.0.0.0", int(config["listen"])))
        transport, _ = await loop.create_datagram_endpoint(lambda: receiver, sock=sock)
        closers.append(transport.close)
    if "send" in config:
        s = config["send"]
        sender = Sender(s["to"], int(s["port"]), float(s.get("rate", 1000)), s.get("from"), log)
        sender.task = asyncio.create_task(sender.run())
        closers.append(sender.task.cancel)

    def status(_req):
        return {"receiver": receiver.status() if receiver else None, "sender": sender.status() if sender else None}

    async def cleanup():
        for close in closers:
            close()

    return {"status": status}, cleanup


def main() -> None:
    p = daemon.base_parser("probe", __doc__.splitlines()[0])
    daemon.run("probe", p.parse_args(), setup)


if __name__ == "__main__":
    main()
