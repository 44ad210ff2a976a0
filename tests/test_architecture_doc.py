"""docs/architecture.md names every package and module under nodes/ and testbed/ (its tour), so a
new module gets a line there."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"


def _modules() -> list[Path]:
    return sorted(p.relative_to(ROOT) for top in ("nodes", "testbed") for p in (ROOT / top).rglob("*.py")
                  if "__pycache__" not in p.parts)


def test_every_module_of_nodes_and_testbed_is_in_the_architecture_page():
    text = DOC.read_text()
    missing = []
    for path in _modules():
        if path.name == "__init__.py":
            # a package: its folder, written as `name/` (e.g. nodes/runtime/, vendors/strongswan/)
            if f"{path.parent.name}/" not in text:
                missing.append(f"{path.parent}/ (package)")
        elif not re.search(rf"(?<![\w.]){re.escape(path.stem)}(?![\w])", text):
            missing.append(str(path))
    assert missing == [], f"docs/architecture.md does not name these (add them to its tour): {missing}"
