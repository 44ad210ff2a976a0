"""Builders of IKEv2 messages and payloads (RFC 7296 sections 3.1-3.16) that return bytes, with an
override for every field a conformance test may want to get wrong.

What is built how:
* IKE header (RFC 7296 3.1): 28 octets packed with struct, every field explicit (version byte, all 8
  flag bits, message ID, length override); the same octets as scapy's `IKEv2` (a unit test compares).
* Generic payload header (3.2) of every payload: four octets packed with struct, every field explicit
  (Next Payload, the flags byte with the C bit and the 7 RESERVED bits, Payload Length), so any chain
  can be written (scapy's `IKEv2_Payload` gives the same octets, a unit test compares them, at a
  cost that was a third of the load generator's CPU).
* Payload bodies through scapy where its layers fit: KE (`IKEv2_KE`), Nonce, IDi/IDr, AUTH,
  Notify, Vendor ID, TSi/TSr, CP.
* Raw struct packing where scapy is insufficient: the SA payload (scapy's Proposal does not compute
  the transform count, its Transform knows only the Key Length attribute and neither lets the
  "last substructure" octets be set freely), Delete (scapy's SPI Size is the length of the whole SPI
  list), EAP (scapy's IKEv2_EAP is not dissected), Notify types
  16407/16408 (scapy forces a REDIRECT layout), and the SK payload (scapy has no cipher for it;
  see sk.py).

`build_message(...)` joins a header and a list of `Payload` (and at most one `SkPayload`, whose inner
payloads are encrypted with an `sk.SkCipher`); the chain's Next Payload values are filled in unless
a payload overrides its own.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

from scapy.contrib.ikev2 import (ConfigurationAttribute, IKEv2_AUTH, IKEv2_CP, IKEv2_IDi,
                                 IKEv2_IDr, IKEv2_KE, IKEv2_Nonce, IKEv2_Notify, IKEv2_TSi,
                                 IKEv2_TSr, IKEv2_VendorID, IPv4TrafficSelector, IPv6TrafficSelector)

from . import constants as c
from .sk import SkCipher, SkOptions


# ----------------------------------------------------------------------------- generic payloads

@dataclass
class Payload:
    """One payload: its type and body (everything after the 4-byte generic header, RFC 7296 3.2).

    Overrides: `critical` (the C bit), `reserved` (the 7 RESERVED flag bits, 0..0x7f), `flags` (the whole
    octet, wins over both), `next_payload` (None: the type of the following payload, 0 for the last),
    `length` (None: 4 + len(body))."""
    type: int
    body: bytes = b""
    critical: bool = False
    reserved: int = 0
    flags: int | None = None
    next_payload: int | None = None
    length: int | None = None

    def flags_octet(self) -> int:
        if self.flags is not None:
            return self.flags
        return (c.CRITICAL if self.critical else 0) | (self.reserved & 0x7F)

    def encode(self, next_type: int) -> bytes:
        nxt = self.next_payload if self.next_payload is not None else next_type
        length = self.length if self.length is not None else 4 + len(self.body)
        return struct.pack("!BBH", nxt & 0xFF, self.flags_octet() & 0xFF, length & 0xFFFF) + self.body

    def with_(self, **kw) -> "Payload":
        """A copy with some fields replaced, e.g. `p.with_(critical=True, length=3)`."""
        return Payload(**{**vars(self), **kw})


@dataclass
class SkPayload:
    """The Encrypted payload (RFC 7296 3.14): `inner` payloads encrypted under the cipher given to
    build_message. Its Next Payload is the first inner type unless overridden; `opts` breaks the
    IV/padding/ICV (sk.SkOptions)."""
    inner: list[Payload] = field(default_factory=list)
    critical: bool = False
    reserved: int = 0
    flags: int | None = None
    next_payload: int | None = None
    length: int | None = None
    opts: SkOptions = field(default_factory=SkOptions)
    type: int = c.SK

    def flags_octet(self) -> int:
        if self.flags is not None:
            return self.flags
        return (c.CRITICAL if self.critical else 0) | (self.reserved & 0x7F)


def encode_chain(payloads: list[Payload]) -> bytes:
    """Payloads joined, each Next Payload naming the following one's type (0 after the last)."""
    out = b""
    for i, p in enumerate(payloads):
        out += p.encode(payloads[i + 1].type if i + 1 < len(payloads) else c.NO_NEXT)
    return out


