"""The applications of the NAPT matrix (cases/napt/test_matrix.py), each started for real inside the
nodes: servers on H once per world (`start_servers`), a client on R per cell (`APPS`). Every app
returns an `Observation`: whether it worked, what was seen (how), and evidence from the wire
(the address an application carried in its payload, as captured on H's link).

Programs: vsftpd (H) and tnftp (R, Debian's `ftp`, driven by a command file), in.tftpd (tftpd-hpa)
and tftp-hpa, ngircd with the scripted DCC pair (nodes/instruments/dcc.py), traceroute, and the
scripted instruments for what Debian has no program for (addrproto, multihomed_udp, acl_service).
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import sys
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

from testbed import REPO_ROOT
from testbed.capture import Capture, start_capture
from testbed.daemons import start_daemon
from testbed.ipsec_checks import PLAN

H = str(PLAN.address("h"))
H2 = "10.1.2.11"  # H' (Appendix C's multi-homed H): a second address on H's link
G_I = str(PLAN.address("g", "ibb"))
H_IF = PLAN.nodes["h"].interface_on("srv").name
PY = sys.executable
X11, X11_RULE = 6000, 6010  # R's display port; G_i's port with a redirection rule to it
PAYLOAD_SIZE = 20_000  # kept small: every cell keeps its capture for the matrix
RTP_PORT = 6000  # sipp's media port on both ends


@dataclass
class Env:
    """One column's world with its servers: what the app drivers need."""
    world: object
    column: str
    vip: str  # R's tunnel-inner address (pool address or NAPT inner address)
    napt: bool  # H sees G_i (NAPT) or R's own address (pool)
    dir: Path
    payload: Path
    sink: object = None  # the echo sink on R (X11-style port)
    servers: dict = field(default_factory=dict)

    def run(self, node: str, argv, timeout: float = 20.0):
        return self.world.run_in(node, argv, timeout=timeout)

    def json(self, node: str, argv, timeout: float = 20.0) -> dict:
        res = self.run(node, argv, timeout)
        try:
            return json.loads(res.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise AssertionError(f"{argv} on {node} printed no JSON: {res.stdout}{res.stderr}") from None


@dataclass
class Observation:
    works: bool
    how: str
    evidence: dict = field(default_factory=dict)


def sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


# ---- servers on H (and the display on R) --------------------------------------------------------
def start_servers(world, d: Path) -> dict:
    """vsftpd, in.tftpd, ngircd and the scripted servers on H; H' on H's link. Returns paths."""
    d.mkdir(parents=True, exist_ok=True)
    payload = d / "ftproot" / "file.bin"
    payload.parent.mkdir(exist_ok=True)
    payload.write_bytes(random.Random(10).randbytes(PAYLOAD_SIZE))
    (d / "empty").mkdir(exist_ok=True)
    tftp_root = d / "tftproot"
    tftp_root.mkdir(exist_ok=True)
    tftp_root.chmod(0o777)
    (tftp_root / "file.bin").write_bytes(payload.read_bytes())
    world.run_in("h", f"ip addr add {H2}/24 dev {H_IF}", check=True)
    conf = (REPO_ROOT / "fixtures/apps/vsftpd.conf").read_text().format(
        address=H, root=payload.parent, empty=d / "empty", log=d / "vsftpd.log")
    (d / "vsftpd.conf").write_text(conf)
    irc = (REPO_ROOT / "fixtures/apps/ngircd.conf").read_text().format(address=H, pidfile=d / "ngircd.pid")
    (d / "ngircd.conf").write_text(irc)
    world.start("h", "vsftpd", ["vsftpd", str(d / "vsftpd.conf")])
    world.start("h", "tftpd", ["in.tftpd", "-L", "-v", "-c", "-p", "-u", "root", "-a", f"{H}:69", "-s", str(tftp_root)])
    world.start("h", "ngircd", ["ngircd", "-n", "-f", str(d / "ngircd.conf")])
    world.start("h", "sipp-uas", ["sipp", "-sf", str(REPO_ROOT / "fixtures/apps/sip-uas.xml"), "-i", H, "-p", "5060",
                                  "-mi", H, "-mp", str(RTP_PORT), "-nostdin", "-trace_err"], ready="base port")
    world.start("h", "addrproto", [PY, "-m", "nodes.instruments.addrproto", "serve", "--port", "7070"], ready="listening")
    world.start("h", "multihomed", [PY, "-m", "nodes.instruments.multihomed_udp", "serve", "--port", "2049",
                                    "--reply-from", H2], ready="listening")
    world.start("h", "acl", [PY, "-m", "nodes.instruments.acl_service", "serve", "--port", "7171",
                             "--allow", "10.1.0.0/16"], ready="listening")
    for port, name in ((21, "vsftpd"), (69, "tftpd"), (6667, "ngircd")):
        _wait_listening(world, port, name)
    sink = start_daemon(world, "r", "instruments.sink", name="display", args=["--tcp", str(X11)])
    return {"payload": payload, "tftp_root": tftp_root, "sink": sink}


def _wait_listening(world, port: int, name: str, timeout: float = 5.0) -> None:
    res = world.run_in("h", f"for i in $(seq 50); do ss -Hlnut 'sport = :{port}' | grep -q . && exit 0; sleep 0.1; done; exit 1",
                       timeout=timeout + 2)
    assert res.returncode == 0, f"{name} on H does not listen on port {port} after {timeout} s (see its log)"


# ---- evidence from H's link -----------------------------------------------------------------------
def payload_lines(cap: Capture, port: int) -> list[str]:
    """The TCP/UDP payload lines to and from `port` seen on H's link, decoded (tshark)."""
    rows = cap.packets(f"tcp.port == {port} || udp.port == {port}", ["tcp.payload", "udp.payload"])
    lines = []
    for r in rows:
        for hexdata in r["tcp.payload"] + r["udp.payload"]:
            lines += bytes.fromhex(hexdata.replace(":", "")).decode(errors="replace").splitlines()
    return lines


def carried_address(lines: list[str], pattern: str, decode=lambda m: m.group(1)) -> str | None:
    for line in lines:
        m = re.search(pattern, line)
        if m:
            return decode(m)
    return None


def who(address: str | None, env: Env) -> str | None:
    """Name an address: 'inner' (R's tunnel-inner/pool address), 'g_i', or the address itself."""
    return {env.vip: "inner", G_I: "g_i"}.get(address, address) if address else None


# ---- the applications ---------------------------------------------------------------------------
def ftp(env: Env, cap: Capture, active: bool, extended: bool) -> Observation:
    dest = env.dir / f"ftp-{'active' if active else 'passive'}-{'ext' if extended else 'plain'}.bin"
    dest.unlink(missing_ok=True)
    cmds = ["user anonymous testbed", "binary", f"passive {'off' if active else 'on'}"]
    if not extended:
        cmds.append("epsv4 off")
    cmds += [f"get file.bin {dest}", "quit"]
    script = env.dir / (dest.stem + ".cmds")
    script.write_text("\n".join(cmds) + "\n")
    res = env.run("r", f"timeout 15 ftp -n -v {H} < {script}", timeout=25)
    cap.stop()
    ok = sha256(dest) == sha256(env.payload)
    lines = payload_lines(cap, 21)
    verbs = ("EPRT", "PORT") if active else ("EPSV", "PASV")
    sent = [line for line in lines if line.split(" ")[0] in verbs]
    replies = [line for line in lines if re.match(r"(227|229|425|500|501) |200 (PORT|EPRT)", line)]
    evidence = {}
    if active:
        addr = carried_address(sent, r"^EPRT \|1\|([\d.]+)\|") or carried_address(
            sent, r"^PORT (\d+),(\d+),(\d+),(\d+),", lambda m: ".".join(m.groups()))
        evidence["payload_address"] = who(addr, env)
    how = (f"transfer {'complete, checksum equal' if ok else 'failed'}; on H's link: "
           f"{' | '.join(sent) or 'no ' + '/'.join(verbs)} -> {' | '.join(replies) or 'no reply'}")
    if not ok:
        how += f"; ftp said: {' '.join(res.stdout.split()[-12:])}"
    return Observation(ok, how, evidence)


def tftp(env: Env, cap: Capture, write: bool) -> Observation:
    if write:
        target = env.servers["tftp_root"] / "upload.bin"
        target.unlink(missing_ok=True)
        target.touch()
        target.chmod(0o666)
        cmd = f"put {env.payload} upload.bin"
    else:
        target = env.dir / "tftp-read.bin"
        target.unlink(missing_ok=True)
        cmd = f"get file.bin {target}"
    res = env.run("r", f"printf 'mode octet\\nrexmt 1\\ntimeout 2\\n{cmd}\\nquit\\n' | timeout 10 tftp {H}", timeout=20)
    cap.stop()
    ok = sha256(target) == sha256(env.payload)
    rows = cap.packets(f"udp && ip.src == {H}", ["udp.srcport", "udp.dstport", "ip.dst"])
    from_h = sorted({r["udp.srcport"][0] for r in rows})
    unreach = cap.packets(f"icmp.type == 3 && ip.dst == {H}", ["ip.src"])
    how = (f"{'write' if write else 'read'} {'complete, checksum equal' if ok else 'failed'}; H answered from "
           f"UDP port(s) {', '.join(from_h) or 'none'}" + (f"; {len(unreach)} ICMP unreachable(s) back to H" if unreach else ""))
    if not ok:
        how += f"; tftp said: {' '.join((res.stdout + res.stderr).split()[-10:])}"
    return Observation(ok, how)


def irc_dcc(env: Env, cap: Capture) -> Observation:
    recv = env.world.start("h", "dcc-receive", [PY, "-m", "nodes.instruments.dcc", "receive", "127.0.0.1",
                                                 "--nick", "bob", "--timeout", "12"], ready="registered")
    sent = env.json("r", [PY, "-m", "nodes.instruments.dcc", "send", H, "--nick", "alice", "--to", "bob",
                          "--file", str(env.payload), "--timeout", "8"])
    deadline = time.monotonic() + 3
    while recv.running() and time.monotonic() < deadline:  # it prints its result and exits
        time.sleep(0.05)
    recv.stop()
    cap.stop()
    got = next((json.loads(line) for line in recv.tail() if line.startswith("{")), {})
    lines = payload_lines(cap, 6667)
    addr = carried_address(lines, r"DCC SEND \S+ (\d+) \d+", lambda m: _int_address(m.group(1)))
    ok = sent["result"] == "ok" and got.get("sha256") == sent["sha256"]
    how = (f"DCC SEND offered {sent.get('offered')} by the sender; on H's link the offer carried {addr}; "
           f"receiver: {got.get('error') or got.get('result') or 'still waiting for data when stopped'}")
    return Observation(ok, how, {"payload_address": who(addr, env)})


def _int_address(text: str) -> str:
    return str(IPv4Address(int(text)))


def sip_rtp(env: Env, cap: Capture) -> Observation:
    """A call from sipp on R to sipp on H; media both ways, each side sending where the other's SDP
    said. Counted on H's link (R's RTP to H) and on R (H's RTP, inside the tunnel: any interface)."""
    at_r = start_capture(env.world, "r", "any", cap.path.parent, bpf=f"udp and src host {H}", name="r-sip-rtp")
    res = env.run("r", ["sipp", "-sf", str(REPO_ROOT / "fixtures/apps/sip-uac.xml"), "-i", env.vip, "-p", "5060",
                        "-mi", env.vip, "-mp", str(RTP_PORT), "-m", "1", "-nostdin", "-timeout", "8", "-timeout_error",
                        f"{H}:5060"], timeout=20)
    at_r.stop()
    cap.stop()
    to_h = len(cap.packets(f"ip.dst == {H} && udp.dstport == {RTP_PORT}", ["ip.src"]))
    h_sent = cap.packets(f"ip.src == {H} && udp.srcport != 5060", ["ip.dst", "udp.dstport"])
    to_r = len(at_r.packets(f"ip.src == {H} && udp.dstport == {RTP_PORT}", ["ip.src"]))
    sdp = carried_address(payload_lines(cap, 5060), r"^c=IN IP4 ([\d.]+)")
    dest = f"{h_sent[0]['ip.dst'][0]}:{h_sent[0]['udp.dstport'][0]}" if h_sent else "nowhere"
    ok = res.returncode == 0 and to_h > 0 and to_r > 0
    how = (f"call {'completed' if res.returncode == 0 else 'failed'} (sipp exit {res.returncode}); the INVITE's SDP "
           f"on H's link said c={sdp}; RTP R->H {to_h} packets on H's link, H->R sent to {dest}, {to_r} arrived at R "
           f"(capture {at_r.path.name})")
    return Observation(ok, how, {"payload_address": who(sdp, env)})


def addr_in_payload(env: Env, cap: Capture) -> Observation:
    out = env.json("r", [PY, "-m", "nodes.instruments.addrproto", "call", H, "7070", "--timeout", "3"])
    cap.stop()
    addr = carried_address(payload_lines(cap, 7070), r"^CALLBACK ([\d.]+) ")
    return Observation(out["result"] == "ok", f"advertised {out.get('advertised')}; the server says "
                       f"{out.get('server_says')}", {"payload_address": who(addr, env)})


def multihomed_udp(env: Env, cap: Capture) -> Observation:
    out = env.json("r", [PY, "-m", "nodes.instruments.multihomed_udp", "call", H, "2049", "--timeout", "2"])
    cap.stop()
    answers = cap.packets(f"udp && ip.src == {H2}", ["ip.dst"])
    how = (f"request to H, {len(answers)} answer(s) left H from H' {H2}; R: "
           + (f"answered from {out['from']}" if out["result"] == "ok" else out["result"]))
    return Observation(out["result"] == "ok", how, {"answered_from": who(out.get("from"), env) if out.get("from") != H2 else "h2"})


def x11(env: Env, cap: Capture, rule: bool) -> Observation:
    if not env.napt:
        target, port, why = env.vip, X11, "R's pool address is routed in the intranet: no rule needed"
    elif rule:
        target, port, why = G_I, X11_RULE, f"redirection rule G_i:{X11_RULE} -> R:{X11}"
    else:
        target, port, why = G_I, X11, f"no rule for G_i:{X11}"
    before = len(env.sink.status()["received"])
    got = env.world.reach("h", "tcp", target, port, timeout=2)
    cap.stop()
    arrived = [e for e in env.sink.status()["received"][before:] if e["peer"] == H]
    ok = got["result"] == "ok" and bool(arrived)
    how = f"H -> {target}:{port} ({why}): {got['result']}; R's display port saw {len(arrived)} connection(s) from H"
    return Observation(ok, how)


def access_control(env: Env, cap: Capture) -> Observation:
    out = env.json("r", [PY, "-m", "nodes.instruments.acl_service", "call", H, "7171"])
    cap.stop()
    return Observation(out["result"] == "ok", f"H's service admits 10.1.0.0/16 only: {out['result']}, "
                       f"it saw R as {out.get('seen_as')}", {"seen_as": who(out.get("seen_as"), env)})


def traceroute(env: Env, cap: Capture) -> Observation:
    res = env.run("r", ["traceroute", "-n", "-q", "1", "-w", "1", "-m", "6", H], timeout=20)
    cap.stop()
    hops = [line.split()[1] for line in res.stdout.splitlines()[1:] if len(line.split()) > 1]
    errors = cap.packets(f"icmp && ip.src == {H}", ["icmp.type"])
    ok = bool(hops) and hops[-1] == H
    back = "translated back to R by G" if env.napt else "to R's own address"
    return Observation(ok, f"hops {' '.join(hops) or 'none'}; H sent {len(errors)} ICMP port unreachable(s), "
                       f"{back}", {"hops": hops})


APPS = {
    "ftp-active-eprt": lambda e, c: ftp(e, c, active=True, extended=True),
    "ftp-active-port": lambda e, c: ftp(e, c, active=True, extended=False),
    "ftp-passive-epsv": lambda e, c: ftp(e, c, active=False, extended=True),
    "ftp-passive-pasv": lambda e, c: ftp(e, c, active=False, extended=False),
    "tftp-read": lambda e, c: tftp(e, c, write=False),
    "tftp-write": lambda e, c: tftp(e, c, write=True),
    "sip-rtp": sip_rtp,
    "irc-dcc": irc_dcc,
    "addr-in-payload": addr_in_payload,
    "multihomed-udp": multihomed_udp,
    "x11-no-rule": lambda e, c: x11(e, c, rule=False),
    "x11-redirect": lambda e, c: x11(e, c, rule=True),
    "access-control": access_control,
    "traceroute": traceroute,
}


def capture_h(env: Env, directory: Path, name: str) -> Capture:
    return start_capture(env.world, "h", H_IF, directory, name=name)
