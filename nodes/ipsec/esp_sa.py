"""ESP security associations in tunnel mode (RFC 4303), sans-I/O.

An `OutboundSA` turns an inner IPv4 packet into ESP bytes (`encrypt`), an `InboundSA` turns ESP
bytes back into the inner packet (`decrypt`) or raises `ESPDrop` with a reason. Both take the
current time as an argument and never read a clock. The IKE core hands over the child SA's keys:

    sa = make_sa("aes-gcm-16-128", enc_key=key_and_salt, integ_key=b"", spi=0xc0ffee01,
                 direction="out", now=now)

Algorithms (names as the IKE core spells them):
  - aes-gcm-16-128, aes-gcm-16-256 (RFC 4106): enc_key is key || 4-byte salt, no integ_key;
    nonce = salt || IV, AAD = SPI || seq, 16-byte ICV. The IV is the sequence number (as
    strongSwan does), so it never repeats under one key.
  - aes-cbc-128-hmac-sha256-128, aes-cbc-256-hmac-sha256-128 (RFC 3602, 4868): 16-byte
    unpredictable IV, ICV = HMAC-SHA-256 over SPI..ciphertext truncated to 16 bytes, checked
    in constant time before anything is decrypted.

Padding is 1, 2, 3, ... (RFC 4303 2.4) and is checked on receive; the next header is 4 (IPv4)
since this is tunnel mode. Sequence numbers are 32-bit (no ESN): the SA asks for a rekey near the
end of the space and refuses to wrap. Lifetimes in seconds and bytes: crossing a soft limit sets
`rekey_due` and queues a "rekey-due" `SAEvent` action; crossing a hard limit marks the SA
`expired` (queues "expired"), after which it drops everything with reason "sa-expired".

The SA follows nodes/core.py's contract. `encrypt` (outbound) and `decrypt` (inbound) are its
role-specific inputs and, being the per-packet path, return the bytes (or raise ESPDrop, counted
by reason in the status) instead of queueing an action. `receive_datagram` is `decrypt` with the
inner packet queued as a `Decrypted` action; `handle_timer(now)` checks the time limits at
`next_deadline()`; `drain_actions()` hands over the SAEvents; `status(now)` is an `EspSaStatus`.
The CBC IVs come from the injected `random` (os.urandom by default), read in chunks.

Performance: the per-packet path does a handful of int compares, one AEAD call (GCM) or one
chained CBC update plus one HMAC (CBC), and a couple of byte joins; cipher objects live as long as
the SA.
"""
from __future__ import annotations

import math
from hmac import compare_digest
from collections import Counter
from dataclasses import dataclass
from typing import Literal, Union

Buffer = Union[bytes, bytearray, memoryview]  # collections.abc.Buffer arrives in Python 3.12

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.hmac import HMAC
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nodes.core import Addr, RandomSource, system_random
from nodes.ipsec.replay import DEFAULT_WINDOW, ReplayWindow
from nodes.wire.errors import DecodeError
from nodes.wire.esp import ESP_HEADER, ESP_HEADER_LEN, MAX_RESERVED_SPI

NEXT_HEADER_IPV4 = 4
NEXT_HEADER_NONE = 59  # a dummy packet (RFC 4303 2.6): authenticated, then discarded
SEQ_MAX = 0xFFFFFFFF  # no ESN: the last usable sequence number
SEQ_SOFT = SEQ_MAX - (1 << 24)  # ask for a rekey this many packets before the end
_PADDING = [bytes(range(1, n + 1)) for n in range(256)]


class ESPDrop(DecodeError):
    """A packet an SA refuses. `reason` is the drop counter's key: truncated, bad-length,
    wrong-spi, bad-seq, replay, bad-icv, bad-padding, bad-next-header, dummy-packet,
    sa-expired, seq-exhausted."""


@dataclass(frozen=True)
class EspAlgorithm:
    name: str
    aead: bool
    key_len: int  # AES key bytes
    salt_len: int  # bytes after the key in the encryption keying material (GCM salt)
    integ_key_len: int
    iv_len: int
    icv_len: int
    align: int  # the ciphertext is a multiple of this many bytes

    @property
    def enc_keymat_len(self) -> int:
        return self.key_len + self.salt_len

    @property
    def overhead(self) -> int:
        """ESP bytes around the ciphertext: header, IV and ICV."""
        return ESP_HEADER_LEN + self.iv_len + self.icv_len


