"""The requirements catalogue and the cases' `req` markers: every id a case names exists."""
import ast
from pathlib import Path

import pytest

from testbed import REPO_ROOT
from testbed.report.requirements import LEVELS, catalogue, check_req_ids, load_catalogue
from testbed.schema import ConfigError


def req_marks(path: Path) -> list[tuple[int, list[str]]]:
    """(line, ids) of every pytest.mark.req(...) in a case file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "req"
                and ast.unparse(node.func.value) == "pytest.mark"):
            out.append((node.lineno, [a.value for a in node.args if isinstance(a, ast.Constant)]))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "part"
              and len(node.args) >= 3 and isinstance(node.args[2], ast.List)):  # a conformance test part
            out.append((node.lineno, [a.value for a in node.args[2].elts if isinstance(a, ast.Constant)]))
    return out


CASE_FILES = sorted((REPO_ROOT / "cases").rglob("test_*.py"))


def test_catalogue_is_well_formed():
    cat = catalogue()
    assert len(cat.requirements) >= 40
    for r in cat.requirements.values():
        assert r.level in LEVELS and r.text and r.source and r.area in cat.areas, r


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_cases_name_only_known_requirements(path):
    known = catalogue().requirements
    for line, ids in req_marks(path):
        assert ids, f"{path}:{line}: a req marker without ids"
        unknown = [i for i in ids if i not in known]
        assert not unknown, f"{path}:{line}: unknown requirement id(s) {unknown}; add them to fixtures/requirements.yaml"


def test_the_existing_cases_each_name_requirements():
    """Every case function in the areas this catalogue covers names at least one requirement
    (a conformance test part names them in its `part(...)` declaration)."""
    missing = []
    for path in CASE_FILES:
        tree = ast.parse(path.read_text())
        for fn in tree.body:
            if isinstance(fn, ast.FunctionDef) and fn.name.startswith("test_"):
                decorators = [ast.unparse(d) for d in fn.decorator_list]
                if not any("pytest.mark.req" in d or d.startswith("part(") for d in decorators):
                    missing.append(f"{path.relative_to(REPO_ROOT)}::{fn.name}")
    known_gaps = [m for m in missing if m.startswith("cases/vpn_traversal/")]  # that area is being written
    assert sorted(set(missing) - set(known_gaps)) == []


def test_an_unknown_id_is_refused_at_collection():
    """The plugin's collection check (pytest_collection_modifyitems) calls this."""
    check_req_ids("cases/x/test_x.py::test_x", ["gupta-4a-unauthorized"])
    with pytest.raises(pytest.UsageError, match=r"unknown requirement id\(s\) \['no-such-requirement'\]"):
        check_req_ids("cases/x/test_x.py::test_x", ["gupta-4a-unauthorized", "no-such-requirement"])


def test_a_bad_catalogue_names_file_and_key(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("areas: {world: W}\nrequirements:\n  - {id: a, area: world, source: s, level: MUSTN'T, text: t}\n")
    with pytest.raises(ConfigError, match=r"requirements\[0\]\.level"):
        load_catalogue(bad)


def test_sources_are_public_documents_with_sections():
    """A requirement's source is something a user has: an RFC or a draft with its section, or a
    testbed principle of docs/principles.md (never a file only the developers have, nor an issue
    number). Every RFC 5265 entry names a section."""
    import re
    for r in catalogue().requirements.values():
        assert re.search(r"\bRFC \d+ sections? [\dA-Z]|\bdraft-[a-z0-9-]+ .*(section|Appendix)|docs/principles\.md",
                         r.source), (r.id, r.source)
        assert not re.search(r"\bissue \d", r.source), (r.id, r.source)
        if "RFC 5265" in r.source:
            assert re.search(r"RFC 5265 sections? \d", r.source), (r.id, r.source)
        if r.id.startswith("testbed-"):
            assert "docs/principles.md" in r.source, (r.id, r.source)
