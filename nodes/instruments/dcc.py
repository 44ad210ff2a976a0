"""A scripted IRC client pair for a DCC SEND (draft-gupta Appendix C names IRC): the sender
offers a file with `PRIVMSG <peer> :\\x01DCC SEND <name> <address as a number> <port> <size>\\x01`
and waits on that port; the receiver, told the address and port by the payload, connects there and
takes the file (acknowledging with 4-byte counts, as DCC clients do). Both talk to a real IRC
server (ngircd) first.

    python -m nodes.instruments.dcc receive SERVER --nick bob [--timeout 10]
        registers, prints "registered", waits for one DCC SEND, takes the file, prints one JSON line
    python -m nodes.instruments.dcc send SERVER --nick alice --to bob --file PATH [--timeout 8]
        offers PATH to `to`, prints one JSON line (result ok when the receiver took every byte);
        a receiver that cannot connect says so on IRC (NOTICE ... DCC-RESULT), which ends the wait
"""
from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import select
import socket
import struct
from pathlib import Path

from nodes.runtime.clock import SYSTEM

PORT = 6667
CONNECT_TIMEOUT = 2.0  # seconds the receiver tries to reach the offered address


class Irc:
    def __init__(self, server: str, nick: str, timeout: float):
        self.sock = socket.create_connection((server, PORT), timeout=timeout)
        self.buf = b""
        self.send(f"NICK {nick}", f"USER {nick} 0 * :{nick}")
        while " 001 " not in self.line():
            pass

    def send(self, *lines: str) -> None:
        self.sock.sendall("".join(line + "\r\n" for line in lines).encode())

    def line(self) -> str:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the IRC server closed the connection")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\r\n", 1)
        text = raw.decode(errors="replace")
        if text.startswith("PING"):
            self.send("PONG" + text[4:])
        return text


def receive(server: str, nick: str, timeout: float) -> dict:
    irc = Irc(server, nick, timeout)
    print("registered", flush=True)
    irc.sock.settimeout(timeout)
    deadline = SYSTEM.now() + timeout
    while SYSTEM.now() < deadline:
        text = irc.line()
        if "\x01DCC SEND " not in text:
            continue
        fields = text.split("\x01DCC SEND ", 1)[1].rstrip("\x01").split()
        name, addr, port, size = fields[0], str(ipaddress.IPv4Address(int(fields[1]))), int(fields[2]), int(fields[3])
        out = {"offer": f"{addr}:{port}", "name": name, "size": size, "sender": text.split("!", 1)[0].lstrip(":")}
        digest = hashlib.sha256()
        got = 0
        try:
            with socket.create_connection((addr, port), timeout=CONNECT_TIMEOUT) as data:
                data.settimeout(3)
                while got < size:
                    chunk = data.recv(65536)
                    if not chunk:
                        break
                    digest.update(chunk)
                    got += len(chunk)
                    data.sendall(struct.pack("!I", got & 0xFFFFFFFF))
        except OSError as exc:
            out["error"] = f"connecting to the offered {addr}:{port}: {exc}"
        out.update(received=got, sha256=digest.hexdigest(), result="ok" if got == size else "incomplete")
        if out["result"] != "ok":  # tell the sender, who waits for a connection that will not come
            irc.send(f"NOTICE {out['sender']} :DCC-RESULT {out.get('error', out['result'])}")
        return out
    return {"result": "no-offer", "error": f"no DCC SEND within {timeout} s"}


def send(server: str, nick: str, to: str, path: Path, timeout: float) -> dict:
    payload = path.read_bytes()
    irc = Irc(server, nick, timeout)
    me = irc.sock.getsockname()[0]  # what the application believes its address is
    lst = socket.create_server(("0.0.0.0", 0))
    lst.settimeout(timeout)
    port = lst.getsockname()[1]
    irc.send(f"PRIVMSG {to} :\x01DCC SEND {path.name} {int(ipaddress.IPv4Address(me))} {port} {len(payload)}\x01")
    out = {"offered": f"{me}:{port}", "size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    deadline = SYSTEM.now() + timeout
    while True:  # the receiver connects, or says on IRC that it could not
        left = deadline - SYSTEM.now()
        ready = [irc.sock] if b"\r\n" in irc.buf else select.select([lst, irc.sock], [], [], max(left, 0))[0]
        if lst in ready:
            conn, peer = lst.accept()
            break
        if irc.sock in ready and "DCC-RESULT" in (text := irc.line()):
            out.update(result="no-connection", error="the receiver: " + text.split("DCC-RESULT", 1)[1].strip())
            return out
        if left <= 0:
            out.update(result="no-connection", error=f"nobody connected to {me}:{port} within {timeout} s")
            return out
    with conn:
        conn.settimeout(timeout)
        conn.sendall(payload)
        acked = 0
        while acked < len(payload):
            ack = conn.recv(4)
            if len(ack) < 4:
                break
            (acked,) = struct.unpack("!I", ack)
    out.update(peer=f"{peer[0]}:{peer[1]}", acked=acked, result="ok" if acked == len(payload) else "incomplete")
    irc.send("QUIT :done")
    return out


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m nodes.instruments.dcc", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("receive")
    r.add_argument("server")
    r.add_argument("--nick", default="bob")
    r.add_argument("--timeout", type=float, default=10.0)
    s = sub.add_parser("send")
    s.add_argument("server")
    s.add_argument("--nick", default="alice")
    s.add_argument("--to", default="bob")
    s.add_argument("--file", type=Path, required=True)
    s.add_argument("--timeout", type=float, default=8.0)
    a = p.parse_args()
    out = receive(a.server, a.nick, a.timeout) if a.cmd == "receive" else send(a.server, a.nick, a.to, a.file, a.timeout)
    print(json.dumps(out), flush=True)
    return 0 if out["result"] == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
