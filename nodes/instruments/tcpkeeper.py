"""A TCP session keeper: opens one connection to an echo server and keeps it busy.

It writes a chunk every `--interval` seconds (a known byte pattern), reads the echo back and
checks it, and never reconnects: a session that survives handoffs shows `connects == 1`,
no `error`, and `echoed` catching up with `sent`. Gaps in the echo stream (handoff disruption)
are kept. Status over the control socket.

    python -m nodes.instruments.tcpkeeper --control PATH --connect 10.1.2.10:7 --bind 10.1.1.100
"""
from __future__ import annotations

import asyncio
import socket

from nodes.runtime import daemon
from nodes.runtime.clock import SYSTEM  # wall(): timestamps lined up with the world's timeline

PATTERN_MOD = 251  # byte i of the stream is i % 251: a shifted or lost byte shows at once


def pattern(offset: int, length: int) -> bytes:
    return bytes((offset + i) % PATTERN_MOD for i in range(length))


async def setup(args, log):
    host, _, port = args.connect.rpartition(":")
    state = {"connected": False, "connects": 0, "sent": 0, "echoed": 0, "mismatch_at": None, "error": None,
             "local": None, "peer": f"{host}:{port}", "gaps": [], "max_gap": 0.0, "last_echo_at": None,
             "started_at": SYSTEM.wall()}
    local = (args.bind, 0) if args.bind else None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, int(port), local_addr=local), timeout=args.connect_timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        raise SystemExit(f"tcpkeeper: cannot connect to {args.connect} from {args.bind or 'any'}: {exc!r}")
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    state.update(connected=True, connects=1, local="%s:%d" % writer.get_extra_info("sockname"))
    log("connected", local=state["local"], peer=state["peer"])

    async def write_loop():
        try:
            while True:
                writer.write(pattern(state["sent"], args.chunk))
                state["sent"] += args.chunk
                await writer.drain()
                await asyncio.sleep(args.interval)
        except (OSError, ConnectionError) as exc:
            fail(f"write: {exc!r}")

    async def read_loop():
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    fail("the echo server closed the connection")
                    return
                now = SYSTEM.wall()
                if data != pattern(state["echoed"], len(data)) and state["mismatch_at"] is None:
                    state["mismatch_at"] = state["echoed"]
                    log("mismatch", offset=state["echoed"])
                last = state["last_echo_at"]
                if last is not None:
                    gap = now - last
                    state["max_gap"] = max(state["max_gap"], gap)
                    if gap >= args.gap_threshold:
                        state["gaps"].append({"from": round(last, 6), "to": round(now, 6), "seconds": round(gap, 6)})
                        log("gap", seconds=round(gap, 6))
                state["last_echo_at"] = now
                state["echoed"] += len(data)
        except (OSError, ConnectionError) as exc:
            fail(f"read: {exc!r}")

    def fail(reason: str) -> None:
        if state["error"] is None:
            state["error"] = reason
            state["connected"] = False
            log("session-lost", reason=reason, sent=state["sent"], echoed=state["echoed"])

    tasks = [asyncio.create_task(write_loop()), asyncio.create_task(read_loop())]

    def status(_req):
        return {**state, "outstanding": state["sent"] - state["echoed"], "now": SYSTEM.wall()}

    async def cleanup():
        for t in tasks:
            t.cancel()
        writer.close()

    return {"status": status}, cleanup


def main() -> None:
    p = daemon.base_parser("tcpkeeper", __doc__.splitlines()[0])
    p.add_argument("--connect", required=True, help="HOST:PORT of a TCP echo server")
    p.add_argument("--bind", help="local address to bind (e.g. the mobile node's home address)")
    p.add_argument("--interval", type=float, default=0.02, help="seconds between chunks")
    p.add_argument("--chunk", type=int, default=100, help="bytes per chunk")
    p.add_argument("--gap-threshold", type=float, default=0.05, help="record echo gaps at least this long")
    p.add_argument("--connect-timeout", type=float, default=5.0)
    daemon.run("tcpkeeper", p.parse_args(), setup)


if __name__ == "__main__":
    main()
