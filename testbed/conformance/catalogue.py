"""The RFC catalogues: one entry per normative sentence of each RFC the conformance suites judge.

fixtures/conformance/rfcNNNN.yaml holds, for each normative sentence (testbed.conformance.
rfc_sentences finds them), in the order of the text:

    - id: rfc7296-2.1-c          # RFC, section, letter within the section
      level: MUST                # MUST, MUST NOT, SHOULD, SHOULD NOT (SHALL/REQUIRED are MUST)
      starts: "The initiator MUST retransmit"   # the sentence's first six words, as in the RFC
      role: [initiator]          # who it binds (ROLES)
      class: wire                # wire: a black-box tester can see it; internal: not observable;
                                 # out-of-scope: outside what the testbed covers
      why: ...                   # for internal and out-of-scope: the reason
      text: ...                  # a short paraphrase in our words (the RFC is right where they differ)

tests/test_conformance_catalogue.py re-counts the sentences from the RFC text when it is present and
fails when an entry is missing, extra or sits on the wrong sentence.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from testbed import FIXTURES, REPO_ROOT
from testbed.schema import ConfigError, Reader, load_yaml

CATALOGUES = FIXTURES / "conformance"
LEVELS = ("MUST", "MUST NOT", "SHOULD", "SHOULD NOT")
CLASSES = ("wire", "internal", "out-of-scope")
ROLES = ("initiator", "responder", "gateway", "end-node", "any",  # IKEv2 / IPsec
         "mn", "fa", "ha")                                          # Mobile IPv4
RFC_DIR_ENV = "TESTBED_RFC_DIR"


@dataclass(frozen=True)
class Entry:
    id: str
    rfc: int
    section: str
    level: str
    starts: str
    roles: tuple[str, ...]
    cls: str
    why: str
    text: str

    @property
    def must(self) -> bool:
        return self.level.startswith("MUST")

    @property
    def testable(self) -> bool:
        return self.cls == "wire"

    @property
    def source(self) -> str:
        return f"RFC {self.rfc} section {self.section}"


@dataclass(frozen=True)
class RfcCatalogue:
    rfc: int
    title: str
    area: str
    entries: tuple[Entry, ...]

    def testable_musts(self) -> list[Entry]:
        return [e for e in self.entries if e.must and e.testable]


def load(path: Path) -> RfcCatalogue:
    top = Reader(path, load_yaml(path))
    top.only_keys(["rfc", "title", "area", "sentences"])
    rfc = int(top.child("rfc").number(1))
    items = top.child("sentences")
    if not isinstance(items.data, list):
        raise items.fail("a list of sentences", type(items.data).__name__)
    entries, seen = [], set()
    for n, data in enumerate(items.data):
        r = Reader(path, data, f"sentences[{n}]")
        r.only_keys(["id", "level", "starts", "role", "class", "why", "text"])
        eid = r.child("id").str()
        parts = eid.split("-")
        if len(parts) != 3 or parts[0] != f"rfc{rfc}" or not parts[2].isalpha():
            raise r.child("id").fail(f"rfc{rfc}-<section>-<letter>", eid)
        if eid in seen:
            raise ConfigError(path, f"sentences[{n}].id", "an id not used before", eid)
        seen.add(eid)
        roles = r.child("role").data
        roles = [roles] if isinstance(roles, str) else roles
        if not isinstance(roles, list) or not roles or any(x not in ROLES for x in roles):
            raise r.child("role").fail(f"one or a list of {', '.join(ROLES)}", roles)
        cls = r.child("class").str(CLASSES)
        why = r.child("why").str() if "why" in data else ""
        if cls != "wire" and not why:
            raise ConfigError(path, f"sentences[{n}].why", f"the reason a sentence is {cls}", "nothing")
        entries.append(Entry(id=eid, rfc=rfc, section=parts[1], level=r.child("level").str(LEVELS),
                             starts=r.child("starts").str(), roles=tuple(roles), cls=cls, why=why,
                             text=" ".join(r.child("text").str().split())))
    return RfcCatalogue(rfc, top.child("title").str(), top.child("area").str(), tuple(entries))


@lru_cache(maxsize=1)
def rfc_catalogues() -> dict[int, RfcCatalogue]:
    out = {}
    for path in sorted(CATALOGUES.glob("rfc*.yaml")):
        cat = load(path)
        out[cat.rfc] = cat
    return out


def entries() -> dict[str, Entry]:
    return {e.id: e for cat in rfc_catalogues().values() for e in cat.entries}


def rfc_text_dir() -> Path | None:
    """Where the RFCs' plain text is: $TESTBED_RFC_DIR, docs/rfcs, or ../shared/rfcs beside the clone."""
    for d in (os.environ.get(RFC_DIR_ENV), REPO_ROOT / "docs" / "rfcs", REPO_ROOT.parent / "shared" / "rfcs"):
        if d and Path(d).is_dir():
            return Path(d)
    return None
