"""A minimal vici client: the message codec and the Unix socket protocol charon's vici plugin speaks
(strongSwan's src/libcharon/plugins/vici/README.md).

A packet is a 32-bit length, a type byte, for named types a name (8-bit length), then a message:
elements SECTION_START name / SECTION_END / KEY_VALUE name value(16-bit length) / LIST_START name /
LIST_ITEM value / LIST_END. Commands are answered by one CMD_RESPONSE; list-sas and list-conns
stream EVENTs before it, to a client that registered for them.
"""
from __future__ import annotations

import socket
import struct
from pathlib import Path


class ViciError(RuntimeError):
    pass


_CMD_REQUEST, _CMD_RESPONSE, _CMD_UNKNOWN, _EVENT_REGISTER, _EVENT_UNREGISTER = 0, 1, 2, 3, 4
_EVENT_CONFIRM, _EVENT_UNKNOWN, _EVENT = 5, 6, 7
_NAMED = {_CMD_REQUEST, _EVENT_REGISTER, _EVENT_UNREGISTER, _EVENT}
_SECTION_START, _SECTION_END, _KEY_VALUE, _LIST_START, _LIST_ITEM, _LIST_END = 1, 2, 3, 4, 5, 6


def vici_encode(msg: dict) -> bytes:
    out = bytearray()
    for key, value in msg.items():
        k = key.encode()
        if isinstance(value, dict):
            out += bytes([_SECTION_START, len(k)]) + k + vici_encode(value) + bytes([_SECTION_END])
        elif isinstance(value, (list, tuple)):
            out += bytes([_LIST_START, len(k)]) + k
            for item in value:
                b = item if isinstance(item, bytes) else str(item).encode()
                out += bytes([_LIST_ITEM]) + struct.pack("!H", len(b)) + b
            out += bytes([_LIST_END])
        else:
            b = value if isinstance(value, bytes) else str(value).encode()
            out += bytes([_KEY_VALUE, len(k)]) + k + struct.pack("!H", len(b)) + b
    return bytes(out)


def vici_decode(data: bytes) -> dict:
    root: dict = {}
    stack = [root]
    current_list: list | None = None
    i = 0

    def name() -> str:
        nonlocal i
        n = data[i]
        s = data[i + 1:i + 1 + n].decode(errors="replace")
        i += 1 + n
        return s

    def value() -> str:
        nonlocal i
        (n,) = struct.unpack_from("!H", data, i)
        s = data[i + 2:i + 2 + n].decode(errors="replace")
        i += 2 + n
        return s

    while i < len(data):
        t = data[i]
        i += 1
        if t == _SECTION_START:
            sub: dict = {}
            stack[-1][name()] = sub
            stack.append(sub)
        elif t == _SECTION_END:
            stack.pop()
        elif t == _KEY_VALUE:
            k = name()
            stack[-1][k] = value()
        elif t == _LIST_START:
            current_list = []
            stack[-1][name()] = current_list
        elif t == _LIST_ITEM:
            assert current_list is not None
            current_list.append(value())
        elif t == _LIST_END:
            current_list = None
        else:
            raise ViciError(f"vici: unknown element type {t} at offset {i - 1}")
    return root


class Vici:
    """Talks to one charon's vici socket (a Unix socket reachable from any network namespace)."""

    def __init__(self, path: Path, timeout: float = 10.0):
        self.path, self.timeout = str(path), timeout

    def _connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        return s

    @staticmethod
    def _send(s: socket.socket, ptype: int, name: str | None = None, msg: dict | None = None) -> None:
        body = bytes([ptype])
        if ptype in _NAMED:
            n = (name or "").encode()
            body += bytes([len(n)]) + n
        body += vici_encode(msg or {})
        s.sendall(struct.pack("!I", len(body)) + body)

    @staticmethod
    def _recv(s: socket.socket) -> tuple[int, str | None, dict]:
        def exactly(n: int) -> bytes:
            buf = b""
            while len(buf) < n:
                chunk = s.recv(n - len(buf))
                if not chunk:
                    raise ViciError("vici: charon closed the connection")
                buf += chunk
            return buf

        (length,) = struct.unpack("!I", exactly(4))
        body = exactly(length)
        ptype, i, name = body[0], 1, None
        if ptype in _NAMED:
            n = body[1]
            name, i = body[2:2 + n].decode(), 2 + n
        return ptype, name, vici_decode(body[i:])

    def request(self, cmd: str, msg: dict | None = None) -> dict:
        with self._connect() as s:
            self._send(s, _CMD_REQUEST, cmd, msg)
            ptype, _, reply = self._recv(s)
        if ptype != _CMD_RESPONSE:
            raise ViciError(f"vici: charon does not know the command {cmd!r}")
        return reply

    def stream(self, cmd: str, event: str, msg: dict | None = None) -> list[dict]:
        """A command whose answer comes as events (list-sas, list-conns) before the response."""
        events = []
        with self._connect() as s:
            self._send(s, _EVENT_REGISTER, event)
            ptype, _, _ = self._recv(s)
            if ptype != _EVENT_CONFIRM:
                raise ViciError(f"vici: charon refused the event {event!r}")
            self._send(s, _CMD_REQUEST, cmd, msg)
            while True:
                ptype, name, reply = self._recv(s)
                if ptype == _EVENT and name == event:
                    events.append(reply)
                elif ptype == _CMD_RESPONSE:
                    break
                elif ptype == _CMD_UNKNOWN:
                    raise ViciError(f"vici: charon does not know the command {cmd!r}")
            self._send(s, _EVENT_UNREGISTER, event)
        return events

