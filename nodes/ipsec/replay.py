"""The ESP anti-replay window (RFC 4303 section 3.4.3 and Appendix A), 32-bit sequence numbers.

The window is a bitmap kept in a Python int: bit i set means sequence number ``top - i`` has been
received (and authenticated). `check` is done before the ICV is verified, `accept` only after,
so forged packets never move the window.
"""
from __future__ import annotations

MAX_WINDOW = 65536
DEFAULT_WINDOW = 64


class ReplayWindow:
    __slots__ = ("size", "top", "_bitmap", "_mask")

    def __init__(self, size: int = DEFAULT_WINDOW):
        """`size` packets wide; 0 turns replay protection off (sequence numbers are not checked)."""
        if not 0 <= size <= MAX_WINDOW:
            raise ValueError(f"replay window {size} outside 0..{MAX_WINDOW}")
        self.size = size
        self.top = 0  # highest authenticated sequence number so far
        self._bitmap = 0
        self._mask = (1 << size) - 1

    def check(self, seq: int) -> str | None:
        """None if `seq` may be new, else why not: 'replay' (already seen, or left of the window).
        Sequence number 0 is never sent (RFC 4303 3.3.3) and is 'bad-seq'."""
        if seq == 0:
            return "bad-seq"
        if not self.size or seq > self.top:
            return None
        diff = self.top - seq
        if diff >= self.size or (self._bitmap >> diff) & 1:
            return "replay"
        return None

    def accept(self, seq: int) -> None:
        """Record an authenticated `seq` (that `check` let through)."""
        if not self.size:
            return
        if seq > self.top:
            shift = seq - self.top
            self._bitmap = ((self._bitmap << shift) | 1) & self._mask if shift < self.size else 1
            self.top = seq
        else:
            self._bitmap |= 1 << (self.top - seq)

    def received(self) -> list[int]:
        """The sequence numbers inside the window that were received (for status and tests)."""
        return [self.top - i for i in range(min(self.size, self.top)) if (self._bitmap >> i) & 1]
