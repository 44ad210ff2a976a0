"""The Mininet CLI of `testbed up`, with the testbed's own commands added:

    roles                      the scenario's roles, their kind, node and implementation
    status ROLE                a role's status (JSON) from its control socket or vendor API
    move STATION NETWORK       a layer-2 handoff (carrier down, other bridge, carrier up)
    linkdown STATION / linkup STATION
"""
from __future__ import annotations

import json

from mininet.cli import CLI

from testbed import handoff


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
        """move STATION NETWORK: re-attach a station (e.g. move r fn2)."""
        try:
            station, network = line.split()
            m = handoff.move(self.world, station, network, configure=not self._has_mobility(station))
        except (ValueError, handoff.HandoffError) as exc:
            self.stdout.write(f"usage: move STATION NETWORK ({exc})\n")
            return
        self.stdout.write(f"{station}: {m.old} -> {m.new}, carrier down {m.t_down:.6f}, up {m.t_up:.6f}\n")

    def do_linkdown(self, line):
        """linkdown STATION: drop the station's carrier."""
        handoff.link_down(self.world, line.strip())

    def do_linkup(self, line):
        """linkup STATION: bring the station's carrier back."""
        handoff.link_up(self.world, line.strip())

    def _has_mobility(self, station: str) -> bool:
        """A mobile node configures its own addresses; a plain station takes the plan's."""
        return any(h.role.node == station and h.role.kind == "mobile-node" for h in self.handles.values())
