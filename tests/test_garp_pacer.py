"""The gratuitous-ARP pacer (nodes/runtime/mip/garp_pacer.py), sans-I/O on a virtual clock."""
from __future__ import annotations

from nodes.runtime.mip.garp_pacer import GarpPacer


def test_each_announcement_is_sent_once_then_repeated_after_the_delay():
    p = GarpPacer(repeat_after=0.1, burst=10, tick=0.005)
    p.announce("a")
    p.announce("b")
    assert p.due(100.0) == [("a", False), ("b", False)]
    assert p.next_deadline() == 100.1
    assert p.due(100.05) == []
    assert p.due(100.1) == [("a", True), ("b", True)]
    assert p.next_deadline() is None and len(p) == 0


def test_at_most_a_burst_per_tick_and_the_rest_at_the_next_tick():
    p = GarpPacer(repeat_after=1.0, burst=3, tick=0.01)
    for k in range(7):
        p.announce(k)
    assert [k for k, _ in p.due(5.0)] == [0, 1, 2]
    assert p.due(5.001) == []  # the burst is spent until the tick ends
    assert p.next_deadline() == 5.01
    assert [k for k, _ in p.due(5.01)] == [3, 4, 5]
    assert [k for k, _ in p.due(5.02)] == [6]
    # the repeats come in order, paced the same way
    assert [k for k, r in p.due(6.0) if r] == [0, 1, 2]
    assert [k for k, r in p.due(6.02) if r] == [3, 4, 5]


def test_a_cancelled_announcement_is_neither_sent_nor_repeated():
    p = GarpPacer(repeat_after=0.1)
    p.announce("home")
    assert p.cancel("home") and not p.cancel("home")
    assert p.due(1.0) == [] and p.next_deadline() is None
    p.announce("home")
    p.due(2.0)
    assert p.cancel("home")  # the node came home before the repeat
    assert p.due(2.2) == [] and p.next_deadline() is None and p.cancelled == 2


def test_a_newer_announcement_replaces_the_pending_one():
    p = GarpPacer(repeat_after=0.1)
    p.announce("a")
    p.announce("a")
    assert p.due(1.0) == [("a", False)]
    p.announce("a")  # again before the repeat: sent again, one repeat after it
    assert p.due(1.01) == [("a", False)]
    assert p.due(1.1) == [] and p.due(1.11) == [("a", True)] and len(p) == 0


def test_a_full_queue_drops_and_counts_new_announcements():
    p = GarpPacer(limit=2)
    assert p.announce(1) and p.announce(2) and not p.announce(3)
    assert p.announce(1)  # a key already pending is replaced, not refused
    assert p.dropped == 1
