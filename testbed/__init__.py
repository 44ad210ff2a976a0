"""The harness: world, processes in nodes, scenarios, profiles, captures, pytest plugin, CLI, reports,
the conformance suites and the load generator."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "fixtures"