ALGORITHMS: dict[str, EspAlgorithm] = {
    a.name: a
    for a in (
        EspAlgorithm("aes-gcm-16-128", True, 16, 4, 0, 8, 16, 4),
        EspAlgorithm("aes-gcm-16-256", True, 32, 4, 0, 8, 16, 4),
        EspAlgorithm("aes-cbc-128-hmac-sha256-128", False, 16, 0, 32, 16, 16, 16),
        EspAlgorithm("aes-cbc-256-hmac-sha256-128", False, 32, 0, 32, 16, 16, 16),
    )
}


class _GcmTransform:
    """AES-GCM-16 (RFC 4106)."""

    def __init__(self, alg: EspAlgorithm, enc_key: bytes, integ_key: bytes, random: RandomSource):
        self._aead = AESGCM(enc_key[: alg.key_len])
        self._salt = enc_key[alg.key_len :]

    def seal(self, header: bytes, seq: int, inner: Buffer, trailer: bytes) -> bytes:
        iv = seq.to_bytes(8, "big")
        return header + iv + self._aead.encrypt(self._salt + iv, inner + trailer, header)

    def open(self, packet: memoryview) -> bytes:
        try:
            return self._aead.decrypt(self._salt + packet[8:16], packet[16:], packet[:8])
        except InvalidTag:
            raise ESPDrop("bad-icv", "AES-GCM tag does not verify") from None


class _CbcHmacTransform:
    """AES-CBC with HMAC-SHA-256-128 (RFC 3602, RFC 4868).

    One chained CBC context per direction serves the SA's whole life. Sending, a random block
    is encrypted in front of the plaintext: its ciphertext E(random ^ previous block) is the
    packet's IV, unpredictable as RFC 3602 asks, and the rest is exactly CBC under that IV.
    Receiving, IV || ciphertext is fed in: the first block out is junk, the rest the plaintext.
    This saves building a cipher context per packet (the most expensive step otherwise).

    The HMAC is keyed once and copied per packet (cryptography's HMAC: its copy costs less than
    the standard library's Python-level one). The random blocks are taken from the random source
    RANDOM_CHUNK bytes at a time (one getrandom call per 256 packets instead of one per packet).
    """

    RANDOM_CHUNK = 4096

    def __init__(self, alg: EspAlgorithm, enc_key: bytes, integ_key: bytes, random: RandomSource):
        cipher = Cipher(algorithms.AES(enc_key), modes.CBC(bytes(16)))
        self._encryptor = cipher.encryptor()
        self._decryptor = cipher.decryptor()
        self._mac = HMAC(integ_key, SHA256())
        self._icv_len = alg.icv_len
        self._random = random
        self._pool = b""
        self._pool_at = 0

    def seal(self, header: bytes, seq: int, inner: Buffer, trailer: bytes) -> bytes:
        at = self._pool_at
        if at >= len(self._pool):
            self._pool, at = self._random(self.RANDOM_CHUNK), 0
        self._pool_at = at + 16
        ct = self._encryptor.update(b"".join((self._pool[at:at + 16], inner, trailer)))
        mac = self._mac.copy()
        mac.update(header)
        mac.update(ct)
        return b"".join((header, ct, mac.finalize()[: self._icv_len]))

    def open(self, packet: memoryview) -> bytes:
        icv_at = len(packet) - self._icv_len
        mac = self._mac.copy()
        mac.update(packet[:icv_at])
        if not compare_digest(mac.finalize()[: self._icv_len], packet[icv_at:]):
            raise ESPDrop("bad-icv", "HMAC-SHA-256-128 does not verify")
        return self._decryptor.update(packet[ESP_HEADER_LEN:icv_at])[16:]


@dataclass(frozen=True)
class Lifetime:
    """Soft and hard limits; None means no limit. Soft must not exceed hard."""

    soft_seconds: float | None = None
    hard_seconds: float | None = None
    soft_bytes: int | None = None
    hard_bytes: int | None = None

    def __post_init__(self) -> None:
        for kind in ("seconds", "bytes"):
            soft, hard = getattr(self, f"soft_{kind}"), getattr(self, f"hard_{kind}")
            for name, value in ((f"soft_{kind}", soft), (f"hard_{kind}", hard)):
                if value is not None and value <= 0:
                    raise ValueError(f"lifetime {name} must be positive, got {value}")
            if soft is not None and hard is not None and soft > hard:
                raise ValueError(f"lifetime soft_{kind} {soft} exceeds hard_{kind} {hard}")


