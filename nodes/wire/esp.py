"""ESP framing (RFC 4303) and its UDP encapsulation on port 4500 (RFC 3948).

On the wire an ESP packet is ``SPI(4) | sequence number(4) | IV | ciphertext | ICV``. How long
the IV and ICV are depends on the SA's algorithm, so `ESPPacket.decode` takes them as arguments;
the SA code (nodes/ipsec/esp_sa.py) parses its own packets on the fast path with the same
`ESP_HEADER` struct and the same rules.

On UDP port 4500 three kinds of payload share the socket (RFC 3948 section 2):
  - IKE: the 4-byte non-ESP marker (zeros) then the IKE message;
  - NAT keepalive: the single byte 0xFF;
  - ESP: anything else; its SPI is never zero (that would be the marker).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum

from nodes.wire.errors import DecodeError, need

NAT_T_PORT = 4500
ESP_HEADER = struct.Struct("!II")  # SPI, sequence number
ESP_HEADER_LEN = ESP_HEADER.size
NON_ESP_MARKER = b"\0\0\0\0"
NAT_KEEPALIVE = b"\xff"
IKE_HEADER_LEN = 28
MAX_RESERVED_SPI = 255  # RFC 4303 2.1: 1..255 reserved by IANA, 0 never sent


def check_spi(spi: int) -> None:
    """Reject SPI 0 (never on the wire) and the IANA-reserved 1..255."""
    if spi == 0:
        raise DecodeError("bad-spi", "SPI 0 is never sent (RFC 4303 2.1)")
    if spi <= MAX_RESERVED_SPI:
        raise DecodeError("reserved-spi", f"SPI {spi} is in the reserved range 1..255")


def peek_spi(data: bytes) -> int:
    """The SPI of an ESP packet, for the SAD lookup, without touching the rest."""
    need(data, ESP_HEADER_LEN, "ESP header")
    spi = int.from_bytes(data[:4], "big")
    check_spi(spi)
    return spi


@dataclass
class ESPPacket:
    """One ESP packet split into its fields (the ciphertext still encrypted)."""

    spi: int
    seq: int
    iv: bytes
    ciphertext: bytes
    icv: bytes

    def encode(self) -> bytes:
        check_spi(self.spi)
        return ESP_HEADER.pack(self.spi, self.seq) + self.iv + self.ciphertext + self.icv

    @classmethod
    def decode(cls, data: bytes, iv_len: int, icv_len: int, block_size: int = 4) -> "ESPPacket":
        """Split `data`; the ciphertext must hold at least the 2 trailer bytes and be a multiple of
        `block_size` (4 for AEADs, 16 for AES-CBC)."""
        spi = peek_spi(data)
        seq = int.from_bytes(data[4:8], "big")
        head = ESP_HEADER_LEN + iv_len
        need(data, head + max(block_size, 4) + icv_len, "ESP packet with IV, trailer and ICV")
        ct_len = len(data) - head - icv_len
        if ct_len % block_size or (head + ct_len) % 4:
            raise DecodeError(
                "bad-length", f"ciphertext of {ct_len} bytes is not a multiple of the block size {block_size}"
            )
        return cls(spi, seq, bytes(data[ESP_HEADER_LEN:head]), bytes(data[head : head + ct_len]),
                   bytes(data[head + ct_len :]))


class EncapKind(Enum):
    IKE = "ike"
    ESP = "esp"
    KEEPALIVE = "keepalive"


@dataclass
class EncapPayload:
    """A UDP/4500 payload after demultiplexing: `data` is the IKE message (marker stripped), the
    ESP packet, or empty for a keepalive."""

    kind: EncapKind
    data: bytes


def decode_udp_encap(payload: bytes) -> EncapPayload:
    """Classify the payload of a UDP datagram received on port 4500 (RFC 3948 section 2)."""
    n = len(payload)
    if n == 0:
        raise DecodeError("truncated", "empty UDP/4500 payload")
    if n == 1:
        if payload[0] == 0xFF:
            return EncapPayload(EncapKind.KEEPALIVE, b"")
        raise DecodeError("bad-keepalive", f"one-byte payload 0x{payload[0]:02x}, a keepalive is 0xff")
    need(payload, ESP_HEADER_LEN, "UDP/4500 payload (non-ESP marker or ESP header)")
    if payload[:4] == NON_ESP_MARKER:
        need(payload, 4 + IKE_HEADER_LEN, "IKE message after the non-ESP marker")
        return EncapPayload(EncapKind.IKE, bytes(payload[4:]))
    check_spi(int.from_bytes(payload[:4], "big"))
    return EncapPayload(EncapKind.ESP, payload)


def encode_udp_encap_ike(ike_message: bytes) -> bytes:
    """The UDP/4500 payload carrying an IKE message: the non-ESP marker in front."""
    return NON_ESP_MARKER + ike_message


def encode_udp_encap_esp(esp_packet: bytes) -> bytes:
    """The UDP/4500 payload carrying ESP: the packet itself (its non-zero SPI tells it apart)."""
    peek_spi(esp_packet)
    return esp_packet
