"""The harness: world, node runtime, scenarios, captures, pytest plugin, CLI and reports."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "fixtures"
