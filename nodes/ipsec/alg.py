"""Application-level gateways for our NAPT (draft-gupta Appendix C, RFC 3027, RFC 2663 2.9), sans-I/O.

Protocols that carry an address and port in their payload break through a NAPT: the peer inside
the intranet (H) is told the remote host's tunnel-inner address, which is not routed inside, and
G has no mapping for the port. An ALG rewrites those payloads to G_i and a port G maps back, and
opens that mapping before H uses it. Off by default; enabled per gateway.

  ftp  FTP control connections (TCP 21): PORT and EPRT from a client on R, and 227 (PASV) and
       229 (EPSV) replies from a server on R (reached through a redirection rule). An address
       or port is rewritten only when it is R's own (inner) one; a PORT naming a third host is left
       alone. When the rewrite changes the payload's length, the TCP sequence numbers of the
       control connection (toward H) and the acknowledgement numbers and SACK blocks coming back
       are shifted from then on, per connection, for every later segment, retransmissions
       included (a retransmitted rewritten command is rewritten identically: the rewrite is
       remembered by its sequence offset, and a segment that overlaps a rewritten command only
       partly is widened to carry the whole rewritten command, which TCP receivers accept as
       overlapping data). A command split across segments (a segment ending inside a line
       that could be one of the four) is held back until the rest arrives (the next segment, or
       the sender's retransmission, which Linux collapses), then sent as one rewritten segment;
       a partial line longer than MAX_LINE is let through unchanged. Data after a gap (a
       reordered segment, or one past a held line) is dropped and counted: its offset toward H
       depends on what comes before it, and the sender sends it again.
  sip  SIP over UDP (port 5060) with SDP: R's inner address in the start line, the address
       headers (Via, Contact, From, To, Route, Record-Route; never Call-ID, which names the dialog)
       and the SDP's c= and o= lines becomes the external address (the signalling port with it),
       the m= media ports get mappings of their own and their external ports, and
       Content-Length follows the body's new length. SIP coming back has the external address
       and port in those headers turned into R's own again.

The ALG sees the packets the NAPT core sees, with the mapping the core chose (fields proto, peer,
inner_addr, inner_port, ext_addr, ext_port: nodes/ipsec/napt.py's `Mapping`). It keeps state per
FTP control connection, dropped when the connection closes (RST, or FINs both ways) or by
`expire` after `idle_timeout`. Counters: `rewrites` (by protocol and kind) and `drops` by reason.

## The hook (the integrator wires it: a few lines in nodes/daemons/vpn_gateway.py, none in napt.py)

`AlgNapt` (below) is `Napt` with the ALGs hooked in: after `Napt.outbound` translated a packet it
goes through `NaptAlgs.outbound` (with the mapping the core chose); before `Napt.inbound`
translates a packet back, `NaptAlgs.inbound` shifts its acknowledgement; `open_mapping` gives an
ALG the mapping for an announced endpoint (an FTP data port, an RTP port), H's address added to
its destinations so address-dependent filtering lets H in. In the gateway:

    from nodes.ipsec.alg import AlgNapt, NaptAlgs              # module level
    ...
        if self.presence == "napt":                             # _setup_presence, line ~239
            names = cfg.get("alg", [])                          # e.g. alg: [ftp, sip]; default none
            self.napt = (AlgNapt(self.g_i, ports=self.napt_ports, alg=NaptAlgs(names)) if names
                         else Napt(self.g_i, ports=self.napt_ports))
    ...
        # status(): add "napt_alg": self.napt.alg.status() when the NAPT is an AlgNapt

A wrong name raises ValueError("unknown ALG ..."), which the config check should report as a
config error (key `alg`). cases/napt/test_matrix.py's "NAPT with our ALGs" column runs once
nodes.daemons.vpn_gateway imports AlgNapt, and then requires status()["napt_alg"];
tests/test_alg.py drives AlgNapt with scapy-built packets.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from nodes.ipsec.napt import Napt
from nodes.wire.ipv4 import PROTO_TCP, PROTO_UDP, checksum

ALGS = ("ftp", "sip")
FTP_PORT, SIP_PORT = 21, 5060
MAX_LINE = 512  # a held partial FTP line longer than this is let through unchanged
TCP_FIN, TCP_SYN, TCP_RST = 0x01, 0x02, 0x04
MOD = 1 << 32

# (proto, peer, inner address, inner port, remote address, now) -> (external address, port) or None
OpenMapping = Callable[[int, Hashable, int, int, int, float], "tuple[int, int] | None"]

_FTP_PREFIXES = (b"PORT ", b"EPRT ", b"227 ", b"229 ")
_PORT = re.compile(rb"^(PORT) (\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})\s*$", re.I)
_EPRT = re.compile(rb"^(EPRT) (.)1\2([\d.]+)\2(\d+)\2\s*$", re.I)
_PASV = re.compile(rb"^227 (.*?)\(?(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})\)?(.*)$")
_SIP_ADDRESS_HEADER = re.compile(rb"(?i)^(via|v|contact|m|from|f|to|t|route|record-route)[ \t]*:")
_EPSV = re.compile(rb"^229 (.*?)\((.)\2\2(\d+)\2\)(.*)$")


@dataclass
class _Rewrite:
    at: int  # offset of the original line in the sender's stream (from the first data byte)
    old_len: int
    new: bytes

    @property
    def delta(self) -> int:
        return len(self.new) - self.old_len


@dataclass
class _FtpFlow:
    """One FTP control connection, keyed by its translated ends (G_i:port, H:port)."""
    base: int  # sequence number of the first data byte toward H
    remote: int  # H's address: the data connection's expected peer
    rewrites: list[_Rewrite] = field(default_factory=list)
    scanned: int = 0  # stream offset up to which new data has been scanned for lines
    line_start: int = 0  # offset where the line being scanned began
    held: tuple[int, bytes] | None = None  # (offset, bytes) of a partial line held back
    fin_out: bool = False
    fin_in: bool = False
    last_seen: float = 0.0

    # offsets in the original stream -> offsets in the rewritten stream, and back
    def to_new(self, off: int) -> int:
        return off + sum(r.delta for r in self.rewrites if r.at + r.old_len <= off)

    def to_old(self, off: int) -> int:
        shift = 0
        for r in self.rewrites:
            new_at = r.at + shift
            if off >= new_at + len(r.new):
                shift += r.delta
            elif off > new_at:  # inside a rewritten line: acknowledge up to its start only
                return r.at
        return off - shift


def _ip_tcp(buf: bytearray) -> tuple[int, int]:
    ihl = (buf[0] & 0x0F) * 4
    return ihl, ihl + ((buf[ihl + 12] >> 4) * 4)


def _finish(buf: bytearray, proto: int) -> bytes:
    """Set the IP total length, the IP header checksum and the transport checksum afresh."""
    ihl = (buf[0] & 0x0F) * 4
    buf[2:4] = len(buf).to_bytes(2, "big")
    buf[10:12] = b"\0\0"
    buf[10:12] = checksum(bytes(buf[:ihl])).to_bytes(2, "big")
    at = ihl + (16 if proto == PROTO_TCP else 6)
    if proto == PROTO_UDP:
        buf[ihl + 4 : ihl + 6] = (len(buf) - ihl).to_bytes(2, "big")
    buf[at : at + 2] = b"\0\0"
    pseudo = bytes(buf[12:20]) + bytes([0, proto]) + (len(buf) - ihl).to_bytes(2, "big")
    csum = checksum(pseudo + bytes(buf[ihl:]))
    if proto == PROTO_UDP and csum == 0:
        csum = 0xFFFF
    buf[at : at + 2] = csum.to_bytes(2, "big")
    return bytes(buf)


class NaptAlgs:
    """The ALGs enabled on one NAPT (`names` from ALGS). See the module docstring for the hook."""

    def __init__(self, names: Iterable[str] = ALGS, ftp_ports: Iterable[int] = (FTP_PORT,),
                 sip_ports: Iterable[int] = (SIP_PORT,), idle_timeout: float = 7440.0):
        self.names = tuple(names)
        unknown = sorted(set(self.names) - set(ALGS))
        if unknown:
            raise ValueError(f"unknown ALG {unknown[0]!r}: choose from {list(ALGS)}")
        self.ftp_ports = frozenset(ftp_ports) if "ftp" in self.names else frozenset()
        self.sip_ports = frozenset(sip_ports) if "sip" in self.names else frozenset()
        self.idle_timeout = idle_timeout
        self.rewrites: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self._ftp: dict[tuple[int, int, int, int], _FtpFlow] = {}

    # -- the NAPT core's two calls ---------------------------------------------------------------
    def outbound(self, buf: bytearray, m, now: float, open_mapping: OpenMapping) -> bytes | None:
        """A packet from a remote host, already translated to G_i: rewritten when it carries R's
        address, or None while a partial command is held back."""
        proto = buf[9]
        ihl = (buf[0] & 0x0F) * 4
        dport = int.from_bytes(buf[ihl + 2 : ihl + 4], "big")
        if proto == PROTO_TCP and (dport in self.ftp_ports or m.inner_port in self.ftp_ports):
            return self._ftp_out(buf, m, now, open_mapping, server_inside=m.inner_port in self.ftp_ports)
        if proto == PROTO_UDP and (dport in self.sip_ports or m.inner_port in self.sip_ports):
            return self._sip_out(buf, m, now, open_mapping)
        return bytes(buf)

    def inbound(self, buf: bytearray, m, now: float) -> bytearray:
        """A packet from the intranet for mapping `m`, before it is translated back: the
        acknowledgement number and SACK blocks of an FTP control connection whose commands
        changed length are shifted back to the remote host's own numbering; SIP's address headers
        name R's own address and port again."""
        if buf[9] == PROTO_UDP and self.sip_ports:
            return self._sip_in(buf, m)
        if buf[9] != PROTO_TCP or not self._ftp:
            return buf
        ihl, doff = _ip_tcp(buf)
        key = (int.from_bytes(buf[16:20], "big"), int.from_bytes(buf[ihl + 2 : ihl + 4], "big"),
               int.from_bytes(buf[12:16], "big"), int.from_bytes(buf[ihl : ihl + 2], "big"))
        flow = self._ftp.get(key)
        if flow is None:
            return buf
        flow.last_seen = now
        flags = buf[ihl + 13]
        flow.fin_in = flow.fin_in or bool(flags & TCP_FIN)
        if flags & TCP_RST or (flow.fin_in and flow.fin_out):
            del self._ftp[key]
        if not flow.rewrites:
            return buf
        old = bytes(buf)

        def back(seq: int) -> int:
            return (flow.base + flow.to_old((seq - flow.base) % MOD)) % MOD

        ack = int.from_bytes(buf[ihl + 8 : ihl + 12], "big")
        buf[ihl + 8 : ihl + 12] = back(ack).to_bytes(4, "big")
        i = ihl + 20
        while i < doff:  # TCP options: SACK (kind 5) blocks are in our numbering too
            kind = buf[i]
            if kind == 0:
                break
            if kind == 1:
                i += 1
                continue
            length = buf[i + 1] if i + 1 < doff else 0
            if length < 2:
                break
            if kind == 5:
                for b in range(i + 2, i + length - 7, 8):
                    for e in (b, b + 4):
                        buf[e : e + 4] = back(int.from_bytes(buf[e : e + 4], "big")).to_bytes(4, "big")
            i += length
        return bytearray(_finish(buf, PROTO_TCP)) if bytes(buf) != old else buf

    def _sip_in(self, buf: bytearray, m) -> bytearray:
        """SIP from the intranet to a remote host: its Via, Contact, From and To name the external
        address and port the outbound rewrite put there; they name R's own again."""
        ihl = (buf[0] & 0x0F) * 4
        sport = int.from_bytes(buf[ihl : ihl + 2], "big")
        if sport not in self.sip_ports and m.inner_port not in self.sip_ports:
            return buf
        theirs = f"{IPv4Address(m.ext_addr)}:{m.ext_port}".encode()
        msg = bytes(buf[ihl + 8 :])
        head, sep, body = msg.partition(b"\r\n\r\n")
        if theirs not in head:
            return buf
        ours = f"{IPv4Address(m.inner_addr)}:{m.inner_port}".encode()
        head = b"\r\n".join(line.replace(theirs, ours) if _SIP_ADDRESS_HEADER.match(line) else line
                             for line in head.split(b"\r\n"))
        self.rewrites["sip-in"] += 1
        return bytearray(_finish(bytearray(buf[: ihl + 8]) + head + sep + body, PROTO_UDP))

    def expire(self, now: float) -> int:
        gone = [k for k, f in self._ftp.items() if now - f.last_seen >= self.idle_timeout]
        for k in gone:
            del self._ftp[k]
        return len(gone)

    def status(self) -> dict:
        return {"algs": list(self.names), "ftp_connections": len(self._ftp),
                "rewrites": dict(sorted(self.rewrites.items())), "drops": dict(sorted(self.drops.items()))}

    # -- FTP ------------------------------------------------------------------------------------
    def _ftp_out(self, buf: bytearray, m, now: float, open_mapping: OpenMapping, server_inside: bool):
        ihl, doff = _ip_tcp(buf)
        key = (int.from_bytes(buf[12:16], "big"), int.from_bytes(buf[ihl : ihl + 2], "big"),
               int.from_bytes(buf[16:20], "big"), int.from_bytes(buf[ihl + 2 : ihl + 4], "big"))
        seq = int.from_bytes(buf[ihl + 4 : ihl + 8], "big")
        flags = buf[ihl + 13]
        flow = self._ftp.get(key)
        if flow is None or flags & TCP_SYN:
            flow = self._ftp[key] = _FtpFlow(base=(seq + 1) % MOD if flags & TCP_SYN else seq, remote=key[2])
        flow.last_seen = now
        flow.fin_out = flow.fin_out or bool(flags & TCP_FIN)
        if flags & TCP_RST or (flow.fin_in and flow.fin_out):
            self._ftp.pop(key, None)
        if flags & TCP_SYN:
            return bytes(buf)
        off = (seq - flow.base) % MOD
        if off >= MOD // 2:  # before the first byte this ALG saw (it started mid-connection): as is
            return bytes(buf)
        data = bytes(buf[doff:])
        header = bytes(buf[:doff])
        if data and flow.held is not None:
            h_off, h_data = flow.held
            h_end, end = h_off + len(h_data), off + len(data)
            if end >= h_off and off <= h_end:  # the held line's rest, or the held bytes again
                start = min(off, h_off)
                merged = bytearray(max(end, h_end) - start)
                merged[h_off - start : h_end - start] = h_data
                merged[off - start : end - start] = data
                off, data, flow.held = start, bytes(merged), None
        if data and off > flow.scanned:
            # data after a gap (reordered, or after a held line): its offset toward H is not known
            # until what comes before it was scanned; the sender sends it again
            self.drops["ftp-out-of-order"] += 1
            return None
        if data and off + len(data) > flow.scanned:
            hold = self._ftp_scan(flow, off, data, m, now, open_mapping, server_inside)
            if hold is not None:  # keep the partial line back, send what comes before it
                flow.held = (hold, data[hold - off :])
                data = data[: hold - off]
                if not data:
                    return None
        out = bytearray(header)
        start, payload = self._render(flow, off, data)
        out[ihl + 4 : ihl + 8] = ((flow.base + start) % MOD).to_bytes(4, "big")
        return _finish(out + payload, PROTO_TCP)

    def _ftp_scan(self, flow: _FtpFlow, off: int, data: bytes, m, now, open_mapping, server_inside) -> int | None:
        """Scan the new part of a segment for complete lines, recording rewrites; return the offset
        of a trailing partial line worth holding back, or None."""
        text = data[flow.scanned - off :]
        pos = flow.scanned
        while True:
            nl = text.find(b"\n")
            if nl < 0:
                break
            line_end = pos + nl + 1
            line = (data[flow.line_start - off : line_end - off] if flow.line_start >= off else None)
            if line is not None:
                self._ftp_line(flow, flow.line_start, line, m, now, open_mapping, server_inside)
            flow.line_start = line_end
            text, pos = text[nl + 1 :], line_end
        flow.scanned = off + len(data)
        partial = data[flow.line_start - off :] if flow.line_start >= off else b""
        if partial and len(partial) < MAX_LINE and any(p.startswith(partial[:5].upper()) or partial.upper().startswith(p)
                                                       for p in _FTP_PREFIXES):
            flow.scanned = flow.line_start  # scanned again with the rest
            return flow.line_start
        if len(partial) >= MAX_LINE:
            self.drops["ftp-line-too-long"] += 1
        return None

    def _ftp_line(self, flow: _FtpFlow, at: int, line: bytes, m, now, open_mapping, server_inside) -> None:
        if any(r.at == at for r in flow.rewrites):
            return
        body = line.rstrip(b"\r\n")
        eol = line[len(body):]
        inner = str(IPv4Address(m.inner_addr)).encode()
        new = None
        if not server_inside and (mt := _PORT.match(body)):
            addr = b".".join(mt.group(i) for i in range(2, 6))
            port = int(mt.group(6)) * 256 + int(mt.group(7))
            if addr == inner and (ext := self._open(flow, m, port, now, open_mapping)):
                a, p = ext
                new = mt.group(1) + b" " + b",".join(str(x).encode() for x in (*IPv4Address(a).packed, p >> 8, p & 0xFF))
                self.rewrites["ftp-port"] += 1
        elif not server_inside and (mt := _EPRT.match(body)):
            d = mt.group(2)
            if mt.group(3) == inner and (ext := self._open(flow, m, int(mt.group(4)), now, open_mapping)):
                a, p = ext
                new = mt.group(1) + b" " + d + b"1" + d + str(IPv4Address(a)).encode() + d + str(p).encode() + d
                self.rewrites["ftp-eprt"] += 1
        elif server_inside and (mt := _PASV.match(body)):
            addr = b".".join(mt.group(i) for i in range(2, 6))
            port = int(mt.group(6)) * 256 + int(mt.group(7))
            if addr == inner and (ext := self._open(flow, m, port, now, open_mapping)):
                a, p = ext
                nums = b",".join(str(x).encode() for x in (*IPv4Address(a).packed, p >> 8, p & 0xFF))
                new = b"227 " + mt.group(1) + b"(" + nums + b")" + mt.group(8)
                self.rewrites["ftp-227"] += 1
        elif server_inside and (mt := _EPSV.match(body)):
            d = mt.group(2)
            if ext := self._open(flow, m, int(mt.group(3)), now, open_mapping):
                new = b"229 " + mt.group(1) + b"(" + d * 3 + str(ext[1]).encode() + d + b")" + mt.group(4)
                self.rewrites["ftp-229"] += 1
        if new is not None and new != body:
            flow.rewrites.append(_Rewrite(at, len(line), new + eol))
            flow.rewrites.sort(key=lambda r: r.at)

    def _open(self, flow: _FtpFlow, m, port: int, now: float, open_mapping: OpenMapping):
        if not 0 < port < 65536:
            self.drops["ftp-bad-port"] += 1
            return None
        ext = open_mapping(PROTO_TCP, m.peer, m.inner_addr, port, flow.remote, now)
        if ext is None:
            self.drops["ports-exhausted"] += 1
        return ext

    @staticmethod
    def _render(flow: _FtpFlow, off: int, data: bytes) -> tuple[int, bytes]:
        """The rewritten stream for original bytes [off, off+len(data)): (new offset, bytes). A
        rewritten line the range overlaps only partly is carried whole."""
        end = off + len(data)
        start = flow.to_new(off)
        out = bytearray()
        pos = off
        for r in flow.rewrites:
            if r.at + r.old_len <= off or r.at >= end or not data:
                continue
            if r.at < off:
                start = flow.to_new(r.at)
            else:
                out += data[pos - off : r.at - off]
            out += r.new
            pos = r.at + r.old_len
        if pos < end:
            out += data[pos - off :]
        return start, bytes(out)

    # -- SIP ------------------------------------------------------------------------------------
    def _sip_out(self, buf: bytearray, m, now: float, open_mapping: OpenMapping) -> bytes:
        ihl = (buf[0] & 0x0F) * 4
        msg = bytes(buf[ihl + 8 :])
        inner = str(IPv4Address(m.inner_addr)).encode()
        ext = str(IPv4Address(m.ext_addr)).encode()
        if inner not in msg:
            return bytes(buf)
        head, sep, body = msg.partition(b"\r\n\r\n")
        if not sep:
            head, sep, body = msg.partition(b"\n\n")
        remote = int.from_bytes(buf[16:20], "big")
        # signalling: in the start line and the address headers (never Call-ID: a dialog's name),
        # inner:port -> ext:port of this mapping, then the bare address
        ours, theirs = inner + b":" + str(m.inner_port).encode(), ext + b":" + str(m.ext_port).encode()
        bare = re.compile(rb"(?<![\d.])" + re.escape(inner) + rb"(?![\d])")
        head = b"\r\n".join(bare.sub(ext, line.replace(ours, theirs)) if i == 0 or _SIP_ADDRESS_HEADER.match(line)
                             else line for i, line in enumerate(head.split(b"\r\n")))
        lines = []
        for line in body.split(b"\n"):
            if line.startswith((b"c=", b"o=")):
                line = bare.sub(ext, line)
            elif line.startswith(b"m=") and (mt := re.match(rb"m=(\S+) (\d+)(.*)", line, re.S)):
                got = open_mapping(PROTO_UDP, m.peer, m.inner_addr, int(mt.group(2)), remote, now)
                if got is None:
                    self.drops["ports-exhausted"] += 1
                else:
                    line = b"m=" + mt.group(1) + b" " + str(got[1]).encode() + mt.group(3)
                    self.rewrites["sip-media"] += 1
            lines.append(line)
        body = b"\n".join(lines)
        head = re.sub(rb"(?im)^(Content-Length|l)[ \t]*:[ \t]*\d+", lambda x: x.group(1) + b": " + str(len(body)).encode(), head)
        self.rewrites["sip"] += 1
        return _finish(bytearray(buf[: ihl + 8]) + head + sep + body, PROTO_UDP)


