"""The mobile node's host plumbing (nodes/runtime/mip/mn_link.py): what each ConfigureLink asks of
netlink and of the executor, with netlink recorded instead of performed."""
from __future__ import annotations

from ipaddress import IPv4Address as A, IPv4Interface as I, IPv4Network as N

import pytest

from nodes.mip.actions import ConfigureLink
from nodes.runtime.mip import mn_link
from nodes.runtime.host.netlink import RT_SCOPE_LINK
from fakelink import Recorder

HOME = A("10.1.1.100")


@pytest.fixture
def link(monkeypatch):
    rec, executor = Recorder(), Recorder()
    for fn in ("sysctl", "addr_add", "addr_flush", "routes_flush", "neigh_flush", "route_replace"):
        monkeypatch.setattr(mn_link.netlink, fn, getattr(rec, fn))
    host = mn_link.MobileNodeLink("r-eth0", HOME, executor)
    assert ("addr_add", ("lo", "10.1.1.100/32"), {}) in rec.calls
    rec.calls.clear()
    return host, rec, executor


def test_home(link):
    host, rec, executor = link
    host.configure(ConfigureLink("home", "r-eth0", HOME, A("10.1.1.1"), N("10.1.1.0/24")))
    assert executor.calls == [("release_home_traffic", (HOME,), {})]
    assert rec.calls[-2:] == [
        ("route_replace", ("10.1.1.0/24",), {"dev": "r-eth0", "src": HOME, "scope": RT_SCOPE_LINK}),
        ("route_replace", ("default",), {"gateway": A("10.1.1.1"), "dev": "r-eth0", "src": HOME})]


def test_foreign_agent(link):
    host, rec, _ = link
    host.configure(ConfigureLink("fa", "r-eth0", HOME, A("192.0.2.1")))
    assert rec.calls[-2:] == [
        ("route_replace", ("192.0.2.1/32",), {"dev": "r-eth0", "src": HOME, "scope": RT_SCOPE_LINK}),
        ("route_replace", ("default",), {"gateway": A("192.0.2.1"), "dev": "r-eth0", "src": HOME})]


def test_colocated_holds_home_traffic_and_keeps_its_address(link):
    host, rec, executor = link
    host.configure(ConfigureLink("colocated", "r-eth0", HOME, A("10.77.0.1"), address=I("10.77.0.120/24")))
    assert executor.calls == [("hold_home_traffic", (HOME,), {})]
    assert ("addr_flush", ("r-eth0",), {"keep": ("10.77.0.120/24",)}) in rec.calls
    assert rec.calls[-1] == ("route_replace", ("default",), {"gateway": A("10.77.0.1"), "dev": "r-eth0"})


def test_unknown_kind_is_refused(link):
    host, _, _ = link
    with pytest.raises(ValueError, match="unknown attachment kind"):
        host.configure(ConfigureLink("mars", "r-eth0", HOME, A("10.1.1.1")))
