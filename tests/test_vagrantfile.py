"""The Vagrantfile is checked without a hypervisor or a box download: `vagrant validate` (Debian's
vagrant, installed by scripts/setup) on a copy of it, and its provisioner is the one installer."""
from __future__ import annotations

import os
import shutil
import subprocess

from testbed import REPO_ROOT


def test_vagrantfile_validates(tmp_path):
    vagrant = shutil.which("vagrant")
    assert vagrant, "vagrant is not installed: scripts/setup installs Debian's vagrant package; run it"
    shutil.copy(REPO_ROOT / "Vagrantfile", tmp_path / "Vagrantfile")
    env = {**os.environ, "VAGRANT_HOME": str(tmp_path / "vagrant.d"), "VAGRANT_CHECKPOINT_DISABLE": "1"}
    res = subprocess.run([vagrant, "validate", "--ignore-provider"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "validated successfully" in res.stdout, res.stdout + res.stderr


def test_vagrant_provisions_with_scripts_setup():
    text = (REPO_ROOT / "Vagrantfile").read_text()
    assert 'config.vm.box = "debian/bookworm64"' in text
    assert "scripts/setup" in text and 'provision "shell"' in text
