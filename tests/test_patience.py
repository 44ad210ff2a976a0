"""The harness's patience on a slow machine (TESTBED_SLOWDOWN): waits for something to happen grow,
nothing else does."""
import time

import pytest

from testbed import processes
from testbed.mip_checks import wait_for


@pytest.fixture
def slow(monkeypatch):
    monkeypatch.setattr(processes, "SLOWDOWN", 4.0)


def test_patience_is_the_slowdown_times_the_wait(slow):
    assert processes.patience(2.5) == 10.0


def test_patience_is_the_wait_itself_on_a_normal_machine(monkeypatch):
    monkeypatch.setattr(processes, "SLOWDOWN", 1.0)
    assert processes.patience(2.5) == 2.5


def test_a_condition_that_comes_late_is_still_waited_for_on_a_slow_machine(slow):
    start = time.monotonic()
    assert wait_for(lambda: time.monotonic() - start > 0.15, timeout=0.05, interval=0.01, what="late")


def test_a_condition_that_never_comes_names_the_wait_it_had(slow):
    with pytest.raises(AssertionError, match=r"timed out after 0.2s waiting for never"):
        wait_for(lambda: False, timeout=0.05, interval=0.01, what="never")
