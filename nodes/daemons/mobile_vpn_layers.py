"""The mobile VPN node's two daemon layers, composed in its own process and asyncio loop: the
mobile node daemon's objects (nodes/daemons/mobile_node.py, `start`) and the VPN client's
(nodes/daemons/vpn_client.py, `start`), built from config objects (nodes/daemons/mobile_vpn_config.py),
no files and no argument namespaces between them.

Each layer logs through the node's log under its name, and every line it logs is an event: the
layer calls its listeners with it (a move, a registration, a tunnel up or down), so the node reacts
at once instead of reading the layers' status on a timer; the status is read in-process when the
node acts or is asked.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Callable

from nodes.daemons import mobile_node, vpn_client
from nodes.runtime.ipsec.config import Cfg

Listener = Callable[[str, dict], None]


class Layer:
    def __init__(self, name: str, log):
        self.name, self._log = name, log
        self.listeners: list[Listener] = []  # called with (event, fields) for each line the layer logs
        self.runs = 0

    def log(self, event: str, **fields) -> None:
        self._log(event, layer=self.name, **fields)
        for listener in self.listeners:
            listener(event, fields)


class MipLayer(Layer):
    """The Mobile IP layer (x-MIP with RFC 5265): the mobile node daemon, started once."""

    def __init__(self, cfg, extra: dict, log, log_json: str | None):
        super().__init__("mip", log)
        self.cfg, self.extra = cfg, dict(extra)
        if self.extra["dhcp_dir"] is None and log_json:  # next to the node's log: kept with the case
            log_path = Path(log_json)
            self.extra["dhcp_dir"] = str(log_path.parent / (log_path.name.split(".events")[0] + ".mip.dhcp"))
        self.daemon: mobile_node.MobileNodeDaemon | None = None

    async def start(self) -> None:
        self.daemon = mobile_node.start(self.cfg, self.extra, self.log)
        self.runs += 1

    async def stop(self) -> None:
        if self.daemon is not None:
            daemon, self.daemon = self.daemon, None
            await daemon.close()

    def status(self) -> dict | None:
        return self.daemon.status() if self.daemon is not None else None


def ike_messages(status: dict | None) -> int:
    if not status:
        return 0
    c = status.get("counters", {})
    return int(c.get("ike_in", 0)) + int(c.get("ike_out", 0))


class VpnLayer(Layer):
    """The VPN client: a new client per run (a new IKE SA; the nesting decides when)."""

    def __init__(self, cfg: Cfg, log):
        super().__init__("vpn", log)
        self.cfg = cfg
        self.client: vpn_client.Client | None = None
        self.ike_done = 0  # IKE messages of the runs that have ended

    @property
    def running(self) -> bool:
        return self.client is not None

    async def start(self) -> None:
        self.client = vpn_client.start(self.cfg, self.log)
        self.runs += 1

    async def stop(self) -> None:
        if self.client is not None:
            self.ike_done += ike_messages(self.status())
            client, self.client = self.client, None
            await client.cleanup()

    def status(self) -> dict | None:
        return self.client.status() if self.client is not None else None

    def ike_messages(self) -> int:
        """IKE messages sent and received over every run."""
        return self.ike_done + ike_messages(self.status())