@dataclass(frozen=True)
class SAEvent:
    """Action: the SA crossed a soft ("rekey-due") or hard ("expired") limit."""

    kind: Literal["rekey-due", "expired"]
    spi: int
    direction: str
    cause: Literal["time", "bytes", "sequence"]


@dataclass(frozen=True)
class Decrypted:
    """Action of `receive_datagram`: the authenticated inner packet."""

    spi: int
    inner: bytes


@dataclass(frozen=True)
class EspSaStatus:
    spi: int
    direction: str
    algorithm: str
    packets: int
    bytes: int
    age: float
    rekey_due: bool
    expired: bool
    drops: tuple[tuple[str, int], ...]
    seq: int | None = None  # outbound: the last sequence number sent
    replay_window: int | None = None  # inbound
    highest_seq: int | None = None  # inbound
    keys: tuple[str, str] | None = None  # (enc_key, integ_key) hex, when asked for

    def as_dict(self) -> dict:
        out = {"spi": f"0x{self.spi:08x}", "direction": self.direction, "algorithm": self.algorithm,
               "packets": self.packets, "bytes": self.bytes, "age": self.age, "rekey_due": self.rekey_due,
               "expired": self.expired, "drops": dict(self.drops)}
        if self.direction == "out":
            out["seq"] = self.seq
        else:
            out["replay_window"], out["highest_seq"] = self.replay_window, self.highest_seq
        if self.keys is not None:
            out["enc_key"], out["integ_key"] = self.keys
        return out


class _ESPSA:
    """What both directions share: algorithm and keys, counters, lifetimes and actions."""

    direction = ""

    def __init__(self, algorithm: str, enc_key: bytes, integ_key: bytes, spi: int, now: float,
                 lifetime: Lifetime | None = None, random: RandomSource = system_random):
        alg = ALGORITHMS.get(algorithm)
        if alg is None:
            raise ValueError(f"unknown ESP algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")
        if len(enc_key) != alg.enc_keymat_len:
            raise ValueError(f"{algorithm} needs {alg.enc_keymat_len} bytes of encryption key, got {len(enc_key)}")
        if len(integ_key) != alg.integ_key_len:
            raise ValueError(f"{algorithm} needs {alg.integ_key_len} bytes of integrity key, got {len(integ_key)}")
        if not MAX_RESERVED_SPI < spi <= 0xFFFFFFFF:
            raise ValueError(f"SPI {spi:#x} outside 0x100..0xffffffff")
        self.algorithm = alg
        self.spi = spi
        self.enc_key = bytes(enc_key)
        self.integ_key = bytes(integ_key)
        self.created = now
        self.lifetime = lifetime or Lifetime()
        self.packets = 0
        self.bytes = 0  # inner packet bytes
        self.rekey_due = False
        self.expired = False
        self.drops: Counter[str] = Counter()
        self._actions: list[SAEvent | Decrypted] = []  # a plain list: the packet path tests it cheaply
        self._transform = (_GcmTransform if alg.aead else _CbcHmacTransform)(alg, self.enc_key, self.integ_key,
                                                                               random)
        # Per-packet checks compare against these two thresholds only (see _arm).
        self._time_check = math.inf
        self._byte_check = math.inf
        self._arm()

    # -- lifetimes -----------------------------------------------------------------------------
    def _arm(self) -> None:
        """Set the next time and byte thresholds at which `_update_limits` must run."""
        if self.expired:
            self._time_check, self._byte_check = -math.inf, math.inf
            return
        lt, t, b = self.lifetime, math.inf, math.inf
        if not self.rekey_due:
            if lt.soft_seconds is not None:
                t = self.created + lt.soft_seconds
            if lt.soft_bytes is not None:
                b = lt.soft_bytes
        if lt.hard_seconds is not None:
            t = min(t, self.created + lt.hard_seconds)
        if lt.hard_bytes is not None:
            b = min(b, lt.hard_bytes)
        self._time_check, self._byte_check = t, b

    def _update_limits(self, now: float) -> None:
        lt = self.lifetime
        for cause, value, soft, hard in (
            ("time", now - self.created, lt.soft_seconds, lt.hard_seconds),
            ("bytes", self.bytes, lt.soft_bytes, lt.hard_bytes),
        ):
            if hard is not None and value >= hard:
                self._expire(cause)
            elif soft is not None and value >= soft:
                self._soft_expire(cause)
        self._arm()

    def _soft_expire(self, cause: str) -> None:
        if not self.rekey_due and not self.expired:
            self.rekey_due = True
            self._actions.append(SAEvent("rekey-due", self.spi, self.direction, cause))

    def _expire(self, cause: str) -> None:
        if not self.expired:
            self.expired = True
            self._actions.append(SAEvent("expired", self.spi, self.direction, cause))
            self._arm()

    def handle_timer(self, now: float) -> None:
        """Check the time limits (at `next_deadline()`); crossings come out as SAEvent actions."""
        if now >= self._time_check:
            self._update_limits(now)

    @property
    def has_actions(self) -> bool:
        """Whether drain_actions() would hand anything over (the packet path asks after each packet)."""
        return bool(self._actions)

    def drain_actions(self) -> list[SAEvent | Decrypted]:
        actions, self._actions = self._actions, []
        return actions

    def next_deadline(self) -> float | None:
        """When the next time limit falls (to arm a timer), or None."""
        return self._time_check if math.isfinite(self._time_check) else None

    # -- status --------------------------------------------------------------------------------
    def status(self, now: float, *, include_keys: bool = False) -> EspSaStatus:
        """A snapshot; with the keys (hex) when asked, for decrypting captures in tests."""
        return EspSaStatus(self.spi, self.direction, self.algorithm.name, self.packets, self.bytes,
                           now - self.created, self.rekey_due, self.expired, tuple(sorted(self.drops.items())),
                           keys=(self.enc_key.hex(), self.integ_key.hex()) if include_keys else None,
                           **self._direction_status())

    def _direction_status(self) -> dict:
        raise NotImplementedError


