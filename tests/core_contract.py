"""The generic harness that checks a protocol core against nodes/core.py's contract.

Each core family registers a `CoreCase` in its own test module and calls `check_contract(case)`:

    CASE = CoreCase(name="ha", make=lambda rnd: HomeAgentCore(cfg, random=rnd),
                    start=lambda core, now: None,
                    valid=lambda core: [(rrq_bytes, Addr(...))])

    def test_ha_follows_the_core_contract():
        check_contract(CASE)

What it checks, the same way for every core: the contract's methods exist; every public method that
takes `now` takes it in one place (its inputs, then `now`, then options by keyword only, as
nodes/core.py says); inputs return None and
actions come out through drain_actions() once, as frozen dataclasses; garbage datagrams never raise
and show up in the status' drop counters; handle_timer at next_deadline() makes progress (the
deadline moves or actions come out); status() is a frozen snapshot with a JSON-able as_dict(); and
with the same seeded random source two cores fed the same inputs produce identical actions.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
from dataclasses import dataclass
from typing import Any, Callable

from nodes.core import Addr, Core, RandomSource, seeded_random

GARBAGE = [b"", b"\x00", b"\xff" * 3, bytes(range(64)), b"\x01" * 300]


@dataclass
class CoreCase:
    name: str
    make: Callable[[RandomSource], Any]
    """Build a fresh core with this random source."""
    start: Callable[[Any, float], None] = lambda core, now: None
    """Role-specific kick-off (connect, link_up, start advertising...), if any."""
    valid: Callable[[Any], list[tuple[bytes, Addr]]] = lambda core: []
    """Well-formed datagrams for this core (may depend on the core's state after start)."""
    garbage_addr: Addr = Addr("192.0.2.99", 434, "192.0.2.1", 434)


def _is_frozen_dataclass(obj: Any) -> bool:
    return dataclasses.is_dataclass(obj) and not isinstance(obj, type) and obj.__dataclass_params__.frozen


def now_out_of_place(core: Any) -> list[str]:
    """The public methods of `core` whose `now` is not where nodes/core.py puts it: after the
    method's positional inputs, with only keyword-only options after it."""
    wrong = []
    for name, method in inspect.getmembers(core, inspect.ismethod):
        if name.startswith("_"):
            continue
        params = list(inspect.signature(method).parameters.values())
        names = [p.name for p in params]
        if "now" not in names:
            continue
        at = names.index("now")
        if params[at].kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD or any(
                p.kind is not inspect.Parameter.KEYWORD_ONLY for p in params[at + 1:]):
            wrong.append(f"{name}{inspect.signature(method)}")
    return wrong


def _drops_total(snapshot) -> int:
    drops = snapshot.as_dict().get("drops", {})
    return sum(drops.values()) if isinstance(drops, dict) else int(drops)


def _run(case: CoreCase, seed: int) -> list:
    core = case.make(seeded_random(seed))
    t = 1000.0
    case.start(core, t)
    trace = list(core.drain_actions())
    for data, addr in case.valid(core):
        assert core.receive_datagram(data, addr, t) is None
        trace += core.drain_actions()
    return trace


def check_contract(case: CoreCase) -> None:
    core = case.make(seeded_random(1))
    assert isinstance(core, Core), f"{case.name}: missing a method of nodes.core.Core"
    wrong = now_out_of_place(core)
    assert not wrong, (f"{case.name}: `now` out of place (nodes/core.py: the inputs, then now, then "
                       f"keyword-only options): {wrong}")
    now = 1000.0
    assert case.start(core, now) is None, f"{case.name}: a role input returned a value (inputs return None; actions are drained)"
    first = core.drain_actions()
    assert isinstance(first, list)
    assert core.drain_actions() == [], f"{case.name}: drain_actions() returned actions twice"
    for action in first:
        assert _is_frozen_dataclass(action), f"{case.name}: action {action!r} is not a frozen dataclass"

    before = _drops_total(core.status(now))
    for junk in GARBAGE:
        assert core.receive_datagram(junk, case.garbage_addr, now) is None
    core.drain_actions()
    snap = core.status(now)
    assert _is_frozen_dataclass(snap), f"{case.name}: status() is not a frozen snapshot"
    json.dumps(snap.as_dict())
    assert _drops_total(snap) >= before + len(GARBAGE), (
        f"{case.name}: {len(GARBAGE)} garbage datagrams not all counted as drops: {snap.as_dict().get('drops')}")

    for data, addr in case.valid(core):
        assert core.receive_datagram(data, addr, now) is None
    for action in core.drain_actions():
        assert _is_frozen_dataclass(action), f"{case.name}: action {action!r} is not a frozen dataclass"

    deadline = core.next_deadline()
    if deadline is not None:
        assert core.handle_timer(deadline) is None
        out = core.drain_actions()
        assert out or core.next_deadline() != deadline, (
            f"{case.name}: handle_timer at the deadline {deadline} did nothing and left the deadline as it was")

    assert _run(case, 7) == _run(case, 7), f"{case.name}: not deterministic under a seeded random source"