def _body(layer) -> bytes:
    return bytes(layer)[4:]


# ----------------------------------------------------------------------------- SA payload (raw)

@dataclass
class Transform:
    """A Transform substructure (RFC 7296 3.3.2), raw struct. `key_len` adds the Key Length attribute
    (3.3.5, TV format); `attrs` appends raw attribute bytes; `last` overrides the first octet (0 last,
    3 more)."""
    type: int
    id: int
    key_len: int | None = None
    attrs: bytes = b""
    last: int | None = None
    reserved: int = 0
    reserved2: int = 0
    length: int | None = None

    def encode(self, is_last: bool) -> bytes:
        attrs = (struct.pack("!HH", 0x8000 | c.ATTR_KEY_LENGTH, self.key_len) if self.key_len is not None
                 else b"") + self.attrs
        last = self.last if self.last is not None else (0 if is_last else 3)
        length = self.length if self.length is not None else 8 + len(attrs)
        return struct.pack("!BBHBBH", last, self.reserved, length, self.type, self.reserved2, self.id) + attrs


@dataclass
class Proposal:
    """A Proposal substructure (RFC 7296 3.3.1), raw struct. Overrides: `last` (0 last, 2 more),
    `spi_size`, `num_transforms`, `length`, `reserved`."""
    number: int
    protocol: int
    transforms: list[Transform]
    spi: bytes = b""
    last: int | None = None
    reserved: int = 0
    spi_size: int | None = None
    num_transforms: int | None = None
    length: int | None = None

    def encode(self, is_last: bool) -> bytes:
        ts = b"".join(t.encode(i == len(self.transforms) - 1) for i, t in enumerate(self.transforms))
        last = self.last if self.last is not None else (0 if is_last else 2)
        length = self.length if self.length is not None else 8 + len(self.spi) + len(ts)
        return struct.pack("!BBHBBBB", last, self.reserved, length, self.number, self.protocol,
                           len(self.spi) if self.spi_size is None else self.spi_size,
                           len(self.transforms) if self.num_transforms is None else self.num_transforms
                           ) + self.spi + ts


def ike_proposal(number: int = 1, encr: int = c.ENCR_AES_GCM_16, key_bits: int | None = 128,
                 integ: int | None = None, prf: int = c.PRF_HMAC_SHA2_256, dh: int | list[int] = c.ECP256,
                 spi: bytes = b"") -> Proposal:
    """An IKE proposal; `dh` may list several groups (several transforms of one type, 3.3)."""
    ts = [Transform(c.T_ENCR, encr, key_bits), Transform(c.T_PRF, prf)]
    if integ is not None:
        ts.append(Transform(c.T_INTEG, integ))
    ts += [Transform(c.T_DH, g) for g in ([dh] if isinstance(dh, int) else dh)]
    return Proposal(number, c.PROTO_IKE, ts, spi=spi)


def esp_proposal(spi: bytes, number: int = 1, encr: int = c.ENCR_AES_GCM_16, key_bits: int | None = 128,
                 integ: int | None = None, dh: int | None = None, esn: int = c.ESN_NO) -> Proposal:
    """An ESP proposal with a 4-byte SPI (3.3.1); `dh` for PFS in CREATE_CHILD_SA."""
    ts = [Transform(c.T_ENCR, encr, key_bits)]
    if integ is not None:
        ts.append(Transform(c.T_INTEG, integ))
    if dh is not None:
        ts.append(Transform(c.T_DH, dh))
    ts.append(Transform(c.T_ESN, esn))
    return Proposal(number, c.PROTO_ESP, ts, spi=spi)


