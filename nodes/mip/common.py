"""Small pieces every Mobile IP core shares: counters, timer heap, status snapshots, address helpers."""
from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import fields
from ipaddress import IPv4Address

from nodes.wire.errors import DecodeError
from nodes.wire.mip import RequestFlags
from nodes.wire.tunnels import KINDS

ENCAPSULATIONS = tuple(KINDS)  # ipip, minimal, gre


class Counters(Counter):
    """Counts by reason; `drop(reason)` for discarded input, plain `self[key] += 1` otherwise."""

    def drop(self, reason: str) -> None:
        self[f"drop:{reason}"] += 1

    def as_dict(self) -> dict:
        return dict(sorted(self.items()))

    def drops(self) -> dict:
        """Discarded input by reason (the `drop:` counters without their prefix)."""
        return {k[5:]: v for k, v in sorted(self.items()) if k.startswith("drop:")}


class Snapshot:
    """Base of the cores' frozen status dataclasses: `as_dict()` is the JSON-able public shape
    (`role` first, tuples as lists); daemons add their runtime's keys to it."""

    role = ""

    def as_dict(self) -> dict:
        out = {"role": self.role}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


class Deadlines:
    """Per-key deadlines with a lazy heap: O(log n) updates, cheap earliest lookup."""

    def __init__(self):
        self._at: dict = {}
        self._heap: list = []

    def set(self, key, at: float) -> None:
        self._at[key] = at
        heapq.heappush(self._heap, (at, repr(key), key))

    def cancel(self, key) -> None:
        self._at.pop(key, None)

    def get(self, key) -> float | None:
        return self._at.get(key)

    def __contains__(self, key) -> bool:
        return key in self._at

    def earliest(self) -> float | None:
        while self._heap:
            at, _, key = self._heap[0]
            if self._at.get(key) == at:
                return at
            heapq.heappop(self._heap)
        return None

    def pop_due(self, now: float) -> list:
        """Keys whose deadline is <= now, removed, earliest first."""
        due = []
        while (at := self.earliest()) is not None and at <= now:
            _, _, key = heapq.heappop(self._heap)
            del self._at[key]
            due.append(key)
        return due


def ipv4_dst(packet: bytes) -> IPv4Address | None:
    return IPv4Address(packet[16:20]) if len(packet) >= 20 else None


def addr(value) -> IPv4Address:
    return value if isinstance(value, IPv4Address) else IPv4Address(value)


def parse_registration(cls, raw: bytes):
    """Decode a request or reply. Returns (message, None) or (None, (fixed part or None, error)).

    The fixed part is given when a denial can be sent back (poorly formed: 134 / 70 / 71); it is
    None when the message must be discarded silently (unreadable fixed part, or an unknown
    non-skippable extension, RFC 5944 1.9)."""
    try:
        return cls.decode(raw), None
    except DecodeError as error:
        fixed = None
        if error.reason != "unknown-extension":
            try:
                fixed = cls.decode_fixed(raw)
            except DecodeError:
                pass
        return None, (fixed, error)


def supported_encapsulations(kinds) -> tuple[str, ...]:
    """A mobility agent's encapsulations as configured: some of ipip, minimal and gre, ipip always
    among them (RFC 5944 4.1: every home and foreign agent supports IP-in-IP)."""
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in ENCAPSULATIONS]
    if unknown or "ipip" not in kinds:
        raise ValueError(f"encapsulations {list(kinds)}: choose among {', '.join(ENCAPSULATIONS)}, with ipip "
                         "among them (every agent supports IP-in-IP, RFC 5944 4.1)")
    return tuple(k for k in ENCAPSULATIONS if k in kinds)


def requested_encapsulation(flags: int) -> str | None:
    """The forward tunnel a registration request asks for with its M and G bits (RFC 5944 3.3):
    minimal, gre or ipip (neither bit); None when it asks for both at once."""
    m, g = bool(flags & RequestFlags.M), bool(flags & RequestFlags.G)
    if m and g:
        return None
    return "minimal" if m else "gre" if g else "ipip"


def encapsulation_flags(kind: str) -> int:
    """The M or G bit a mobile node sets to ask for `kind` (none for ipip)."""
    return {"ipip": 0, "minimal": int(RequestFlags.M), "gre": int(RequestFlags.G)}[kind]
