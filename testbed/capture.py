"""Packet captures on any link and their decoding with tshark: tcpdump inside a node, on one of its
interfaces, or on the wire (`start_wire_capture`: the other end of that interface's veth, the
bridge's port), which shows what crossed the link and nothing the node's own stack adds.

The difference matters with a kernel IPsec data plane (XFRM): the kernel hands a decrypted tunnel
packet back to the interface the ESP packet came in on, so a capture inside the node shows the
cleartext inner packets on its Internet interface as if they had crossed it; on the bridge's port
only the ESP packets appear."""
from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from testbed.processes import NodeProcess


class CaptureError(RuntimeError):
    pass


@dataclass
class Capture:
    node: str
    interface: str
    path: Path
    process: NodeProcess

    def stop(self, settle: float = 0.02) -> Path:
        """Stop tcpdump and return the pcap's path. tcpdump does not drain its socket on SIGTERM,
        so first wait until the file has stopped growing for `settle` seconds (at most 1 s)."""
        deadline = time.monotonic() + 1.0
        size = -1
        while time.monotonic() < deadline:
            now = self.path.stat().st_size if self.path.exists() else 0
            if now == size:
                break
            size = now
            time.sleep(settle)
        self.process.stop()
        return self.path

    def packets(self, display_filter: str | None = None, fields: Sequence[str] = ()) -> list[dict]:
        return decode(self.path, display_filter, fields)


def start_capture(world, node: str, interface: str, directory: Path, bpf: str | None = None,
                  name: str | None = None) -> Capture:
    """Capture on `interface` of `node` into directory/<name or node-interface>.pcap."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name or f'{node}-{interface}'}.pcap"
    argv = ["tcpdump", "-n", "-i", interface, "--immediate-mode", "-U", "-Z", "root", "-s", "0", "-w", str(path)]
    if bpf:
        argv += bpf.split()
    proc = world.start(node, f"tcpdump-{interface}", argv, ready=r"listening on", timeout=10)
    return Capture(node, interface, path, proc)


def wire_end(world, node: str, interface: str) -> tuple[str, str]:
    """(bridge, port): where the frames of `node`'s `interface` cross the link, for a node on a
    segment or a station attached to one."""
    from testbed import naming

    spec = world.plan.nodes[node]
    if spec.station and interface == naming.station_ifname(node):
        seg = world.attached.get(node)
        if seg is None:
            raise CaptureError(f"station {node} is attached to no segment: no wire to capture on")
        return world.plan.segments[seg].bridge, naming.station_port(node)
    for intf in spec.interfaces:
        if intf.name == interface and intf.segment:
            return world.plan.segments[intf.segment].bridge, naming.bridge_port(intf.segment, node)
    raise CaptureError(f"{node}'s {interface} is on no segment (a point-to-point link): capture on its peer's end")


def start_wire_capture(world, node: str, interface: str, directory: Path, bpf: str | None = None,
                       name: str | None = None) -> Capture:
    """Capture what crosses the link of `node`'s `interface`, on the bridge's port (module docstring);
    the pcap is named after the node's interface as with start_capture."""
    bridge, port = wire_end(world, node, interface)
    return start_capture(world, bridge, port, directory, bpf=bpf, name=name or f"{node}-{interface}-wire")


def _tshark(args: list[str]) -> str:
    try:
        res = subprocess.run(["tshark", *args], capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise CaptureError("tshark is missing: install Debian's tshark package (scripts/setup does)") from None
    if res.returncode:
        raise CaptureError(f"tshark {' '.join(args)} failed: {res.stderr.strip()}")
    return res.stdout


def decode(pcap: Path, display_filter: str | None = None, fields: Sequence[str] = ()) -> list[dict]:
    """Packets of a pcap as dicts. With `fields`, each dict maps field name -> list of values
    (tshark -T fields); without, each is tshark's JSON of the packet's layers."""
    args = ["-r", str(pcap), "-n"]
    if display_filter:
        args += ["-Y", display_filter]
    if fields:
        args += ["-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"]
        for f in fields:
            args += ["-e", f]
        rows = []
        for line in _tshark(args).splitlines():
            values = line.split("\t")
            rows.append({f: (v.split(",") if v else []) for f, v in zip(fields, values)})
        return rows
    return [p["_source"]["layers"] for p in json.loads(_tshark(args + ["-T", "json"]) or "[]")]


def malformed(pcap: Path) -> list[str]:
    """One summary line per packet tshark finds malformed or flags with an error (expert info)."""
    out = _tshark(["-r", str(pcap), "-n", "-Y", "_ws.malformed || _ws.expert.severity == error"])
    return [line for line in out.splitlines() if line.strip()]
