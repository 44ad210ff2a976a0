"""An example vendor profile: socat (Debian package socat) fills the echo-sink role.

One socat per configured port echoes what it receives (`EXEC:cat`) and logs each connection or
datagram at `-d -d`; status() reads those log lines into the shape the cases read from every
echo-sink: {"received": [{"proto", "port", "peer", "peer_port"}, ...]}.

Role config, as our sink reads it: {tcp: [ports], udp: [ports]}.
"""
from __future__ import annotations

import re
import shutil

from testbed.profile_api import RoleHandle, RoleUnavailable, config_error

LISTEN = {"tcp": "TCP4-LISTEN:{port},reuseaddr,fork", "udp": "UDP4-RECVFROM:{port},fork"}
ARRIVAL = {"tcp": re.compile(r"accepting connection from AF=2 ([\d.]+):(\d+)"),
           "udp": re.compile(r"receiving packet from AF=2 ([\d.]+):(\d+)")}


class SocatEcho:
    name = "socat"
    kinds = frozenset({"echo-sink"})

    def check_config(self, role, plan) -> None:
        for proto in LISTEN:
            ports = role.config.get(proto, [])
            if not isinstance(ports, list) or not all(
                    isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536 for p in ports):
                raise config_error(role, proto, "a list of port numbers 1..65535", ports)

    def start_role(self, world, role) -> RoleHandle:
        if shutil.which("socat") is None:
            raise RoleUnavailable("the socat profile needs the program socat: apt-get install socat")
        listeners = []  # (proto, port, process)
        for proto, address in LISTEN.items():
            for port in role.config.get(proto, []):
                argv = ["socat", "-d", "-d", address.format(port=port), "EXEC:cat"]
                proc = world.start(role.node, f"{role.name}.socat-{proto}-{port}", argv,
                                   ready=r"listening on|receiving on")
                listeners.append((proto, port, proc))

        def status() -> dict:
            received = []
            for proto, port, proc in listeners:
                for m in ARRIVAL[proto].finditer(proc.log_path.read_text(errors="replace")):
                    received.append({"proto": proto, "port": port, "peer": m[1], "peer_port": int(m[2])})
            return {"implementation": self.name, "role": role.name, "kind": role.kind, "node": role.node,
                    "running": all(p.running() for _, _, p in listeners), "received": received}

        def stop():
            return [p.stop() for _, _, p in listeners]

        return RoleHandle(role, status, stop)


PROFILE = SocatEcho()
