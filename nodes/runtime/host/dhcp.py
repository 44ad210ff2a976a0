"""A co-located care-of address from a real DHCP client (ISC dhclient) on the foreign network.

The mobile node does not let dhclient touch the interface: dhclient runs in the foreground with our
own script (`-sf`), which only prints the lease variables as one line on its standard output

    MN-DHCP-LEASE reason=BOUND ip=10.77.0.100 mask=255.255.255.0 routers=10.77.0.1 server=10.77.0.1 lease=3600

and the daemon configures the address and router itself (as a co-located care-of address). The client
is stopped as soon as the lease is known (or after `timeout` seconds); the lease stays on the server.
Files (script, config, lease and pid files) live in a per-run directory.
"""
from __future__ import annotations

import asyncio
import ctypes
import os
import shlex
import signal
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

from nodes.runtime.clock import SYSTEM, Clock

MARKER = "MN-DHCP-LEASE"
LEASE_REASONS = ("BOUND", "RENEW", "REBIND", "REBOOT")

SCRIPT = f"""#!/bin/sh
# dhclient script of the mobile node: report the lease, configure nothing (the MN does that).
case "$reason" in
  {'|'.join(LEASE_REASONS)})
    set -- $new_routers
    echo "{MARKER} reason=$reason ip=$new_ip_address mask=$new_subnet_mask routers=$1 \\
server=$new_dhcp_server_identifier lease=$new_dhcp_lease_time"
    ;;
esac
exit 0
"""


class LeaseError(ValueError):
    pass


@dataclass(frozen=True)
class Lease:
    address: IPv4Interface  # the leased address with the subnet's prefix length
    router: IPv4Address | None
    server: IPv4Address | None = None
    lease_time: int | None = None
    reason: str = "BOUND"

    def as_dict(self) -> dict:
        return {"address": str(self.address), "router": str(self.router) if self.router else None,
                "server": str(self.server) if self.server else None, "lease_time": self.lease_time,
                "reason": self.reason}


