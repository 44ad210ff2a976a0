"""The requirements catalogue (fixtures/requirements.yaml): what the suite checks, with its source.

Cases name the requirements they check with `@pytest.mark.req("gupta-4a-unauthorized", ...)`; an
id the catalogue does not know is refused at collection (and by tests/test_requirements.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from testbed import FIXTURES
from testbed.schema import ConfigError, Reader, load_yaml

CATALOGUE = FIXTURES / "requirements.yaml"
LEVELS = ("MUST", "SHOULD", "MAY", "claim")


@dataclass(frozen=True)
class Requirement:
    id: str
    area: str
    source: str
    level: str
    text: str


@dataclass(frozen=True)
class Catalogue:
    areas: dict[str, str]  # area id -> title, in the order the report shows them
    requirements: dict[str, Requirement]

    def unknown(self, ids) -> list[str]:
        return [i for i in ids if i not in self.requirements]

    def by_area(self) -> dict[str, list[Requirement]]:
        out: dict[str, list[Requirement]] = {a: [] for a in self.areas}
        for r in self.requirements.values():
            out[r.area].append(r)
        return out


def load_catalogue(path: Path = CATALOGUE) -> Catalogue:
    top = Reader(path, load_yaml(path))
    top.only_keys(["areas", "requirements"])
    areas = {name: r.str() for name, r in top.child("areas").items()}
    reqs: dict[str, Requirement] = {}
    entries = top.child("requirements")
    if not isinstance(entries.data, list):
        raise entries.fail("a list of requirements", type(entries.data).__name__)
    for n, data in enumerate(entries.data):
        r = Reader(path, data, f"requirements[{n}]")
        r.only_keys(["id", "area", "source", "level", "text"])
        req = Requirement(id=r.child("id").str(), area=r.child("area").str(areas), source=r.child("source").str(),
                          level=r.child("level").str(LEVELS), text=" ".join(r.child("text").str().split()))
        if req.id in reqs:
            raise ConfigError(path, f"requirements[{n}].id", "an id not used before", req.id)
        reqs[req.id] = req
    return Catalogue(areas, reqs)


@lru_cache(maxsize=1)
def catalogue() -> Catalogue:
    """fixtures/requirements.yaml and the RFC catalogues of the conformance suites
    (fixtures/conformance/rfcNNNN.yaml, one requirement per normative sentence)."""
    from testbed.conformance.catalogue import rfc_catalogues

    cat = load_catalogue()
    areas, reqs = dict(cat.areas), dict(cat.requirements)
    for rc in rfc_catalogues().values():
        area = f"rfc{rc.rfc}"
        areas[area] = f"RFC {rc.rfc}, {rc.title} (every normative sentence)"
        for e in rc.entries:
            reqs[e.id] = Requirement(e.id, area, e.source, e.level.split()[0], e.text)
    return Catalogue(areas, reqs)


def check_req_ids(nodeid: str, ids: list[str]) -> None:
    """Refuse a case that names a requirement the catalogue does not know."""
    import pytest

    unknown = catalogue().unknown(ids)
    if unknown:
        raise pytest.UsageError(f"{nodeid}: unknown requirement id(s) {unknown}; "
                                f"fixtures/requirements.yaml lists the known ones (add it there first)")


def req_ids(item) -> list[str]:
    """The requirement ids a collected case declares (all its `req` markers, in order)."""
    out: list[str] = []
    for mark in item.iter_markers("req"):
        out += [i for i in mark.args if i not in out]
    return out
