"""IpsecRuntime.stop runs once: the runtime owns its CoreDriver, and the driver's executor is not the
runtime (nodes/runtime/ipsec/runtime.IkeActions, which owns nothing), so stopping the driver does not
call back into the runtime's stop; each socket, reader and timer is released once. The Mobile IP
daemons' drivers keep stopping their executors (nodes/runtime/core_driver.py)."""
from __future__ import annotations

from collections import Counter

from nodes.runtime.core_driver import CoreDriver
from nodes.runtime.ipsec.runtime import IkeActions, IpsecRuntime


class FakeCore:
    def __init__(self):
        self.deadline = 50.0

    def drain_actions(self):
        return []

    def next_deadline(self):
        return self.deadline

    def handle_timer(self, now):
        pass

    def tick(self, now):
        pass


class Handle:
    def __init__(self, log):
        self.log = log

    def cancel(self):
        self.log["timer.cancel"] += 1


class FakeLoop:
    def __init__(self, log):
        self.log = log

    def call_later(self, delay, fn, *args):
        return Handle(self.log)

    def remove_reader(self, fd):
        self.log[f"remove_reader:{fd}"] += 1


class FakeSock:
    def __init__(self, fd, log):
        self.fd, self.log = fd, log

    def fileno(self):
        return self.fd

    def close(self):
        self.log[f"close:{self.fd}"] += 1


def running_runtime():
    log = Counter()
    rt = IpsecRuntime(FakeCore(), lambda *a, **k: None, lambda *a: None, lambda a: None)
    rt.drive_on(FakeLoop(log))
    rt.socks = {500: FakeSock(5, log), 4500: FakeSock(6, log)}
    rt.esp = FakeSock(7, log)
    rt.feed(rt.core.tick)  # the driver arms its timer at the core's deadline
    real_stop = rt.stop

    def counted_stop():
        log["IpsecRuntime.stop"] += 1
        real_stop()
    rt.stop = counted_stop  # the driver's executor would reach the runtime's stop through this attribute
    return rt, log


def test_the_drivers_executor_is_not_the_runtime():
    rt, _ = running_runtime()
    assert isinstance(rt.driver.executor, IkeActions) and rt.driver.executor is not rt
    assert rt.loop is not None, "the executor attached the runtime to the driver's loop"


def test_stop_runs_once_and_releases_each_resource_once():
    rt, log = running_runtime()
    driver = rt.driver
    stops = Counter()
    real_driver_stop, real_executor_stop = driver.stop, driver.executor.stop
    driver.stop = lambda: (stops.update(["driver"]), real_driver_stop())[1]
    driver.executor.stop = lambda: (stops.update(["executor"]), real_executor_stop())[1]
    rt.stop()
    assert log["IpsecRuntime.stop"] == 1, "stop re-entered through the driver"
    assert stops == Counter(driver=1, executor=1)
    assert log["timer.cancel"] == 1
    assert [log[f"close:{fd}"] for fd in (5, 6, 7)] == [1, 1, 1]
    assert [log[f"remove_reader:{fd}"] for fd in (5, 6, 7)] == [1, 1, 1]
    assert rt.driver is None and rt.socks == {} and rt.esp is None
    rt.stop()  # a second stop (a daemon's cleanup after a failed start, say) finds nothing left
    assert [log[f"close:{fd}"] for fd in (5, 6, 7)] == [1, 1, 1] and stops == Counter(driver=1, executor=1)


def test_a_core_driver_still_stops_its_executor():
    """The Mobile IP daemons (home_agent, foreign_agent, mobile_node, the i-MIP TunnelMobileNode) stop
    their executor through their driver's stop."""
    log = Counter()

    class Executor:
        def attach(self, loop):
            pass

        def run(self, actions):
            pass

        def stop(self):
            log["executor.stop"] += 1
    driver = CoreDriver(FakeCore(), Executor(), lambda *a, **k: None, now=lambda: 0.0, loop=FakeLoop(log))
    driver.feed(driver.core.tick)
    driver.stop()
    assert log["executor.stop"] == 1 and log["timer.cancel"] == 1
