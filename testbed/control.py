"""Client of a daemon's control socket (JSON lines over a Unix socket)."""
from __future__ import annotations

import json
import socket

from testbed.processes import patience


class ControlError(RuntimeError):
    pass


def call(path: str, cmd: str, timeout: float = 5.0, **args) -> object:
    """Send one command, return its result; a daemon's error becomes ControlError."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(patience(timeout))
        try:
            s.connect(str(path))
        except OSError as exc:
            raise ControlError(f"cannot reach the control socket {path}: {exc}; is the daemon running?") from None
        s.sendall((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise ControlError(f"{path} closed the connection before answering {cmd!r}")
            buf += chunk
    reply = json.loads(buf)
    if not reply.get("ok"):
        raise ControlError(f"{cmd!r} failed at {path}: {reply.get('error')}")
    return reply["result"]
