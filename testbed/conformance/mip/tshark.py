"""Does tshark decode what the tester means to be well formed? (pcap written with scapy)

`check_packets` writes whole IPv4 packets (raw IP link type) to a pcap, runs
`tshark -r f -T fields -e frame.number -e _ws.malformed -e _ws.expert.message -e _ws.col.Protocol`
and reports per packet any malformed flag or expert message. tshark's `mip` dissector decodes UDP
434; ICMP router advertisements with the mobility extension are decoded by its `icmp` dissector.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field

FIELDS = ("frame.number", "_ws.malformed", "_ws.expert.message", "_ws.col.Protocol", "_ws.col.Info")


def tshark_path() -> str | None:
    return shutil.which("tshark")


@dataclass(frozen=True)
class TsharkVerdict:
    ok: bool
    problems: list = field(default_factory=list)  # (frame number, text)
    rows: list = field(default_factory=list)  # per frame: dict of FIELDS
    error: str | None = None


def write_pcap(path: str, packets: list[bytes]) -> None:
    """Whole IPv4 packets into a pcap (Ethernet framing added by scapy)."""
    from scapy.layers.inet import IP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    wrpcap(path, [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(bytes(p)) for p in packets])


# tshark's IP dissector notes TTL 1 towards 255.255.255.255, which RFC 5944 2.1 requires of every
# agent advertisement: not a defect of the message
RFC_REQUIRED_NOTES = ('"Time To Live" only 1',)
CHECKSUM_OPTIONS = ("-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE")


def check_packets(packets: list[bytes], extra_args: tuple = (), timeout: float = 30.0,
                  ignore_expert: tuple = RFC_REQUIRED_NOTES, check_checksums: bool = True) -> TsharkVerdict:
    """Decode `packets` with tshark; ok when no frame is malformed and no expert message is raised
    (messages containing any string of `ignore_expert` are tolerated). With `check_checksums`, tshark
    also validates IP and UDP checksums (ICMP ones it always checks)."""
    binary = tshark_path()
    if binary is None:
        return TsharkVerdict(False, error="tshark not installed")
    with tempfile.TemporaryDirectory() as tmp:
        pcap = os.path.join(tmp, "mip.pcap")
        write_pcap(pcap, packets)
        cmd = [binary, "-n", "-r", pcap, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a",
               "-E", "aggregator=|"]
        for f in FIELDS:
            cmd += ["-e", f]
        cmd += list(CHECKSUM_OPTIONS if check_checksums else ()) + list(extra_args)
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                 env={**os.environ, "HOME": tmp})
        except (OSError, subprocess.TimeoutExpired) as e:
            return TsharkVerdict(False, error=f"tshark failed: {e}")
    if run.returncode != 0:
        return TsharkVerdict(False, error=f"tshark exit {run.returncode}: {run.stderr.strip()[:500]}")
    rows, problems = [], []
    for line in run.stdout.splitlines():
        values = line.split("\t") + [""] * len(FIELDS)
        row = dict(zip(FIELDS, values))
        rows.append(row)
        if row["_ws.malformed"]:
            problems.append((row["frame.number"], f"malformed: {row['_ws.malformed']}"))
        for message in filter(None, row["_ws.expert.message"].split("|")):
            if not any(s in message for s in ignore_expert):
                problems.append((row["frame.number"], f"expert: {message}"))
    return TsharkVerdict(not problems, problems, rows)


def dissect(packets: list[bytes], fields: tuple = ("mip.type", "mip.code", "mip.ext.type")) -> list[dict]:
    """Selected tshark fields per packet (e.g. to see how tshark read a message)."""
    binary = tshark_path()
    if binary is None:
        raise RuntimeError("tshark not installed")
    with tempfile.TemporaryDirectory() as tmp:
        pcap = os.path.join(tmp, "mip.pcap")
        write_pcap(pcap, packets)
        cmd = [binary, "-n", "-r", pcap, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a",
               "-E", "aggregator=|"]
        for f in fields:
            cmd += ["-e", f]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env={**os.environ, "HOME": tmp})
    if run.returncode != 0:
        raise RuntimeError(run.stderr.strip()[:500])
    return [dict(zip(fields, line.split("\t") + [""] * len(fields))) for line in run.stdout.splitlines()]
