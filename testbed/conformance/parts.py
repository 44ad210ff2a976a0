"""Conformance test parts: a crafted exchange with a judgement, traced to the RFC sentences it checks.

A test part is a pytest function under cases/conformance/, declared with `part(...)`:

    @part("IKE.SGW-R.VER.1", "A request with a higher major version is answered with INVALID_MAJOR_VERSION",
          ["rfc7296-2.5-b", "rfc7296-3.1-c"], needs=["ikev2.cookies"])
    def test_higher_major_version(ike, steps):
        ...
        steps.record("send IKE_SA_INIT with version 3.0", expect="INVALID_MAJOR_VERSION, version 2.0",
                     observed=answer.summary(), ok=...)
        assert ...

- its id (AREA.ROLE.TOPIC.N), a title, and the requirement ids of fixtures/conformance (checked at
  collection like every `req`);
- `needs`: optional features (testbed.conformance.ics.FEATURES) the part exercises; an
  implementation whose conformance statement does not claim one gets NOT-APPLICABLE, with that reason;
- its steps (`steps.record`): what was sent, what was expected, what was observed, in the report;
- its verdict: PASS, FAIL (an assertion: a MUST not met), WARNED (`should(ok, what)`: a SHOULD not
  met), INCONCLUSIVE (`inconclusive(reason)`: its preamble did not
  reach the point it judges), NOT-APPLICABLE, or EXPECTED-NONCONFORMANCE (the statement's data).
The role it judges (SGW-R, SGW-I, EN-I, ESP, HA, FA, MN, ...) comes from the environment fixture of
its module, so the same part runs against every profile that fills that role.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

from testbed.report.verdicts import downgraded, inconclusive  # noqa: F401  (inconclusive: re-exported for the parts)

PART_MARK = "conformance_part"
PART_PROPERTY = "conformance_part"
STEPS_PROPERTY = "conformance_steps"


def part(part_id: str, title: str, requirements: list[str], needs: list[str] | tuple = ()):
    """Declare a test part (see the module docstring)."""
    if not requirements:
        raise ValueError(f"{part_id}: a test part names the requirements it checks")

    def mark(fn):
        fn = pytest.mark.req(*requirements)(fn)
        return getattr(pytest.mark, PART_MARK)(id=part_id, title=title, needs=tuple(needs))(fn)
    return mark


def should(ok: object, what: str) -> bool:
    """Judge a SHOULD-level requirement: not met, the part ends WARNED with `what` said (a MUST is
    an assert: not met, it FAILs)."""
    if not ok:
        downgraded(f"SHOULD not met: {what}")
    return bool(ok)


def part_of(item) -> dict | None:
    m = item.get_closest_marker(PART_MARK)
    return dict(m.kwargs) if m else None


@dataclass
class Step:
    action: str
    expect: str
    observed: str
    ok: bool | None  # None: a step that judges nothing (setup, a message sent)
    t: float


@dataclass
class Steps:
    """What a part did and saw, in order; written next to the case and into the report."""
    items: list[Step] = field(default_factory=list)
    clock: object = None

    def record(self, action: str, expect: str = "", observed: object = "", ok: bool | None = None) -> bool | None:
        import time
        self.items.append(Step(action, expect, observed if isinstance(observed, str) else repr(observed), ok,
                               round(time.time(), 6)))
        return ok

    def as_json(self) -> list[dict]:
        return [asdict(s) for s in self.items]

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_json(), indent=1))
