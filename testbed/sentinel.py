"""No silent errors: when a case ends, the logs of every process it ran are read, and an exception
that one of our programs caught to keep serving fails the case, with the log excerpt.

What counts:
- an event of nodes.runtime.logs.SWALLOWED_ERRORS (action-error, core-error, ...) in one of our
  daemons' structured logs (`*.events.jsonl`);
- a Python traceback in a process log (`*.log`): our daemons and instruments are the Python
  programs a world runs, and asyncio prints one for an exception nobody retrieved.

A third-party program's own error lines are findings of that implementation, which its profile
classifies (`log_findings`), not failures of ours. Worlds register here when they are built, so a
module-scoped world shared by several cases is read from where the previous case left off.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nodes.runtime.logs import SWALLOWED_ERRORS

TRACEBACK = "Traceback (most recent call last):"
EXCERPT_LINES = 12

_worlds: list = []  # every world built in this process that is not yet forgotten


def register(world) -> None:
    _worlds.append(world)


def forget_stopped() -> None:
    """Forget the worlds that were torn down (their logs were read by the last watch)."""
    _worlds[:] = [w for w in _worlds if w.net is not None]


@dataclass
class Error:
    path: Path
    what: str      # "action-error", "traceback"
    excerpt: str

    def __str__(self) -> str:
        return f"{self.path.name}: {self.what}\n{self.excerpt}"


class Watch:
    """The log files of the worlds alive now or built later, read from their current ends."""

    def __init__(self):
        self.worlds = list(_worlds)
        self.start = {p: p.stat().st_size for w in self.worlds for p in _logs(w.log_dir)}

    def errors(self) -> list[Error]:
        worlds = self.worlds + [w for w in _worlds if w not in self.worlds]
        out: list[Error] = []
        for d in dict.fromkeys(w.log_dir for w in worlds):
            for path in _logs(d):
                out += errors_in(path, self.start.get(path, 0))
        return out


def _logs(d: Path) -> list[Path]:
    return sorted(p for p in Path(d).glob("*") if p.is_file() and (p.name.endswith(".events.jsonl") or p.suffix == ".log"))


def errors_in(path: Path, offset: int = 0) -> list[Error]:
    with open(path, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    if path.name.endswith(".events.jsonl"):
        out = []
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut by the read: the next case sees it whole
            if entry.get("event") in SWALLOWED_ERRORS:
                details = {k: v for k, v in entry.items() if k not in ("t", "daemon", "event", "trace")}
                out.append(Error(path, entry["event"], f"{json.dumps(details)}\n{entry.get('trace', '')}".rstrip()))
        return out
    lines = text.splitlines()
    return [Error(path, "traceback", "\n".join(_traceback(lines, i))) for i, line in enumerate(lines) if TRACEBACK in line]


def _traceback(lines: list[str], i: int) -> list[str]:
    """The traceback starting at line i: its indented frames and the exception line after them."""
    out = lines[max(0, i - 1):i + 1]
    for line in lines[i + 1:]:
        out.append(line)
        if line and not line.startswith((" ", "\t")):
            break
    return out[:EXCERPT_LINES] + (["..."] if len(out) > EXCERPT_LINES else [])


def report(errors: list[Error]) -> str:
    return (f"{len(errors)} error(s) our programs caught and logged while the case ran (a bug of ours even where "
            f"the wire looked right):\n\n" + "\n\n".join(str(e) for e in errors[:10]))
