"""The command line the scripted client/server instruments share (addrproto, multihomed_udp,
acl_service): `serve --port N [options]` runs the server (it prints "listening" when ready);
`call HOST PORT [--timeout S]` runs the client once, prints its result as one JSON line and exits
0 when the result is "ok", 1 otherwise."""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable


def main(prog: str, doc: str, serve: Callable[..., None], call: Callable[[str, int, float], dict],
         port: int, timeout: float, serve_options: dict[str, dict] | None = None) -> int:
    p = argparse.ArgumentParser(prog=f"python -m {prog}", description=doc.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, default=port)
    for flag, kw in (serve_options or {}).items():
        s.add_argument(flag, **kw)
    c = sub.add_parser("call")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("--timeout", type=float, default=timeout)
    a = vars(p.parse_args())
    if a.pop("cmd") == "serve":
        serve(**a)
        return 0
    out = call(a["host"], a["port"], a["timeout"])
    print(json.dumps(out), flush=True)
    return 0 if out.get("result") == "ok" else 1
