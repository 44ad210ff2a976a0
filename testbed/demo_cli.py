"""The Mininet CLI of `testbed up`, with the testbed's own commands added:

    roles                      the scenario's roles, their kind, node and implementation
    status ROLE                a role's status (JSON) from its control socket or vendor API
    move STATION NETWORK [S]   a layer-2 handoff (carrier down, other bridge, carrier up); for a
                               mobile VPN node on the station, the IKE messages it sent and
                               received during the move and S seconds after (default 3)
    linkdown STATION / linkup STATION
"""
from __future__ import annotations

import json
import time

from mininet.cli import CLI

from testbed import handoff


MOBILE_KINDS = ("mobile-node", "mobile-vpn-node")


class TestbedCLI(CLI):
    prompt = "testbed> "

    def __init__(self, world, handles: dict, **kwargs):
        self.world, self.handles = world, handles
        super().__init__(world.net, **kwargs)

    def do_roles(self, _line):
        """List the scenario's roles."""
        for name, h in self.handles.items():
            r = h.role
            self.stdout.write(f"{name:10} {r.kind:14} on {r.node:5} ({r.impl})\n")

    def do_status(self, line):
        """status ROLE: print the role's status as JSON."""
        handle = self.handles.get(line.strip())
        if handle is None:
            self.stdout.write(f"no role {line.strip()!r}; roles: {', '.join(self.handles) or 'none'}\n")
            return
        try:
            self.stdout.write(json.dumps(handle.status(), indent=2, default=str) + "\n")
        except Exception as exc:  # a dead daemon must not end the demo
            self.stdout.write(f"status of {line.strip()} failed: {exc}\n")

    def do_move(self, line):
        """move STATION NETWORK [SETTLE_S]: re-attach a station (e.g. move r fn2); a mobile VPN node's
        IKE message counter is shown before and SETTLE_S seconds (default 3) after the move."""
        try:
            station, network, *rest = line.split()
            settle = float(rest[0]) if rest else 3.0
            counters = self._ike_counters(station)
            m = handoff.move(self.world, station, network, configure=not self._has_mobility(station))
        except (ValueError, handoff.HandoffError) as exc:
            self.stdout.write(f"usage: move STATION NETWORK [SETTLE_S] ({exc})\n")
            return
        self.stdout.write(f"{station}: {m.old} -> {m.new}, carrier down {m.t_down:.6f}, up {m.t_up:.6f}\n")
        if counters:
            time.sleep(settle)
            for name, before in counters.items():
                after = self._ike_counters(station).get(name)
                self.stdout.write(f"{name}: IKE messages {before} before the move, {after} {settle:g} s after "
                                  f"(+{after - before if after is not None else '?'})\n")

    def do_linkdown(self, line):
        """linkdown STATION: drop the station's carrier."""
        handoff.link_down(self.world, line.strip())

    def do_linkup(self, line):
        """linkup STATION: bring the station's carrier back."""
        handoff.link_up(self.world, line.strip())

    def _has_mobility(self, station: str) -> bool:
        """A mobile node configures its own addresses; a plain station takes the plan's."""
        return any(h.role.node == station and h.role.kind in MOBILE_KINDS for h in self.handles.values())

    def _ike_counters(self, station: str) -> dict[str, int]:
        """The IKE messages (sent and received, retransmissions included) of each mobile VPN node
        on the station, from its status."""
        counters = {}
        for name, h in self.handles.items():
            if h.role.node == station and h.role.kind == "mobile-vpn-node":
                try:
                    counters[name] = int(h.status()["ike_messages"])
                except Exception as exc:  # a dead daemon must not end the demo
                    self.stdout.write(f"status of {name} failed: {exc}\n")
        return counters
