"""The common frame of every daemon: config, structured log, control socket, readiness, shutdown.

A daemon is `python -m nodes.<name> --control PATH [--log-json PATH] [--config FILE]`. It prints
`READY` on stdout once it serves (the harness waits for that line) and exits cleanly on SIGTERM.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Awaitable, Callable

from nodes.config_schema import load_json
from nodes.runtime.control import ControlServer, Handler
from nodes.runtime.logs import EventLog

# setup(args, log) -> (handlers for the control socket, an async cleanup)
Setup = Callable[[argparse.Namespace, EventLog], Awaitable[tuple[dict[str, Handler], Callable[[], Awaitable[None]]]]]


def base_parser(name: str, about: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m nodes.{name}", description=about)
    p.add_argument("--control", required=True, help="path of the control socket (JSON lines)")
    p.add_argument("--log-json", help="file for structured log lines")
    p.add_argument("--config", type=Path, help="JSON config file")
    return p


def load_config(path: Path | None) -> dict:
    """The --config file's JSON object ({} without one). A missing file, bad JSON or another top
    level raises the project's one ConfigError (nodes/config_schema.py), naming the file, what was
    expected and what was found; being a SystemExit, it ends the daemon with that message and
    status 1."""
    return {} if path is None else load_json(path)


async def _serve(name: str, args: argparse.Namespace, setup: Setup) -> None:
    log = EventLog(name, args.log_json)
    handlers, cleanup = await setup(args, log)
    control = ControlServer(args.control, handlers)
    await control.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log("ready", control=args.control)
    sys.stdout.write("READY\n")  # one write (stdout may be unbuffered): the log thread's lines never split it
    sys.stdout.flush()
    await stop.wait()
    log("stopping")
    await control.close()
    await cleanup()
    log.close()


def run(name: str, args: argparse.Namespace, setup: Setup) -> None:
    asyncio.run(_serve(name, args, setup))
