"""Layer-2 attachment changes of a station: move between access networks, link down/up, detach.

A station's veth has its access-point end (ap-<station>) in the world's namespace. A move takes
that end down (the station sees its carrier drop, as when leaving an access point), enslaves it
to the new network's bridge and brings it up (carrier returns). Each change is timestamped on
the world's timeline so handoff disruption can be measured against it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from pyroute2 import IPRoute

from testbed import naming


@dataclass(frozen=True)
class Move:
    station: str
    old: str | None
    new: str | None
    t_down: float  # carrier dropped (time.time())
    t_up: float | None  # carrier back on the new network; None for a detach

    def as_dict(self) -> dict:
        return {"station": self.station, "from": self.old, "to": self.new, "t_down": self.t_down, "t_up": self.t_up}


class HandoffError(RuntimeError):
    pass


def _port(ipr: IPRoute, station: str) -> int:
    found = ipr.link_lookup(ifname=naming.station_port(station))
    if not found:
        raise HandoffError(f"station {station} has no access-point port; is it a station of this world?")
    return found[0]


def _bridge(ipr: IPRoute, world, segment: str) -> int:
    if segment not in world.plan.attachments:
        raise HandoffError(f"a station cannot attach to {segment!r}: choose one of {sorted(world.plan.attachments)}")
    return ipr.link_lookup(ifname=world.plan.segments[segment].bridge)[0]


def move(world, station: str, to: str, configure: bool = True, dwell: float = 0.0) -> Move:
    """Re-attach `station` to network `to`: carrier down, switch bridge, (dwell), carrier up.

    With `configure` the station takes the plan's address and default route for that network
    (a host without a mobility client would do this by DHCP); a mobility daemon on the station
    does its own configuration, so cases that run one pass configure=False.
    """
    old = world.attached.get(station)
    with IPRoute() as ipr:
        port = _port(ipr, station)
        bridge = _bridge(ipr, world, to)
        ipr.link("set", index=port, state="down")
        t_down = time.time()
        ipr.link("set", index=port, master=bridge)
        if dwell:
            time.sleep(dwell)
        ipr.link("set", index=port, state="up")
        t_up = time.time()
    world.attached[station] = to
    if configure:
        configure_station(world, station, to)
    m = Move(station, old, to, t_down, t_up)
    world.mark("move", **m.as_dict())
    return m


def link_down(world, station: str) -> float:
    with IPRoute() as ipr:
        ipr.link("set", index=_port(ipr, station), state="down")
    return world.mark("link-down", station=station)["t"]


def link_up(world, station: str) -> float:
    with IPRoute() as ipr:
        ipr.link("set", index=_port(ipr, station), state="up")
    return world.mark("link-up", station=station)["t"]


def detach(world, station: str) -> Move:
    """Take the station off every network (carrier down, no bridge)."""
    old = world.attached.get(station)
    with IPRoute() as ipr:
        port = _port(ipr, station)
        ipr.link("set", index=port, state="down")
        t_down = time.time()
        ipr.link("set", index=port, master=0)
    world.attached[station] = None
    m = Move(station, old, None, t_down, None)
    world.mark("detach", **m.as_dict())
    return m


def configure_station(world, station: str, segment: str) -> None:
    """Give the station the plan's address on `segment` and a default route through its router."""
    att = world.plan.attachments[segment]
    intf = naming.station_ifname(station)
    prefix = world.plan.segments[segment].prefix.prefixlen
    world.run_in(station, f"ip addr flush dev {intf} && ip addr add {att.address}/{prefix} dev {intf} && "
                          f"ip route replace default via {att.router} dev {intf}", check=True)