def sa(proposals: list[Proposal], **kw) -> Payload:
    """SA payload (RFC 7296 3.3)."""
    return Payload(c.SA, b"".join(p.encode(i == len(proposals) - 1) for i, p in enumerate(proposals)), **kw)


# ----------------------------------------------------------------------------- the other payloads

def ke(group: int, data: bytes, reserved2: int = 0, **kw) -> Payload:
    """KE payload (RFC 7296 3.4), scapy IKEv2_KE."""
    return Payload(c.KE, _body(IKEv2_KE(group=group, res2=reserved2, ke=data)), **kw)


def nonce(data: bytes, **kw) -> Payload:
    """Ni/Nr (RFC 7296 3.9), scapy IKEv2_Nonce."""
    return Payload(c.NONCE, _body(IKEv2_Nonce(nonce=data)), **kw)


def identification(ptype: int, id_type: int, data: bytes, reserved2: int = 0, **kw) -> Payload:
    """IDi or IDr (RFC 7296 3.5), scapy IKEv2_IDi/IKEv2_IDr."""
    cls = IKEv2_IDi if ptype == c.IDI else IKEv2_IDr
    value = str(ipaddress.IPv4Address(data)) if id_type == c.ID_IPV4_ADDR and len(data) == 4 else data
    if id_type == c.ID_IPV6_ADDR and len(data) == 16:
        value = str(ipaddress.IPv6Address(data))
    return Payload(ptype, _body(cls(IDtype=id_type, res2=reserved2, ID=value)), **kw)


def id_from_text(text: str) -> tuple[int, bytes]:
    """('10.0.0.1' -> ID_IPV4_ADDR, 'user@realm' -> ID_RFC822_ADDR, otherwise ID_FQDN) (RFC 7296 3.5)."""
    try:
        return c.ID_IPV4_ADDR, ipaddress.IPv4Address(text).packed
    except ValueError:
        pass
    if "@" in text.lstrip("@"):
        return c.ID_RFC822_ADDR, text.encode()
    return c.ID_FQDN, text.lstrip("@").encode()


def idi(text: str, **kw) -> Payload:
    return identification(c.IDI, *id_from_text(text), **kw)


def idr(text: str, **kw) -> Payload:
    return identification(c.IDR, *id_from_text(text), **kw)


def auth(method: int, data: bytes, reserved2: int = 0, **kw) -> Payload:
    """AUTH payload (RFC 7296 3.8), scapy IKEv2_AUTH."""
    return Payload(c.AUTH, _body(IKEv2_AUTH(auth_type=method, res2=reserved2, load=data)), **kw)


def notify(ntype: int, data: bytes = b"", protocol: int = 0, spi: bytes = b"", spi_size: int | None = None,
           **kw) -> Payload:
    """Notify payload (RFC 7296 3.10) of any type, error or status; scapy IKEv2_Notify, raw struct for
    16407/16408 and for a lying SPI Size."""
    if ntype in (16407, 16408) or spi_size is not None:
        body = struct.pack("!BBH", protocol, len(spi) if spi_size is None else spi_size, ntype) + spi + data
    else:
        body = _body(IKEv2_Notify(proto=protocol, type=ntype, SPI=spi, notify=data))
    return Payload(c.NOTIFY, body, **kw)


def delete(protocol: int, spis: list[bytes], spi_size: int | None = None, **kw) -> Payload:
    """Delete payload (RFC 7296 3.11): protocol 1 (IKE, no SPIs) or 3 (ESP, 4-byte SPIs). Raw struct:
    scapy's IKEv2_Delete computes SPI Size as the length of the whole SPI list."""
    size = spi_size if spi_size is not None else (len(spis[0]) if spis else 0)
    return Payload(c.DELETE, struct.pack("!BBH", protocol, size, len(spis)) + b"".join(spis), **kw)


def vendor_id(data: bytes, **kw) -> Payload:
    """Vendor ID (RFC 7296 3.12), scapy IKEv2_VendorID."""
    return Payload(c.VENDOR_ID, _body(IKEv2_VendorID(vendorID=data)), **kw)


