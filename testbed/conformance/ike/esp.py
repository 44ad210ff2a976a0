"""ESP packets (RFC 4303), raw bytes with `cryptography`, for the child SAs an IKE exchange made.

Packet = SPI (4) | Sequence Number (4) | IV | ciphertext of (payload | Padding | Pad Length | Next
Header) | ICV (RFC 4303 section 2). Tunnel mode: the payload is a whole inner IPv4 packet, Next
Header 4 (RFC 4303 3.1.2); a dummy packet has Next Header 59 (2.6) and arbitrary contents.

* AES-GCM-16 (RFC 4106): key material = key | 4-byte salt, nonce = salt | 8-byte IV, AAD = SPI | Seq
  (32-bit sequence numbers), 16-byte ICV; padding to 4 bytes.
* AES-CBC (RFC 3602) with HMAC-SHA-256-128 (RFC 4868): 16-byte IV, padding to the 16-byte block,
  ICV = HMAC-SHA-256(key, SPI | Seq | IV | ciphertext) truncated to 16 bytes.
Padding bytes are 1, 2, 3, ... (RFC 4303 2.4) unless the caller gives others.

UDP encapsulation (RFC 3948 section 2.1): ESP goes straight into a UDP payload on port 4500 (its
non-zero SPI tells it from IKE, which carries a 4-byte zero non-ESP marker); a NAT-keepalive is the
single byte 0xFF (2.3). `classify_udp4500` tells the three apart.
"""
from __future__ import annotations

import hmac
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import constants as c
from .crypto import INTEG_HASHES


@dataclass
class EspParsed:
    """A received ESP packet: ok with the decrypted payload, or not ok with the reason."""
    ok: bool
    reason: str = ""
    spi: int = 0
    seq: int = 0
    payload: bytes = b""
    next_header: int = 0
    pad: bytes = b""


@dataclass
class EspSa:
    """One direction of an ESP SA: SPI, algorithms and keys (as IkeSession's ChildSa.esp_out/esp_in)."""
    spi: int
    encr: int
    encr_key: bytes
    integ: int | None = None
    integ_key: bytes = b""
    next_seq: int = 1

    @property
    def gcm(self) -> bool:
        return self.encr == c.ENCR_AES_GCM_16

    @property
    def iv_len(self) -> int:
        return 8 if self.gcm else 16

    @property
    def icv_len(self) -> int:
        return 16 if self.gcm else INTEG_HASHES[self.integ][2]

    def seal(self, payload: bytes, next_header: int = c.IPPROTO_IPIP, seq: int | None = None,
             iv: bytes | None = None, pad_len: int | None = None, pad_bytes: bytes | None = None,
             break_icv: bool = False, spi: int | None = None) -> bytes:
        """An ESP packet carrying `payload`; `seq` None takes the next sequence number. Overrides: the
        IV, the padding (count and bytes), a flipped ICV bit, another SPI on the wire."""
        if seq is None:
            seq, self.next_seq = self.next_seq, self.next_seq + 1
        align = 4 if self.gcm else 16
        if pad_len is None:
            pad_len = (-(len(payload) + 2)) % align
        pad = pad_bytes if pad_bytes is not None else bytes(range(1, pad_len + 1))
        plain = payload + pad + bytes([len(pad) & 0xFF, next_header])
        head = struct.pack("!II", self.spi if spi is None else spi, seq & 0xFFFFFFFF)
        iv = iv if iv is not None else os.urandom(self.iv_len)
        if self.gcm:
            sealed = AESGCM(self.encr_key[:-4]).encrypt(self.encr_key[-4:] + iv, plain, head)
            body, icv = sealed[:-16], sealed[-16:]
        else:
            enc = Cipher(algorithms.AES(self.encr_key), modes.CBC(iv)).encryptor()
            body = enc.update(plain) + enc.finalize()
            icv = self._mac(head + iv + body)
        if break_icv:
            icv = icv[:-1] + bytes([icv[-1] ^ 1])
        return head + iv + body + icv

    def dummy(self, size: int = 32, **kw) -> bytes:
        """A dummy packet (Next Header 59, RFC 4303 2.6) the receiver must discard."""
        return self.seal(os.urandom(size), next_header=c.IPPROTO_NONE, **kw)

    def _mac(self, data: bytes) -> bytes:
        digest, _, trunc = INTEG_HASHES[self.integ]
        return hmac.new(self.integ_key, data, digest).digest()[:trunc]

    def open(self, data: bytes) -> EspParsed:
        """Check and decrypt one ESP packet (no UDP header, no IP header). Never raises."""
        if len(data) < 8 + self.iv_len + self.icv_len + 2:
            return EspParsed(False, "short")
        spi, seq = struct.unpack("!II", data[:8])
        out = EspParsed(False, spi=spi, seq=seq)
        if spi != self.spi:
            out.reason = f"SPI {spi:08x} is not {self.spi:08x}"
            return out
        iv, body, icv = data[8:8 + self.iv_len], data[8 + self.iv_len:-self.icv_len], data[-self.icv_len:]
        if self.gcm:
            try:
                plain = AESGCM(self.encr_key[:-4]).decrypt(self.encr_key[-4:] + iv, body + icv, data[:8])
            except InvalidTag:
                out.reason = "icv"
                return out
        else:
            if not hmac.compare_digest(self._mac(data[:8] + iv + body), icv):
                out.reason = "icv"
                return out
            if len(body) % 16 or not body:
                out.reason = "ciphertext not block aligned"
                return out
            dec = Cipher(algorithms.AES(self.encr_key), modes.CBC(iv)).decryptor()
            plain = dec.update(body) + dec.finalize()
        if len(plain) < 2 or plain[-2] + 2 > len(plain):
            out.reason = "padding"
            return out
        pad_len = plain[-2]
        out.ok, out.next_header = True, plain[-1]
        out.payload, out.pad = plain[:-2 - pad_len], plain[-2 - pad_len:-2]
        return out


def classify_udp4500(data: bytes) -> tuple[str, bytes]:
    """('keepalive', b'') for 0xFF, ('ike', message without the marker) for a non-ESP marker,
    ('esp', packet) for a non-zero SPI (RFC 3948 sections 2.1-2.3); ('invalid', data) otherwise."""
    if data == c.NAT_KEEPALIVE:
        return "keepalive", b""
    if len(data) >= 4 and data[:4] == c.NON_ESP_MARKER:
        return "ike", data[4:]
    if len(data) >= 8:
        return "esp", data
    return "invalid", data


def inner_ipv4(src: str, dst: str, payload: bytes = b"tester", proto: str = "udp", sport: int = 40000,
               dport: int = 9) -> bytes:
    """An inner IPv4 packet for tunnel mode (scapy IP/UDP or IP/ICMP echo)."""
    from scapy.layers.inet import ICMP, IP, UDP
    layer = UDP(sport=sport, dport=dport) if proto == "udp" else ICMP(type=8, id=1, seq=1)
    return bytes(IP(src=src, dst=dst) / layer / payload)