class OutboundSA(_ESPSA):
    direction = "out"

    def __init__(self, algorithm: str, enc_key: bytes, integ_key: bytes, spi: int, now: float,
                 lifetime: Lifetime | None = None, random: RandomSource = system_random):
        super().__init__(algorithm, enc_key, integ_key, spi, now, lifetime, random)
        self.seq = 0  # the last sequence number sent
        align = self.algorithm.align
        # trailer (padding 1, 2, 3..., pad length, next header) by (len(inner) + 2) % align
        self._trailers = [
            _PADDING[(-r) % align] + bytes(((-r) % align, NEXT_HEADER_IPV4)) for r in range(align)
        ]
        self._align = align

    def encrypt(self, inner: Buffer, now: float) -> bytes:
        """ESP bytes (header to ICV) carrying the IPv4 packet `inner` in tunnel mode."""
        try:
            if now >= self._time_check:
                self._update_limits(now)
                if self.expired:
                    raise ESPDrop("sa-expired", f"outbound SA 0x{self.spi:08x} has expired")
            seq = self.seq + 1
            if seq >= SEQ_SOFT:
                self._sequence_limits(seq)
        except ESPDrop as drop:  # free unless raised (Python 3.11)
            self.drops[drop.reason] += 1
            raise
        self.seq = seq
        n = len(inner)
        packet = self._transform.seal(
            ESP_HEADER.pack(self.spi, seq), seq, inner, self._trailers[(n + 2) % self._align]
        )
        self.packets += 1
        self.bytes += n
        if self.bytes >= self._byte_check:
            self._update_limits(now)
        return packet

    def _sequence_limits(self, seq: int) -> None:
        if seq > SEQ_MAX:
            self._expire("sequence")
            raise ESPDrop("seq-exhausted", f"outbound SA 0x{self.spi:08x} used all 2^32-1 sequence numbers")
        self._soft_expire("sequence")
        self._arm()

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """An outbound SA receives nothing: counted as a drop."""
        self.drops["outbound-sa"] += 1

    def _direction_status(self) -> dict:
        return {"seq": self.seq}