@dataclass
class TrafficSelector:
    """One traffic selector (RFC 7296 3.13.1): addresses as text, IP protocol 0 = any."""
    start: str = "0.0.0.0"
    end: str = "255.255.255.255"
    protocol: int = 0
    start_port: int = 0
    end_port: int = 65535

    @classmethod
    def from_cidr(cls, cidr: str, protocol: int = 0) -> "TrafficSelector":
        net = ipaddress.ip_network(cidr, strict=False)
        return cls(str(net[0]), str(net[-1]), protocol)


def traffic_selectors(ptype: int, selectors: list[TrafficSelector | str], **kw) -> Payload:
    """TSi or TSr (RFC 7296 3.13), scapy IKEv2_TSi/TSr with IPv4/IPv6 selectors; strings are CIDRs."""
    items = []
    for ts in selectors:
        ts = TrafficSelector.from_cidr(ts) if isinstance(ts, str) else ts
        if ipaddress.ip_address(ts.start).version == 4:
            items.append(IPv4TrafficSelector(IP_protocol_ID=ts.protocol, start_port=ts.start_port,
                                             end_port=ts.end_port, starting_address_v4=ts.start,
                                             ending_address_v4=ts.end))
        else:
            items.append(IPv6TrafficSelector(IP_protocol_ID=ts.protocol, start_port=ts.start_port,
                                             end_port=ts.end_port, starting_address_v6=ts.start,
                                             ending_address_v6=ts.end))
    cls = IKEv2_TSi if ptype == c.TSI else IKEv2_TSr
    return Payload(ptype, _body(cls(traffic_selector=items, number_of_TSs=len(items))), **kw)


def tsi(selectors: list[TrafficSelector | str], **kw) -> Payload:
    return traffic_selectors(c.TSI, selectors, **kw)


def tsr(selectors: list[TrafficSelector | str], **kw) -> Payload:
    return traffic_selectors(c.TSR, selectors, **kw)


def cp(cfg_type: int, attributes: list[tuple[int, bytes]], **kw) -> Payload:
    """Configuration payload (RFC 7296 3.15), scapy IKEv2_CP; attributes as (type, value bytes)."""
    attrs = [ConfigurationAttribute(type=t, value=v) for t, v in attributes]
    return Payload(c.CP, _body(IKEv2_CP(CFGType=cfg_type, attributes=attrs)), **kw)


def cp_request(address: bool = True, dns: bool = True, netmask: bool = False, **kw) -> Payload:
    attrs = ([(c.INTERNAL_IP4_ADDRESS, b"")] if address else []) + ([(c.INTERNAL_IP4_NETMASK, b"")] if netmask
                                                                     else []) + ([(c.INTERNAL_IP4_DNS, b"")] if dns else [])
    return cp(c.CFG_REQUEST, attrs, **kw)


def eap(code: int, ident: int, eap_type: int | None = None, data: bytes = b"", length: int | None = None,
        **kw) -> Payload:
    """EAP payload (RFC 7296 3.16) carrying one EAP message (RFC 3748 4): raw struct (scapy's
    IKEv2_EAP is not dissected). Success/Failure have no type."""
    tail = b"" if eap_type is None else bytes([eap_type]) + data
    return Payload(c.EAP, struct.pack("!BBH", code, ident, 4 + len(tail) if length is None else length) + tail,
                   **kw)


def eap_identity_response(ident: int, identity: bytes, **kw) -> Payload:
    return eap(c.EAP_RESPONSE, ident, c.EAP_TYPE_IDENTITY, identity, **kw)


def eap_md5_response(ident: int, password: bytes, challenge: bytes, **kw) -> Payload:
    """EAP-MD5 response (RFC 3748 5.4, RFC 1994): Value = MD5(Identifier | secret | challenge)."""
    import hashlib
    value = hashlib.md5(bytes([ident]) + password + challenge).digest()
    return eap(c.EAP_RESPONSE, ident, c.EAP_TYPE_MD5, bytes([len(value)]) + value, **kw)