def parse_lease_line(line: str) -> Lease | None:
    """The lease printed by SCRIPT, or None for any other line; LeaseError when the line is ours but bad."""
    words = line.strip().split()
    if not words or words[0] != MARKER:
        return None
    fields = {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep:
            raise LeaseError(f"lease line: {word!r} is not key=value")
        fields[key] = value
    ip, mask = fields.get("ip", ""), fields.get("mask", "")
    if not ip:
        raise LeaseError(f"lease line without an address: {line.strip()!r}")
    try:
        address = IPv4Interface(f"{ip}/{mask}" if mask else f"{ip}/32")
    except ValueError:
        raise LeaseError(f"lease line: bad address or mask {ip!r}/{mask!r}") from None
    routers = fields.get("routers", "")
    try:
        # dhclient gives the routers space-separated; the script keeps the first one
        router = IPv4Address(routers.split(",")[0]) if routers else None
        server = IPv4Address(fields["server"]) if fields.get("server") else None
        lease_time = int(fields["lease"]) if fields.get("lease") else None
    except ValueError as exc:
        raise LeaseError(f"lease line: {exc}") from None
    if router is not None and router not in address.network:
        raise LeaseError(f"lease line: router {router} is outside the leased subnet {address.network}")
    return Lease(address, router, server, lease_time, fields.get("reason", "BOUND"))


def client_config(timeout: float) -> str:
    """dhclient.conf with short timers: one attempt of `timeout` seconds, retransmissions every second."""
    return (f"timeout {max(1, round(timeout))};\nretry 1;\ninitial-interval 1;\nbackoff-cutoff 1;\n"
            "request subnet-mask, broadcast-address, routers, dhcp-lease-time, dhcp-server-identifier;\n")


def client_argv(iface: str, workdir: Path, dhclient: str = "dhclient") -> list[str]:
    d = Path(workdir)
    return [dhclient, "-d", "-1", "-v", "-cf", str(d / "dhclient.conf"), "-sf", str(d / "dhclient-script"),
            "-lf", str(d / f"dhclient.{iface}.leases"), "-pf", str(d / f"dhclient.{iface}.pid"), iface]


def prepare(workdir: Path, timeout: float) -> None:
    d = Path(workdir)
    d.mkdir(parents=True, exist_ok=True)
    script = d / "dhclient-script"
    script.write_text(SCRIPT)
    script.chmod(0o755)
    (d / "dhclient.conf").write_text(client_config(timeout))


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class DhcpClient:
    """One run of dhclient on `iface`; `await acquire()` gives (Lease, seconds) or raises LeaseError."""

    def __init__(self, iface: str, workdir: Path, timeout: float = 4.0, dhclient: str = "dhclient", log=None,
                 clock: Clock = SYSTEM):
        self.iface, self.workdir, self.timeout, self.dhclient = iface, Path(workdir), timeout, dhclient
        self.clock = clock  # monotonic: how long the lease took
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self.output: list[str] = []

    async def acquire(self) -> tuple[Lease, float]:
        prepare(self.workdir, self.timeout)
        argv = client_argv(self.iface, self.workdir, self.dhclient)
        started = self.clock.now()
        self.proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, preexec_fn=_die_with_parent)
        try:
            lease = await asyncio.wait_for(self._read(), self.timeout + 1.0)
        except asyncio.TimeoutError:
            raise LeaseError(f"no DHCP lease on {self.iface} within {self.timeout:.1f} s") from None
        finally:
            await self.stop()
        return lease, self.clock.now() - started

    async def _read(self) -> Lease:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            raw = await self.proc.stdout.readline()
            if not raw:
                rc = await self.proc.wait()
                tail = " | ".join(self.output[-3:])
                raise LeaseError(f"dhclient on {self.iface} exited with status {rc} without a lease ({tail})")
            line = raw.decode(errors="replace").rstrip()
            self.output.append(line)
            del self.output[:-50]
            lease = parse_lease_line(line)
            if lease is not None:
                return lease

    async def stop(self) -> None:
        """Stop dhclient (no release: the lease stays with the server)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        try:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 1.0)
        except ProcessLookupError:
            return
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()

    def kill_now(self) -> None:
        """Synchronous: for shutdown paths that cannot await."""
        proc = self.proc
        if proc is not None and proc.returncode is None:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def describe(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


class DhcpRunner:
    """Runs the DHCP clients a core asks for (its StartDhcp / StopDhcp actions, one client at a time)
    and reports each outcome: `on_bound(attempt, lease, seconds)` or `on_failed(attempt, reason)`."""

    def __init__(self, workdir, timeout: float, dhclient: str, on_bound, on_failed):
        self.workdir, self.timeout, self.dhclient = workdir, timeout, dhclient
        self.on_bound, self.on_failed = on_bound, on_failed
        self._task: asyncio.Task | None = None
        self._client: DhcpClient | None = None

    def start(self, action) -> None:
        """A StartDhcp action: a fresh client on its interface (a running one is stopped)."""
        self.stop()
        self._client = DhcpClient(action.iface, self.workdir, self.timeout, self.dhclient)
        self._task = asyncio.get_running_loop().create_task(self._run(self._client, action.attempt))

    def stop(self, _action=None) -> None:
        """A StopDhcp action (or shutdown): cancel the running client; it stops dhclient."""
        if self._task is not None:
            self._task.cancel()
        self._task = self._client = None

    async def _run(self, client: DhcpClient, attempt: int) -> None:
        try:
            lease, seconds = await client.acquire()
        except LeaseError as exc:
            self._forget(client)
            self.on_failed(attempt, str(exc))
            return
        except asyncio.CancelledError:
            await client.stop()
            raise
        self._forget(client)
        self.on_bound(attempt, lease, seconds)

    def _forget(self, client: DhcpClient) -> None:
        if self._client is client:  # not a newer run's
            self._task = self._client = None

    async def close(self) -> None:
        client, task = self._client, self._task
        self.stop()
        if client is not None:
            client.kill_now()
        if task is not None:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
