"""An echo sink: listens on TCP and UDP ports, echoes what it gets and records who sent it.

Cases use it to observe what reaches a node (black-box reachability and filtering checks):
`status` lists every TCP connection and UDP datagram with the peer's address and port.

    python -m nodes.instruments.sink --control PATH --tcp 22,80 --udp 500,5060
    python -m nodes.instruments.sink --control PATH --config sink.json     ({"tcp": [7], "udp": [7]})
"""
from __future__ import annotations

import asyncio

from nodes.runtime import daemon
from nodes.runtime.clock import SYSTEM  # wall(): timestamps lined up with the world's timeline


def _ports(text: str | None) -> list[int]:
    return [int(p) for p in text.split(",") if p] if text else []


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, port: int, seen: list, log):
        self.port, self.seen, self.log = port, seen, log

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.seen.append({"proto": "udp", "port": self.port, "peer": addr[0], "peer_port": addr[1],
                          "bytes": len(data), "t": SYSTEM.wall()})
        self.log("udp", port=self.port, peer=f"{addr[0]}:{addr[1]}", bytes=len(data))
        self.transport.sendto(data, addr)


async def setup(args, log):
    config = daemon.load_config(args.config)
    tcp_ports = _ports(args.tcp) + [int(p) for p in config.get("tcp", [])]
    udp_ports = _ports(args.udp) + [int(p) for p in config.get("udp", [])]
    seen: list[dict] = []
    closers = []

    async def on_tcp(reader, writer, port):
        peer = writer.get_extra_info("peername")
        entry = {"proto": "tcp", "port": port, "peer": peer[0], "peer_port": peer[1], "bytes": 0, "t": SYSTEM.wall()}
        seen.append(entry)
        log("tcp", port=port, peer=f"{peer[0]}:{peer[1]}")
        try:
            while data := await reader.read(65536):
                entry["bytes"] += len(data)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    loop = asyncio.get_running_loop()
    for port in tcp_ports:
        server = await asyncio.start_server(lambda r, w, p=port: on_tcp(r, w, p), host=args.bind, port=port)
        closers.append(server.close)
    for port in udp_ports:
        transport, _ = await loop.create_datagram_endpoint(lambda p=port: _Udp(p, seen, log), local_addr=(args.bind, port))
        closers.append(transport.close)

    async def cleanup():
        for close in closers:
            close()

    return {"status": lambda req: {"received": seen}}, cleanup


def main() -> None:
    p = daemon.base_parser("sink", __doc__.splitlines()[0])
    p.add_argument("--tcp", help="comma-separated TCP ports")
    p.add_argument("--udp", help="comma-separated UDP ports")
    p.add_argument("--bind", default="0.0.0.0")
    daemon.run("sink", p.parse_args(), setup)


if __name__ == "__main__":
    main()
