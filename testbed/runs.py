"""The registry of runs on this machine: who owns a run, which processes it started.

A run registers itself under /tmp/testbed-runs/<run-id>/ with its owner's PID and start time; each
process it starts is recorded the same way. At the next start, runs whose owner is gone are
reaped: their recorded processes (matched by PID and start time, so a reused PID is never hit)
are killed and their directory removed. Nothing else on the machine is touched.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Under /tmp, not /run: a charon role mounts a private /run in its node.
RUNS_DIR = Path(os.environ.get("TESTBED_RUNS_DIR", "/tmp/testbed-runs"))


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def alive(pid: int, started: int | None) -> bool:
    return started is not None and start_time(pid) == started


@dataclass
class Run:
    run_id: str
    dir: Path

    @classmethod
    def register(cls, run_id: str, runs_dir: Path | None = None) -> "Run":
        base = runs_dir or RUNS_DIR
        base.mkdir(parents=True, exist_ok=True)
        # built under a temporary name and renamed, so a concurrent reap never sees a run
        # directory without its owner
        tmp = Path(tempfile.mkdtemp(prefix=".new-", dir=base))
        (tmp / "pids").mkdir()
        pid = os.getpid()
        (tmp / "owner.json").write_text(json.dumps({"pid": pid, "start": start_time(pid)}))
        d = base / run_id
        tmp.rename(d)
        return cls(run_id, d)

    def track(self, pid: int, what: str) -> None:
        (self.dir / "pids" / str(pid)).write_text(json.dumps({"start": start_time(pid), "what": what}))

    def untrack(self, pid: int) -> None:
        (self.dir / "pids" / str(pid)).unlink(missing_ok=True)

    def tracked(self) -> dict[int, dict]:
        out = {}
        for f in (self.dir / "pids").glob("*"):
            try:
                out[int(f.name)] = json.loads(f.read_text())
            except (ValueError, OSError):
                continue
        return out

    def path(self, name: str) -> Path:
        """A short path inside the run's directory (for Unix sockets, which allow 107 bytes)."""
        return self.dir / name

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def reap_stale(runs_dir: Path | None = None) -> list[str]:
    """Kill what dead runs left running and remove their directories; returns a line per action."""
    base = runs_dir or RUNS_DIR
    done = []
    if not base.is_dir():
        return done
    for d in sorted(base.iterdir()):
        try:
            owner = json.loads((d / "owner.json").read_text())
        except (OSError, ValueError):
            try:
                if time.time() - d.stat().st_mtime < 60:  # being created right now
                    continue
            except OSError:  # another run reaped it meanwhile
                continue
            owner = {"pid": -1, "start": None}
        if alive(owner["pid"], owner["start"]):
            continue
        run = Run(d.name, d)
        for pid, info in run.tracked().items():
            if alive(pid, info.get("start")):
                try:
                    os.kill(pid, signal.SIGKILL)
                    done.append(f"killed {info.get('what', '?')} (pid {pid}) left by run {d.name}")
                except ProcessLookupError:
                    pass
        run.close()
        done.append(f"removed the directory of dead run {d.name}")
    return done
