"""The report in a real browser: headless Chromium (Debian's `chromium`, from scripts/setup) loads a
page from the file system, reports its console messages and DOM, and takes a screenshot."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--hide-scrollbars"]
CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\]? ?(.*)$")


class BrowserMissing(RuntimeError):
    pass


@dataclass
class PageLoad:
    dom: str
    console: list[str]  # every console message (the report runs no script, so any is a fault)


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise BrowserMissing("chromium is not installed: run scripts/setup (it installs Debian's chromium)")
    return path


def _run(page: Path, extra: list[str], timeout: float = 90) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="testbed-chromium-") as profile:  # a fresh profile each time
        return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()],
                              capture_output=True, text=True, timeout=timeout)


def load(page: Path) -> PageLoad:
    res = _run(page, ["--dump-dom"])
    console = [m.group(1) for line in res.stderr.splitlines() if (m := CONSOLE.search(line))]
    return PageLoad(res.stdout, console)


def screenshot(page: Path, out: Path, width: int = 1400, height: int = 900) -> Path:
    res = _run(page, [f"--screenshot={out.resolve()}", f"--window-size={width},{height}"])
    if not out.is_file():
        raise RuntimeError(f"chromium wrote no screenshot of {page}: {res.stderr[-800:]}")
    return out


def broken_links(page: Path, dom: str) -> list[str]:
    """Relative href/src targets of a page that do not exist on disk (the report must be whole)."""
    out = []
    for target in re.findall(r'(?:href|src)="([^"#?]+)', dom):
        if re.match(r"^[a-z]+:", target):
            continue
        if not (page.parent / target).exists():
            out.append(target)
    return out
