"""Our daemons and instruments inside nodes: `python -m nodes.<module>` with a control socket and structured log;
the `ours` profile (PROFILE) fills the roles with them."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from testbed import FIXTURES, control
from testbed.profile_api import RoleHandle
from testbed.processes import NodeProcess


@dataclass
class Daemon:
    node: str
    name: str
    process: NodeProcess
    control_path: Path
    events_path: Path

    def _command(self, cmd: str, **args):
        """One command over the daemon's control socket (nodes/runtime/control.py), its result."""
        return control.call(str(self.control_path), cmd, **args)

    def status(self) -> dict:
        """The control command `status`: the daemon's status object."""
        return self._command("status")

    def reset(self) -> None:
        """The control command `reset` (daemons of OursProfile.RESETTABLE kinds): back to the state
        of a fresh start without a restart; the daemon answers once it is done."""
        self._command("reset")

    def events(self) -> list[dict]:
        """The daemon's structured log lines so far."""
        if not self.events_path.exists():
            return []
        return [json.loads(line) for line in self.events_path.read_text().splitlines() if line.strip()]

    def stop(self) -> int | None:
        return self.process.stop()


def daemon_command(world, node: str, module: str, name: str, args: Sequence[str] = (),
                   config: dict | None = None) -> tuple[list[str], Path, Path]:
    """The argv of `python -m nodes.<module>` for `node` (its config written next to its log), with the
    paths of its control socket and its structured log."""
    ctl = world.run.path(f"{node}.{name}.ctl")
    events = world.log_dir / f"{node}.{name}.events.jsonl"
    argv = [sys.executable, "-m", f"nodes.{module}", "--control", str(ctl), "--log-json", str(events), *args]
    if config is not None:
        cfg = world.log_dir / f"{node}.{name}.config.json"
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text(json.dumps(config, indent=2, default=str))
        argv += ["--config", str(cfg)]
    return argv, ctl, events


def start_daemon(world, node: str, module: str, name: str | None = None, args: Sequence[str] = (),
                 config: dict | None = None, timeout: float = 10.0) -> Daemon:
    """Start `python -m nodes.<module>` (e.g. "daemons.home_agent", "instruments.sink") in `node` and
    wait for its READY line; `name` defaults to the module's last part."""
    name = name or module.rsplit(".", 1)[-1]
    argv, ctl, events = daemon_command(world, node, module, name, args, config)
    proc = world.start(node, name, argv, ready=r"^READY$", timeout=timeout)
    return Daemon(node, name, proc, ctl, events)


class OursProfile:
    """The `ours` profile: each role kind is one of this project's daemons (nodes/daemons/) or
    instruments, started with the role's config as its --config file. The daemons check their
    config themselves when they start (nodes/runtime/ipsec/config.py, mip_config.py) and a refusal
    ends the start with their message, so check_config accepts everything."""

    name = "ours"
    conformance_statement = FIXTURES / "conformance" / "ics" / "ours.yaml"
    MODULES = {
        "vpn-gateway": "daemons.vpn_gateway",
        "vpn-client": "daemons.vpn_client",
        "home-agent": "daemons.home_agent",
        "foreign-agent": "daemons.foreign_agent",
        "mobile-node": "daemons.mobile_node",
        "mobile-vpn-node": "daemons.mobile_vpn_node",
        "echo-sink": "instruments.sink",
    }
    kinds = frozenset(MODULES)
    RESETTABLE = frozenset({"vpn-gateway", "vpn-client", "home-agent", "foreign-agent"})  # kinds whose daemon answers the control command `reset`

    def check_config(self, role, plan) -> None:
        return None

    def start_role(self, world, role):
        d = start_daemon(world, role.node, self.MODULES[role.kind], name=role.name, config=role.config)
        reset = d.reset if role.kind in self.RESETTABLE else None
        return RoleHandle(role, d.status, d.stop, reset=reset)


PROFILE = OursProfile()
