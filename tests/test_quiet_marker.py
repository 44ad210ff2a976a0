"""Silence windows ended by a marker (testbed/conformance/inbox.py): the unwanted item is still
seen (at once, also after the marker's answer within the grace), the window ends MARKER_GRACE after
the marker's answer, and without one it is waited whole."""
import time

from testbed.conformance.inbox import MARKER_GRACE, Inbox, quiet_until_marker


def feed(schedule):
    """recv(timeout) over a list of (offset seconds, item): what is due by then, else waits."""
    start = time.monotonic()
    pending = sorted(schedule, key=lambda x: x[0])

    def recv(timeout):
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic() - start
            due = [item for at, item in pending if at <= now]
            if due:
                del pending[:len(due)]
                return due
            wait = min(deadline - time.monotonic(), (pending[0][0] - now) if pending else timeout)
            if wait <= 0:
                return []
            time.sleep(wait)
    return recv


def test_unwanted_ends_the_window_at_once():
    q = quiet_until_marker(feed([(0.01, "bad")]), lambda i: i == "bad", lambda i: i == "mark", 1.0)
    assert q.item == "bad" and not q.silent and q.waited < 0.5


def test_marker_answer_ends_the_window_after_the_grace():
    q = quiet_until_marker(feed([(0.01, "mark")]), lambda i: i == "bad", lambda i: i == "mark", 1.0)
    assert q.silent and q.marker == "mark"
    assert MARKER_GRACE <= q.waited < 0.5


def test_unwanted_within_the_grace_is_still_seen():
    q = quiet_until_marker(feed([(0.01, "mark"), (0.01 + MARKER_GRACE / 2, "bad")]),
                           lambda i: i == "bad", lambda i: i == "mark", 1.0)
    assert q.item == "bad"


def test_without_the_marker_answer_the_whole_window_is_waited():
    q = quiet_until_marker(feed([(0.01, "other")]), lambda i: i == "bad", lambda i: i == "mark", 0.3)
    assert q.silent and q.marker is None and q.waited >= 0.3
    q = quiet_until_marker(feed([(0.2, "bad")]), lambda i: i == "bad", None, 0.3)
    assert q.item == "bad"


class _Box(Inbox):
    def __init__(self, schedule):
        self.inbox, self._recv = [], feed(schedule)

    def _pump(self, timeout):
        self.inbox += self._recv(timeout)


def test_inbox_keeps_what_matches_neither():
    box = _Box([(0.0, "other"), (0.01, "mark")])
    q = box.quiet_until_marker(lambda i: i == "bad", lambda i: i == "mark", 1.0)
    assert q.silent and q.marker == "mark" and q.waited < 0.5
    assert box.inbox == ["other"]
