"""docs/protocols/ cannot rot in silence: every repository path a page names exists (and every
`path::Name` names something defined in that file), every conformance part group, catalogue
sentence and requirement id a page names exists, and every RFC that a module of nodes/ cites has a
page that mentions it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "protocols"
PAGES = sorted(p for p in DOCS.glob("*.md") if p.name != "README.md")

# `nodes/ipsec/ike.py`, `nodes/ipsec/ike.py::IkeCore.invalid_spi`, `cases/conformance/ike/`
PATH = re.compile(r"`((?:nodes|testbed|cases|tests|fixtures|benchmarks|docs|scripts|examples)/[\w./-]*)"
                  r"(?:::([\w.]+))?`")
# a conformance part group: IKE.SGW-R.COOKIE.* or MIP.HA.NAT.9 -> IKE.SGW-R.COOKIE, MIP.HA.NAT
PART = re.compile(r"\b((?:IKE|ESP|UDPENC|MIP)(?:\.[A-Z][A-Z0-9-]*)+)\.(\d+|\*)")
# a catalogue sentence (rfc7296-2.6-a) or a requirement (rfc7296-2.6-cookies; in backticks: gupta-3b-napt)
SENTENCE_OR_REQUIREMENT = re.compile(r"\b(rfc\d+-\d+(?:\.\d+)*-[a-z](?:[\w.-]*[a-z0-9])?)\b"
                                     r"|`((?:gupta|ps|testbed)-[\w.-]*[a-z0-9])`")
RFC = re.compile(r"\bRFC (\d+)\b")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _defines(source: str, name: str) -> bool:
    """`name` is a def, class, assignment or annotated field somewhere in `source`."""
    return re.search(rf"^\s*(?:async\s+def|def|class)\s+{re.escape(name)}\b|^\s*{re.escape(name)}\s*[:=]",
                     source, re.M) is not None


def test_pages_exist_and_the_index_lists_them():
    assert PAGES, "docs/protocols/ has no pages"
    index = _text(DOCS / "README.md")
    missing = [p.name for p in PAGES if f"({p.name})" not in index]
    assert not missing, f"docs/protocols/README.md does not link {missing}: add a line for each page"
    assert "protocols/README.md" in _text(ROOT / "docs" / "architecture.md"), \
        "docs/architecture.md no longer links docs/protocols/README.md"


@pytest.mark.parametrize("page", PAGES + [DOCS / "README.md"], ids=lambda p: p.name)
def test_named_paths_and_symbols_exist(page):
    problems = []
    for m in PATH.finditer(_text(page)):
        rel, symbol = m.group(1), m.group(2)
        target = ROOT / rel
        if not target.exists():
            problems.append(f"{rel}: no such file or directory")
            continue
        if symbol:
            source = _text(target)
            for part in symbol.split("."):
                if not _defines(source, part):
                    problems.append(f"{rel}::{symbol}: {part!r} is not defined in {rel}")
                    break
    assert not problems, (f"{page.relative_to(ROOT)} names what the code no longer has "
                          "(a module moved or a function was renamed: update the page):\n  "
                          + "\n  ".join(problems))


def _cases_source() -> str:
    return "\n".join(_text(p) for p in sorted((ROOT / "cases").rglob("*.py")))


def _catalogue_ids() -> set[str]:
    ids = set()
    for f in sorted((ROOT / "fixtures" / "conformance").glob("rfc*.yaml")):
        ids |= {s["id"] for s in yaml.safe_load(_text(f)).get("sentences", [])}
    return ids


def test_named_parts_sentences_and_requirements_exist():
    cases = _cases_source()
    catalogue = _catalogue_ids()
    requirements = {r["id"] for r in yaml.safe_load(_text(ROOT / "fixtures" / "requirements.yaml"))["requirements"]}
    problems = []
    for page in PAGES:
        text = _text(page)
        for group, number in sorted(set(PART.findall(text))):
            wanted = f'"{group}.' if number == "*" else f'"{group}.{number}"'
            if wanted not in cases:
                problems.append(f"{page.name}: no conformance part {group}.{number} in cases/")
        for m in SENTENCE_OR_REQUIREMENT.finditer(text):
            rid = m.group(1) or m.group(2)
            if rid not in catalogue and rid not in requirements:
                problems.append(f"{page.name}: {rid} is neither a catalogue sentence "
                                "(fixtures/conformance/rfc*.yaml) nor a requirement (fixtures/requirements.yaml)")
    assert not problems, "\n".join(problems)


def test_every_rfc_cited_in_nodes_has_a_page():
    cited: dict[str, set[str]] = {}
    for f in sorted((ROOT / "nodes").rglob("*.py")):
        for n in RFC.findall(_text(f)):
            cited.setdefault(n, set()).add(str(f.relative_to(ROOT)))
    mentioned = set()
    for page in PAGES:
        mentioned |= set(RFC.findall(_text(page)))
    missing = {n: sorted(files) for n, files in sorted(cited.items(), key=lambda kv: int(kv[0]))
               if n not in mentioned}
    assert not missing, ("RFCs cited in nodes/ that no page of docs/protocols/ mentions (say on the "
                         "page of its protocol family what the code takes from it):\n  "
                         + "\n  ".join(f"RFC {n}: {', '.join(files)}" for n, files in missing.items()))
