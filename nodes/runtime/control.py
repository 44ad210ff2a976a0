"""The control socket of a daemon: JSON lines over a Unix stream socket.

Request:  {"cmd": "status"}            (one JSON object per line)
Reply:    {"ok": true, "result": {...}} or {"ok": false, "error": "what went wrong"}

Every daemon answers `status` and `ping`; a daemon adds its own commands by passing handlers.
"""
from __future__ import annotations

import asyncio
import json
import os
from typing import Any, Awaitable, Callable

Handler = Callable[[dict], Any | Awaitable[Any]]


class ControlServer:
    def __init__(self, path: str, handlers: dict[str, Handler]):
        self.path = path
        self.handlers = {"ping": lambda req: "pong", **handlers}
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)

    async def close(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()
        if os.path.exists(self.path):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write((json.dumps(await self._answer(line), default=str) + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _answer(self, line: bytes) -> dict:
        try:
            req = json.loads(line)
        except ValueError as exc:
            return {"ok": False, "error": f"not a JSON line: {exc}"}
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            return {"ok": False, "error": 'expected an object with a string "cmd"'}
        handler = self.handlers.get(req["cmd"])
        if handler is None:
            return {"ok": False, "error": f"unknown command {req['cmd']!r}; known: {sorted(self.handlers)}"}
        try:
            result = handler(req)
            if asyncio.iscoroutine(result):
                result = await result
        except Exception as exc:  # a failing command must not kill the daemon
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"ok": True, "result": result}