class InboundSA(_ESPSA):
    direction = "in"

    def __init__(self, algorithm: str, enc_key: bytes, integ_key: bytes, spi: int, now: float,
                 lifetime: Lifetime | None = None, replay_window: int = DEFAULT_WINDOW,
                 random: RandomSource = system_random):
        super().__init__(algorithm, enc_key, integ_key, spi, now, lifetime, random)
        self.window = ReplayWindow(replay_window)
        alg = self.algorithm
        self._overhead = alg.overhead
        self._min_len = alg.overhead + max(alg.align, 4)
        self._align = alg.align

    def decrypt(self, packet: Buffer, now: float) -> bytes:
        """The inner IPv4 packet of the ESP bytes `packet` (header to ICV), or ESPDrop (counted)."""
        try:  # free unless raised (Python 3.11)
            if now >= self._time_check:
                self._update_limits(now)
                if self.expired:
                    raise ESPDrop("sa-expired", f"inbound SA 0x{self.spi:08x} has expired")
            n = len(packet)
            if n < self._min_len:
                raise ESPDrop("truncated",
                              f"{n} bytes, an ESP packet of {self.algorithm.name} needs {self._min_len}")
            if (n - self._overhead) % self._align:
                raise ESPDrop("bad-length",
                              f"ciphertext of {n - self._overhead} bytes is not a multiple of {self._align}")
            spi, seq = ESP_HEADER.unpack_from(packet)
            if spi != self.spi:
                raise ESPDrop("wrong-spi", f"SPI 0x{spi:08x} given to SA 0x{self.spi:08x}")
            why = self.window.check(seq)
            if why:
                raise ESPDrop(why, f"sequence number {seq}, window top {self.window.top}")
            plain = self._transform.open(memoryview(packet))
            self.window.accept(seq)  # authenticated: now the window may move
            pad_len, next_header = plain[-2], plain[-1]
            end = len(plain) - 2 - pad_len
            if end < 0 or plain[end:-2] != _PADDING[pad_len]:
                raise ESPDrop("bad-padding", f"pad length {pad_len}, padding is not 1, 2, 3, ...")
            if next_header != NEXT_HEADER_IPV4:
                if next_header == NEXT_HEADER_NONE:
                    raise ESPDrop("dummy-packet", "next header 59 (traffic flow confidentiality padding)")
                raise ESPDrop("bad-next-header", f"next header {next_header}, tunnel mode carries IPv4 (4)")
        except ESPDrop as drop:
            self.drops[drop.reason] += 1
            raise
        inner = plain[:end]
        self.packets += 1
        self.bytes += end
        if self.bytes >= self._byte_check:
            self._update_limits(now)
        return inner

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """`decrypt`, with the inner packet queued as a Decrypted action (drops are counted)."""
        try:
            inner = self.decrypt(data, now)
        except ESPDrop:
            return
        self._actions.append(Decrypted(self.spi, inner))

    def _direction_status(self) -> dict:
        return {"replay_window": self.window.size, "highest_seq": self.window.top}


def make_sa(algorithm: str, enc_key: bytes, integ_key: bytes, spi: int,
            direction: Literal["in", "out", "inbound", "outbound"], now: float,
            lifetime: Lifetime | None = None, replay_window: int = DEFAULT_WINDOW,
            random: RandomSource = system_random) -> InboundSA | OutboundSA:
    """The SA the IKE core asks for (`replay_window` applies to inbound SAs only)."""
    if direction in ("in", "inbound"):
        return InboundSA(algorithm, enc_key, integ_key, spi, now, lifetime, replay_window, random)
    if direction in ("out", "outbound"):
        return OutboundSA(algorithm, enc_key, integ_key, spi, now, lifetime, random)
    raise ValueError(f"direction {direction!r}, expected 'in' or 'out'")


def warm_up(algorithms: tuple[str, ...] | None = None) -> None:
    """Build one SA pair of each algorithm with throwaway keys and pass a packet through it. The
    first cipher context of a kind in a process costs milliseconds (the crypto library loads and
    fetches the algorithm); a daemon pays that at start, not between the IKE_AUTH response and its
    tunnel's first packet."""
    for name in algorithms or tuple(ALGORITHMS):
        alg = ALGORITHMS[name]
        enc_key, integ_key = bytes(alg.enc_keymat_len), bytes(alg.integ_key_len)
        out = OutboundSA(name, enc_key, integ_key, 0x100 + 1, 0.0)
        InboundSA(name, enc_key, integ_key, 0x100 + 1, 0.0).decrypt(out.encrypt(bytes(20), 0.0), 0.0)
