"""Names of runs, interfaces and bridges.

Every run (a pytest session, each xdist worker inside it, a CLI run) lives in its own network
namespace, so interface names only need to be unique inside one world; they still must fit
Linux's 15-character limit (IFNAMSIZ - 1) and read well in captures. Run ids must be unique
across concurrent runs on one machine and sort by time.
"""
from __future__ import annotations

import os
import re
import secrets
import time

IFNAMSIZ = 15
_IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_NODE = re.compile(r"^[a-z][a-z0-9]{0,4}$")


class BadName(ValueError):
    pass


def check_ifname(name: str) -> str:
    """Return `name` if Linux accepts it as an interface name, else raise with the reason."""
    if len(name) > IFNAMSIZ:
        raise BadName(f"interface name {name!r} has {len(name)} characters; Linux allows {IFNAMSIZ}")
    if not _IFNAME.match(name):
        raise BadName(f"interface name {name!r} has characters Linux or tcpdump would not take")
    return name


def check_node_name(name: str) -> str:
    """Node names are short (<= 5 characters, lower case) so derived interface names fit."""
    if not _NODE.match(name):
        raise BadName(f"node name {name!r}: expected 1 to 5 lower-case letters or digits, starting with a letter")
    return name


def host_ifname(node: str, peer: str) -> str:
    """The interface of `node` that faces segment or node `peer`, e.g. g-dmz, core-ar1."""
    return check_ifname(f"{node}-{peer}")


def bridge_name(segment: str) -> str:
    return check_ifname(f"br-{segment}")


def bridge_port(segment: str, node: str) -> str:
    """The bridge-side end of `node`'s veth on `segment`, e.g. dmz-g."""
    return check_ifname(f"{segment}-{node}")


def station_port(node: str) -> str:
    """The access-point side of a station's veth; it moves between bridges, so it names no segment."""
    return check_ifname(f"ap-{node}")


def station_ifname(node: str) -> str:
    return check_ifname(f"{node}-eth0")


def new_run_id(worker: str | None = None, now: float | None = None) -> str:
    """A run id: UTC time, worker (gw0, ...; 'main' when not under xdist), pid and randomness."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    return f"{stamp}-{worker or 'main'}-{os.getpid()}-{secrets.token_hex(4)}"


def case_dirname(nodeid: str) -> str:
    """A file-system safe directory name for a pytest node id."""
    name = nodeid.replace("::", "--").replace("/", "_")
    name = re.sub(r"[^A-Za-z0-9_.=,+-]", "_", name)
    return name[:180]
