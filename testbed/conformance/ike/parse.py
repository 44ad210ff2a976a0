"""Parser of received IKEv2 messages (RFC 7296 section 3), raw struct, strict: it never raises on
malformed input but returns a `ParsedMessage` whose `ok` is False and whose `reason` says what is
wrong (scapy's dissector is lenient and silently accepts inconsistent lengths, so it is not used
here; tests cross-check scapy against the builders instead).

The SK payload (3.14) is decrypted when a `sk.SkCipher` for the sending direction is given; its
inner payloads are then in `inner` (and in `all`). Known payload bodies are decoded into `fields`:
SA (proposals/transforms), KE, IDi/IDr, AUTH, Nonce, Notify, Delete, Vendor ID, TSi/TSr, CP, EAP.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Any

from . import constants as c
from .sk import SkCipher, SkError


class ParseError(ValueError):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class ParsedPayload:
    type: int
    critical: bool
    flags: int  # the whole octet: C bit and the 7 RESERVED bits
    next_payload: int
    length: int
    body: bytes
    offset: int  # of the generic header within the message (or the decrypted plaintext)
    fields: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # body that does not decode (the payload is still listed)

    @property
    def name(self) -> str:
        return c.payload_name(self.type)

    @property
    def reserved(self) -> int:
        return self.flags & 0x7F

    def describe(self) -> str:
        if self.type == c.NOTIFY:
            return f"N({c.notify_name(self.fields.get('notify_type', -1))})"
        return self.name


@dataclass
class ParsedMessage:
    raw: bytes
    ok: bool = True
    reason: str = ""
    spi_i: bytes = b""
    spi_r: bytes = b""
    next_payload: int = 0
    version: int = 0
    exchange: int = 0
    flags: int = 0
    message_id: int = 0
    length: int = 0
    payloads: list[ParsedPayload] = field(default_factory=list)  # as on the wire (SK included)
    inner: list[ParsedPayload] | None = None  # decrypted SK contents
    sk_error: str | None = None  # why the SK payload could not be opened
    pad_length: int | None = None
    padding: bytes = b""

    major = property(lambda self: self.version >> 4)
    minor = property(lambda self: self.version & 0xF)
    initiator = property(lambda self: bool(self.flags & c.FLAG_I))
    response = property(lambda self: bool(self.flags & c.FLAG_R))
    version_bit = property(lambda self: bool(self.flags & c.FLAG_V))
    reserved_flags = property(lambda self: self.flags & ~(c.FLAG_I | c.FLAG_R | c.FLAG_V) & 0xFF)

    @property
    def encrypted(self) -> bool:
        return any(p.type == c.SK for p in self.payloads)

    @property
    def all(self) -> list[ParsedPayload]:
        """Unencrypted payloads other than SK, then the decrypted ones."""
        return [p for p in self.payloads if p.type != c.SK] + (self.inner or [])

    def get(self, ptype: int) -> ParsedPayload | None:
        return next((p for p in self.all if p.type == ptype), None)

    def get_all(self, ptype: int) -> list[ParsedPayload]:
        return [p for p in self.all if p.type == ptype]

    def notifies(self) -> list[ParsedPayload]:
        return self.get_all(c.NOTIFY)

    def notify(self, ntype: int) -> ParsedPayload | None:
        return next((p for p in self.notifies() if p.fields.get("notify_type") == ntype), None)

    def notify_types(self) -> list[int]:
        return [p.fields.get("notify_type") for p in self.notifies()]

    def summary(self) -> str:
        """e.g. 'IKE_AUTH resp mid=1 [SK{IDr, AUTH, CP, SA, TSi, TSr}]' for a message ladder."""
        if not self.ok and not self.payloads:
            return f"malformed: {self.reason}"
        outer = [p.describe() if p.type != c.SK else
                 "SK{" + (", ".join(q.describe() for q in self.inner) if self.inner is not None
                          else f"? {self.sk_error or ''}") + "}" for p in self.payloads]
        kind = "resp" if self.response else "req"
        return f"{c.exchange_name(self.exchange)} {kind} mid={self.message_id} [{', '.join(outer)}]" + (
            "" if self.ok else f" malformed: {self.reason}")


def parse_header(data: bytes) -> ParsedMessage:
    """Just the 28-byte header (RFC 7296 3.1)."""
    msg = ParsedMessage(raw=bytes(data))
    if len(data) < c.IKE_HEADER_LEN:
        msg.ok, msg.reason = False, f"shorter than the IKE header ({len(data)} bytes)"
        return msg
    (msg.spi_i, msg.spi_r, msg.next_payload, msg.version, msg.exchange, msg.flags, msg.message_id,
     msg.length) = struct.unpack("!8s8sBBBBII", data[:28])
    return msg


def parse_message(data: bytes, cipher: SkCipher | None = None) -> ParsedMessage:
    """Parse a whole IKE message (without any non-ESP marker). Never raises."""
    msg = parse_header(data)
    if not msg.ok:
        return msg
    try:
        if msg.length != len(data):
            raise ParseError(f"header Length {msg.length} but {len(data)} bytes received")
        msg.payloads = _chain(data, c.IKE_HEADER_LEN, msg.next_payload, data[:msg.length] if msg.length <= len(data)
                              else data, outer=True)
        sk = next((p for p in msg.payloads if p.type == c.SK), None)
        if sk is not None:
            if sk is not msg.payloads[-1]:
                raise ParseError("SK payload is not the last payload")
            if cipher is None:
                msg.sk_error = "no keys"
            else:
                prefix = data[:sk.offset + 4]
                try:
                    plain, msg.pad_length, msg.padding = cipher.open(prefix, sk.body)
                    msg.inner = _chain(plain, 0, sk.next_payload, plain, outer=False)
                except SkError as exc:
                    msg.sk_error = exc.reason
                    raise ParseError(f"SK payload: {exc.reason}") from exc
    except ParseError as exc:
        msg.ok, msg.reason = False, exc.reason
    except Exception as exc:  # a decoder bug must not kill a test run: report it as a reason
        msg.ok, msg.reason = False, f"parser error: {type(exc).__name__}: {exc}"
    return msg


def _chain(data: bytes, pos: int, first: int, buf: bytes, outer: bool) -> list[ParsedPayload]:
    """Walk the payload chain from `pos` (RFC 7296 3.2); the SK payload ends the outer chain."""
    out: list[ParsedPayload] = []
    ptype = first
    while ptype != c.NO_NEXT:
        if pos + 4 > len(buf):
            raise ParseError(f"payload {c.payload_name(ptype)} header truncated at offset {pos}")
        nxt, flags, length = struct.unpack("!BBH", buf[pos:pos + 4])
        if length < 4:
            raise ParseError(f"payload {c.payload_name(ptype)} length {length} < 4")
        if pos + length > len(buf):
            raise ParseError(f"payload {c.payload_name(ptype)} length {length} runs past the end")
        p = ParsedPayload(ptype, bool(flags & c.CRITICAL), flags, nxt, length, bytes(buf[pos + 4:pos + length]), pos)
        if ptype != c.SK:
            try:
                p.fields = decode_body(ptype, p.body)
            except (ParseError, struct.error, ValueError) as exc:
                p.error = getattr(exc, "reason", str(exc))
        out.append(p)
        pos += length
        if ptype == c.SK and outer:
            if pos != len(buf):
                raise ParseError("SK payload is not the last payload")
            return out
        ptype = nxt
    if pos != len(buf):
        raise ParseError(f"{len(buf) - pos} bytes after the last payload")
    return out


def _need(body: bytes, n: int, what: str) -> None:
    if len(body) < n:
        raise ParseError(f"{what} body {len(body)} bytes, at least {n} needed")


def decode_proposals(body: bytes) -> list[dict]:
    """Proposals and transforms of an SA payload (RFC 7296 3.3.1, 3.3.2, 3.3.5)."""
    props, pos = [], 0
    while pos < len(body):
        _need(body[pos:], 8, "proposal")
        last, res, plen, num, proto, spi_size, ntrans = struct.unpack("!BBHBBBB", body[pos:pos + 8])
        if plen < 8 + spi_size or pos + plen > len(body):
            raise ParseError(f"proposal {num} length {plen} inconsistent")
        spi = body[pos + 8:pos + 8 + spi_size]
        tpos, tend, transforms = pos + 8 + spi_size, pos + plen, []
        while tpos < tend:
            if tpos + 8 > tend:
                raise ParseError("transform truncated")
            tlast, tres, tlen, ttype, tres2, tid = struct.unpack("!BBHBBH", body[tpos:tpos + 8])
            if tlen < 8 or tpos + tlen > tend:
                raise ParseError(f"transform length {tlen} inconsistent")
            attrs, apos, key_len = [], tpos + 8, None
            while apos < tpos + tlen:
                if apos + 4 > tpos + tlen:
                    raise ParseError("transform attribute truncated")
                atype, aval = struct.unpack("!HH", body[apos:apos + 4])
                if atype & 0x8000:
                    attrs.append((atype & 0x7FFF, aval))
                    if atype & 0x7FFF == c.ATTR_KEY_LENGTH:
                        key_len = aval
                    apos += 4
                else:
                    attrs.append((atype, body[apos + 4:apos + 4 + aval]))
                    apos += 4 + aval
            transforms.append({"last": tlast, "type": ttype, "id": tid, "key_len": key_len, "attrs": attrs})
            tpos += tlen
            if tlast == 0 and tpos != tend:
                raise ParseError("bytes after the last transform")
        if len(transforms) != ntrans:
            raise ParseError(f"proposal {num} says {ntrans} transforms, has {len(transforms)}")
        props.append({"last": last, "number": num, "protocol": proto, "spi": spi, "transforms": transforms})
        pos += plen
        if last == 0 and pos != len(body):
            raise ParseError("bytes after the last proposal")
    return props


def decode_body(ptype: int, body: bytes) -> dict[str, Any]:
    """The fields of a known payload body; {} for unknown types."""
    if ptype == c.SA:
        return {"proposals": decode_proposals(body)}
    if ptype == c.KE:
        _need(body, 4, "KE")
        group, res = struct.unpack("!HH", body[:4])
        return {"group": group, "reserved2": res, "data": body[4:]}
    if ptype in (c.IDI, c.IDR):
        _need(body, 4, "ID")
        return {"id_type": body[0], "reserved2": body[1:4], "data": body[4:]}
    if ptype == c.AUTH:
        _need(body, 4, "AUTH")
        return {"method": body[0], "reserved2": body[1:4], "data": body[4:]}
    if ptype == c.NONCE:
        return {"data": body}
    if ptype == c.NOTIFY:
        _need(body, 4, "Notify")
        proto, spi_size, ntype = struct.unpack("!BBH", body[:4])
        _need(body, 4 + spi_size, "Notify")
        return {"protocol": proto, "spi_size": spi_size, "notify_type": ntype, "spi": body[4:4 + spi_size],
                "data": body[4 + spi_size:]}
    if ptype == c.DELETE:
        _need(body, 4, "Delete")
        proto, spi_size, n = struct.unpack("!BBH", body[:4])
        if len(body) != 4 + spi_size * n:
            raise ParseError(f"Delete of {n} SPIs of {spi_size} bytes in {len(body) - 4} bytes")
        return {"protocol": proto, "spi_size": spi_size, "spis": [body[4 + i * spi_size:4 + (i + 1) * spi_size]
                                                                 for i in range(n)]}
    if ptype == c.VENDOR_ID:
        return {"data": body}
    if ptype in (c.TSI, c.TSR):
        _need(body, 4, "TS")
        n, pos, out = body[0], 4, []
        for _ in range(n):
            _need(body[pos:], 4, "traffic selector")
            ts_type, proto, tlen = struct.unpack("!BBH", body[pos:pos + 4])
            if tlen < 8 or pos + tlen > len(body):
                raise ParseError(f"traffic selector length {tlen} inconsistent")
            sp, ep = struct.unpack("!HH", body[pos + 4:pos + 8])
            alen = {c.TS_IPV4_ADDR_RANGE: 4, c.TS_IPV6_ADDR_RANGE: 16}.get(ts_type)
            entry = {"ts_type": ts_type, "protocol": proto, "start_port": sp, "end_port": ep}
            if alen and tlen == 8 + 2 * alen:
                entry["start"] = str(ipaddress.ip_address(body[pos + 8:pos + 8 + alen]))
                entry["end"] = str(ipaddress.ip_address(body[pos + 8 + alen:pos + 8 + 2 * alen]))
            elif alen:
                raise ParseError(f"traffic selector type {ts_type} of length {tlen}")
            out.append(entry)
            pos += tlen
        if pos != len(body):
            raise ParseError("bytes after the traffic selectors")
        return {"count": n, "selectors": out}
    if ptype == c.CP:
        _need(body, 4, "CP")
        pos, attrs = 4, []
        while pos < len(body):
            _need(body[pos:], 4, "CP attribute")
            atype, alen = struct.unpack("!HH", body[pos:pos + 4])
            if pos + 4 + alen > len(body):
                raise ParseError("CP attribute runs past the payload")
            attrs.append((atype & 0x7FFF, body[pos + 4:pos + 4 + alen]))
            pos += 4 + alen
        return {"cfg_type": body[0], "attributes": attrs}
    if ptype == c.EAP:
        _need(body, 4, "EAP")
        code, ident, elen = struct.unpack("!BBH", body[:4])
        if elen != len(body):
            raise ParseError(f"EAP Length {elen} but {len(body)} bytes")
        out = {"code": code, "identifier": ident, "eap_type": body[4] if len(body) > 4 else None, "data": body[5:]}
        return out
    return {}


def ip_attribute(msg: ParsedMessage, attr: int) -> list[str]:
    """IPv4 values of one CP attribute type (e.g. INTERNAL_IP4_ADDRESS), RFC 7296 3.15.1."""
    cp = msg.get(c.CP)
    if cp is None or "attributes" not in cp.fields:
        return []
    return [str(ipaddress.IPv4Address(v[:4])) for t, v in cp.fields["attributes"] if t == attr and len(v) >= 4]
