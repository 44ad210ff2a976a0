"""Cross-check with an independent decoder: write IKE messages (or ESP packets) into a pcap with scapy
IP/UDP wrapping and let tshark dissect them; every expert-info message and every malformed marker is
a problem. Use it for messages the tester means to be well formed (RFC 7296 section 3 formats).

    problems = check_ike([msg1, msg2])          # [] when tshark decodes all of them cleanly
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from . import constants as c


@dataclass
class TsharkProblem:
    frame: int  # 1-based index in the list given
    message: str


def available() -> bool:
    return shutil.which("tshark") is not None


def write_pcap(path: str, datagrams: list[tuple[bytes, int]], src: str = "192.0.2.1", dst: str = "192.0.2.2") -> None:
    """Each (UDP payload, port) as IPv4/UDP from src to dst (scapy's wrpcap)."""
    from scapy.layers.inet import IP, UDP
    from scapy.packet import Raw
    from scapy.utils import wrpcap
    wrpcap(path, [IP(src=src, dst=dst) / UDP(sport=port, dport=port) / Raw(load=data) for data, port in datagrams])


def run_tshark(path: str, extra: list[str] | None = None, timeout: float = 60.0) -> list[list[str]]:
    """tshark -r path -T fields for expert messages and malformed markers, one row per frame."""
    cmd = ["tshark", "-n", "-r", path, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a",
           "-E", "aggregator=|", "-e", "frame.number", "-e", "_ws.expert.message", "-e", "_ws.malformed",
           "-e", "frame.protocols"] + (extra or [])
    env = {**os.environ, "HOME": tempfile.gettempdir()}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"tshark failed: {out.stderr.strip()}")
    return [line.split("\t") for line in out.stdout.splitlines() if line.strip()]


def check_datagrams(datagrams: list[tuple[bytes, int]], expect_protocol: str = "isakmp",
                    extra: list[str] | None = None) -> list[TsharkProblem]:
    """Problems tshark reports for the UDP payloads given (expert infos, malformed, or a frame that
    does not reach `expect_protocol`)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tester.pcap")
        write_pcap(path, datagrams)
        rows = run_tshark(path, extra)
    problems = []
    for row in rows:
        row += [""] * (4 - len(row))
        frame = int(row[0])
        if row[1]:
            problems += [TsharkProblem(frame, m) for m in row[1].split("|") if m]
        if row[2]:
            problems.append(TsharkProblem(frame, f"malformed: {row[2]}"))
        if expect_protocol and expect_protocol not in row[3].split(":"):
            problems.append(TsharkProblem(frame, f"not decoded as {expect_protocol}: {row[3]}"))
    return problems


def check_ike(messages: list[bytes], port: int = c.IKE_PORT) -> list[TsharkProblem]:
    """IKE messages (without marker); on 4500 the non-ESP marker is added (RFC 3948 2.2)."""
    marker = c.NON_ESP_MARKER if port == c.NAT_T_PORT else b""
    return check_datagrams([(marker + m, port) for m in messages])