class AlgNapt(Napt):
    """The NAPT core with ALGs (`alg`, a NaptAlgs): the gateway builds this instead of Napt when its
    config names ALGs. Same inputs and outputs as Napt."""

    def __init__(self, *args, alg: NaptAlgs, **kw):
        super().__init__(*args, **kw)
        self.alg = alg

    def open_mapping(self, proto: int, peer: Hashable, inner_addr: int, inner_port: int, remote: int,
                     now: float) -> tuple[int, int] | None:
        """The external (address, port) for an endpoint an ALG announced, mapped from now on
        (None when no port is left)."""
        m = self._live(self._by_inner.get((proto, peer, inner_addr, inner_port)), now)
        if m is None:
            m = self._create(proto, peer, inner_addr, inner_port, now)
            if m is None:
                return None
        m.last_seen = now
        m.destinations.add(remote)
        return m.ext_addr, m.ext_port

    def outbound(self, packet, peer: Hashable, now: float) -> bytes | None:
        out = super().outbound(packet, peer, now)
        if out is None or out[9] not in (PROTO_TCP, PROTO_UDP):
            return out
        ihl = (out[0] & 0x0F) * 4
        m = self._by_ext[(out[9], int.from_bytes(out[12:16], "big"), int.from_bytes(out[ihl : ihl + 2], "big"))]
        return self.alg.outbound(bytearray(out), m, now, self.open_mapping)

    def inbound(self, packet, now: float):
        if len(packet) >= 20 and packet[9] in (PROTO_TCP, PROTO_UDP):
            ihl = (packet[0] & 0x0F) * 4
            m = self._by_ext.get((packet[9], int.from_bytes(packet[16:20], "big"),
                                  int.from_bytes(packet[ihl + 2 : ihl + 4], "big")))
            if m is not None and len(packet) >= ihl + 20:
                packet = bytes(self.alg.inbound(bytearray(packet), m, now))
        return super().inbound(packet, now)

    def expire(self, now: float) -> int:
        self.alg.expire(now)
        return super().expire(now)
