"""A scripted protocol that carries its own address and port in its payload (draft-gupta Appendix C:
"application protocols [that] carry network address information ... as part of the application
payload"), named as such: no Debian program plays PPTP or H.323 here, so this stands for them.

The client (on R) listens on a TCP port of its own, opens a control connection to the server (on H)
and sends `CALLBACK <its address> <its port>`, the address being its control connection's local
address (what the application believes it is). The server connects back to that address and port
and says HELLO; then it reports on the control connection `OK` or `ERR <reason>`. No NAT helper
knows this protocol, so through NAPT the callback goes to an address H cannot reach.

    python -m nodes.instruments.addrproto serve --port 7070             (prints "listening", then a JSON line per call)
    python -m nodes.instruments.addrproto call 10.1.2.10 7070 [--timeout 3]    (one JSON line)
"""
from __future__ import annotations

import json
import socket
import threading

from nodes.instruments import serve_call

CALLBACK_TIMEOUT = 2.0  # seconds the server tries to reach the address it was given


def serve(port: int, bind: str) -> None:
    srv = socket.create_server((bind, port), reuse_port=False)
    print("listening", flush=True)
    while True:
        conn, peer = srv.accept()
        threading.Thread(target=_one_call, args=(conn, peer), daemon=True).start()


def _one_call(conn: socket.socket, peer) -> None:
    with conn:
        conn.settimeout(5)
        try:
            line = conn.makefile("r").readline().split()
        except OSError:
            return
        entry = {"peer": f"{peer[0]}:{peer[1]}", "request": " ".join(line)}
        if len(line) != 3 or line[0] != "CALLBACK":
            entry["result"] = "ERR expected CALLBACK <address> <port>"
        else:
            try:
                with socket.create_connection((line[1], int(line[2])), timeout=CALLBACK_TIMEOUT) as back:
                    back.sendall(b"HELLO\n")
                entry["result"] = "OK"
            except (OSError, ValueError) as exc:
                entry["result"] = f"ERR callback to {line[1]}:{line[2]}: {exc}"
        print(json.dumps(entry), flush=True)
        try:
            conn.sendall((entry["result"] + "\n").encode())
        except OSError:
            pass


def call(host: str, port: int, timeout: float) -> dict:
    """Ask the server to call back; it answers on the control connection once its callback
    attempt is over, so the callback (if it came) is already waiting to be accepted."""
    out: dict = {"server": f"{host}:{port}", "callback": None}
    with socket.create_server(("0.0.0.0", 0)) as lst:
        try:
            with socket.create_connection((host, port), timeout=timeout) as ctl:
                ctl.settimeout(timeout + 5)
                me = ctl.getsockname()[0]
                out["advertised"] = f"{me}:{lst.getsockname()[1]}"
                ctl.sendall(f"CALLBACK {me} {lst.getsockname()[1]}\n".encode())
                out["server_says"] = ctl.makefile("r").readline().strip()
        except OSError as exc:
            out["server_says"] = f"control connection failed: {exc}"
        hello = ""
        if out["server_says"] == "OK":
            lst.settimeout(timeout)
            try:
                conn, peer = lst.accept()
                with conn:
                    conn.settimeout(timeout)
                    hello = conn.recv(64).decode(errors="replace").strip()
                    out["callback"] = f"{peer[0]}:{peer[1]}"
            except OSError as exc:
                out["error"] = f"no callback accepted: {exc}"
    out["result"] = "ok" if hello == "HELLO" else "no-callback"
    return out


def main() -> int:
    return serve_call.main("nodes.instruments.addrproto", __doc__, serve, call, port=7070, timeout=3.0,
                           serve_options={"--bind": {"default": "0.0.0.0"}})


if __name__ == "__main__":
    raise SystemExit(main())