def unknown(ptype: int, body: bytes = b"", critical: bool = False, **kw) -> Payload:
    """A payload of a type the IUT does not know (RFC 7296 2.5 / 3.2: critical or not)."""
    return Payload(ptype, body, critical=critical, **kw)


# ----------------------------------------------------------------------------- whole messages

def header_flags(initiator: bool, response: bool, version_bit: bool = False, reserved: int = 0) -> int:
    """The Flags octet (RFC 7296 3.1): I (0x08), V (0x10), R (0x20), plus any RESERVED bits
    (0x01, 0x02, 0x04, 0x40, 0x80)."""
    return ((c.FLAG_I if initiator else 0) | (c.FLAG_R if response else 0) | (c.FLAG_V if version_bit else 0)
            | reserved)


def build_header(spi_i: bytes, spi_r: bytes, next_payload: int, exchange: int, flags: int, message_id: int,
                 length: int, version: int = c.VERSION_2_0) -> bytes:
    """The 28-byte IKE header (RFC 7296 3.1), every field explicit."""
    return struct.pack("!8s8sBBBBII", spi_i, spi_r, next_payload & 0xFF, version & 0xFF, exchange & 0xFF,
                       flags & 0xFF, message_id & 0xFFFFFFFF, length & 0xFFFFFFFF)


def build_message(spi_i: bytes, spi_r: bytes, exchange: int, message_id: int,
                  payloads: list[Payload | SkPayload], *, initiator: bool = True, response: bool = False,
                  cipher: SkCipher | None = None, major: int = 2, minor: int = 0, version: int | None = None,
                  flags: int | None = None, reserved_flags: int = 0, version_bit: bool = False,
                  next_payload: int | None = None, length: int | None = None, trailing: bytes = b"") -> bytes:
    """An IKE message (RFC 7296 3.1) with the given payload list.

    Header overrides: `major`/`minor` or the whole `version` octet, `flags` (whole octet) or
    `reserved_flags`/`version_bit` on top of I/R, `next_payload`, `length` (header Length), `trailing`
    (bytes after the last payload, not counted unless `length` says so). An `SkPayload` in the list is
    encrypted with `cipher` (it may be followed by more payloads: a non-last SK payload)."""
    ver = version if version is not None else ((major & 0xF) << 4) | (minor & 0xF)
    flg = flags if flags is not None else header_flags(initiator, response, version_bit, reserved_flags)
    first = payloads[0].type if payloads else c.NO_NEXT
    nxt = next_payload if next_payload is not None else first
    sk_at = next((i for i, p in enumerate(payloads) if isinstance(p, SkPayload)), None)
    if sk_at is None:
        body = encode_chain(payloads)  # type: ignore[arg-type]
        total = c.IKE_HEADER_LEN + len(body)
        return build_header(spi_i, spi_r, nxt, exchange, flg, message_id, total if length is None else length,
                            ver) + body + trailing
    if cipher is None:
        raise ValueError("an SK payload needs a cipher")
    before, skp, after = payloads[:sk_at], payloads[sk_at], payloads[sk_at + 1:]
    assert isinstance(skp, SkPayload)
    pre = b""
    for i, p in enumerate(before):
        pre += p.encode(payloads[i + 1].type)
    post = encode_chain(after)  # type: ignore[arg-type]
    inner = encode_chain(skp.inner)
    body_len = cipher.body_len(len(inner), skp.opts)
    sk_next = skp.next_payload if skp.next_payload is not None else (skp.inner[0].type if skp.inner else 0)
    sk_hdr = struct.pack("!BBH", sk_next, skp.flags_octet(), skp.length if skp.length is not None else 4 + body_len)
    total = c.IKE_HEADER_LEN + len(pre) + 4 + body_len + len(post)
    prefix = build_header(spi_i, spi_r, nxt, exchange, flg, message_id, total if length is None else length,
                          ver) + pre + sk_hdr
    return prefix + cipher.seal(prefix, inner, skp.opts) + post + trailing
