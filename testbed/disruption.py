"""Handoff disruption: line up a probe receiver's arrival gaps (nodes/instruments/probe.py) with a move.

For a move with carrier down at t_down and up at t_up, the disruption is the arrival gap that
spans the move: `total` is its length, `after_up` the part after the carrier came back (the
time the mobility protocol needed once the link was there again).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Disruption:
    t_down: float
    t_up: float
    total: float  # seconds without arrivals around the move
    after_up: float  # seconds from carrier up to the first arrival
    lost: int

    def as_dict(self) -> dict:
        return {"t_down": self.t_down, "t_up": self.t_up, "total_s": round(self.total, 6),
                "after_up_s": round(self.after_up, 6), "lost": self.lost}


def disruption(t_down: float, t_up: float, receiver: dict) -> Disruption:
    """The disruption of one move from a probe receiver's status (`gaps`, `last_arrival`).

    Raises ValueError when no packet arrived after the move: then the node never came back."""
    for gap in receiver["gaps"]:
        if gap["from_t"] <= t_up and gap["to_t"] >= t_down:
            return Disruption(t_down, t_up, gap["to_t"] - gap["from_t"], max(0.0, gap["to_t"] - t_up), gap["lost"])
    last = receiver.get("last_arrival")
    if last is None or last < t_up:
        raise ValueError("no probe packet arrived after the move: the stream did not recover")
    return Disruption(t_down, t_up, 0.0, 0.0, 0)
