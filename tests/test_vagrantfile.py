"""The Vagrantfile's behaviour, without a hypervisor or a box: Ruby evaluates it with a recording
stand-in for Vagrant's configuration object under different settings (environment, the config
file scripts/vm writes), and `vagrant validate` accepts it. Both need vagrant (its Ruby comes with
it); they skip with that reason where it is absent."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from testbed import REPO_ROOT

RECORDER = r"""
require "json"
LOG = []
class Recorder
  def initialize(path) @path = path end
  def respond_to_missing?(*) true end
  def method_missing(name, *args, **kw, &blk)
    key = (@path + [name.to_s]).join(".")
    if key.end_with?("=")
      LOG << [key.chomp("="), args[0]]
      return args[0]
    end
    LOG << [key, args, kw] unless args.empty? && kw.empty?
    path = @path + [name.to_s] + (blk && args[0] ? [args[0].to_s] : [])
    blk.call(Recorder.new(path), Recorder.new(path + ["override"])) if blk
    Recorder.new(path)
  end
end
module Vagrant
  def self.configure(_version) yield Recorder.new([]) end
end
load ARGV[0]
puts JSON.generate(LOG)
"""

VAGRANT_ENV = ("TESTBED_VM_BOX", "TESTBED_VM_DRIVER", "TESTBED_VM_CPUS", "TESTBED_VM_MEMORY",
               "TESTBED_VM_CA", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY",
               "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        pytest.skip(f"{tool} is not installed (Debian's vagrant package brings ruby and vagrant; "
                    "scripts/setup installs it)")
    return path


def evaluate(tmp_path, env: dict | None = None, conf: str | None = None) -> dict:
    """What the Vagrantfile sets under these settings: {key: value} for assignments and
    {key: [(args, kwargs), ...]} for calls (synced_folder, provision)."""
    ruby = _need("ruby")
    shutil.copy(REPO_ROOT / "Vagrantfile", tmp_path / "Vagrantfile")
    if conf is not None:
        (tmp_path / ".vagrant").mkdir(exist_ok=True)
        (tmp_path / ".vagrant" / "testbed-vm.conf").write_text(conf)
    (tmp_path / "recorder.rb").write_text(RECORDER)
    base = {k: v for k, v in os.environ.items() if k not in VAGRANT_ENV}
    res = subprocess.run([ruby, str(tmp_path / "recorder.rb"), str(tmp_path / "Vagrantfile")],
                         env={**base, **(env or {})}, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out: dict = {}
    for entry in json.loads(res.stdout):
        if len(entry) == 2:
            out[entry[0]] = entry[1]
        else:
            out.setdefault(entry[0], []).append((entry[1], entry[2]))
    return out


def test_defaults_use_the_locally_built_box(tmp_path):
    cfg = evaluate(tmp_path)
    assert cfg["vm.box"] == "testbed/bookworm64"
    assert cfg["vm.provider.libvirt.cpus"] == 2 and cfg["vm.provider.libvirt.memory"] == 4096
    # VirtualBox users get Debian's published box unless they name one
    assert cfg["vm.provider.virtualbox.override.vm.box"] == "debian/bookworm64"


def test_box_and_size_from_the_environment(tmp_path):
    cfg = evaluate(tmp_path, {"TESTBED_VM_BOX": "mine/box", "TESTBED_VM_CPUS": "1",
                              "TESTBED_VM_MEMORY": "3072"})
    assert cfg["vm.box"] == "mine/box" and cfg["vm.provider.virtualbox.override.vm.box"] == "mine/box"
    assert cfg["vm.provider.libvirt.cpus"] == 1 and cfg["vm.provider.libvirt.memory"] == 3072


def test_tcg_driver_uses_the_maximum_cpu_model(tmp_path):
    cfg = evaluate(tmp_path, {"TESTBED_VM_DRIVER": "qemu"})
    assert cfg["vm.provider.libvirt.driver"] == "qemu"
    assert cfg["vm.provider.libvirt.cpu_mode"] == "maximum"
    cfg = evaluate(tmp_path, {"TESTBED_VM_DRIVER": "kvm"})
    assert cfg["vm.provider.libvirt.driver"] == "kvm" and "vm.provider.libvirt.cpu_mode" not in cfg


def test_config_file_written_by_scripts_vm_and_environment_wins(tmp_path):
    conf = "TESTBED_VM_DRIVER=qemu\nTESTBED_VM_BOX=from/file\nOTHER=ignored\n"
    cfg = evaluate(tmp_path, conf=conf)
    assert cfg["vm.provider.libvirt.driver"] == "qemu" and cfg["vm.box"] == "from/file"
    cfg = evaluate(tmp_path, {"TESTBED_VM_DRIVER": "kvm"}, conf=conf)
    assert cfg["vm.provider.libvirt.driver"] == "kvm"


def test_bad_driver_is_refused_with_the_choices(tmp_path):
    with pytest.raises(AssertionError, match="use kvm, qemu"):
        evaluate(tmp_path, {"TESTBED_VM_DRIVER": "xen"})


def test_auto_driver_follows_dev_kvm(tmp_path):
    cfg = evaluate(tmp_path, {"TESTBED_VM_DRIVER": "auto"})
    usable = os.access("/dev/kvm", os.R_OK | os.W_OK)
    assert cfg["vm.provider.libvirt.driver"] == ("kvm" if usable else "qemu")


def test_synced_folders_rsync_to_testbed_only(tmp_path):
    folders = {args[1]: kw for args, kw in evaluate(tmp_path)["vm.synced_folder"]}
    assert folders["/vagrant"] == {"disabled": True}
    assert folders["/testbed"]["type"] == "rsync"
    assert {".venv/", "reports/", ".vagrant/"} <= set(folders["/testbed"]["rsync__exclude"])


def test_provisioning_carries_proxy_and_pip_index_but_not_local_paths(tmp_path):
    env = {"https_proxy": "http://proxy.example:3128", "PIP_INDEX_URL": "https://pypi.example/simple",
           "PIP_EXTRA_INDEX_URL": "file:///opt/local/simple https://more.example/simple"}
    calls = evaluate(tmp_path, env)["vm.provision"]
    shell = [kw for args, kw in calls if args == ["shell"]]
    assert len(shell) == 1 and "scripts/setup" in shell[0]["inline"]
    prov_env = shell[0]["env"]
    assert prov_env["https_proxy"] == "http://proxy.example:3128"
    assert prov_env["PIP_INDEX_URL"] == "https://pypi.example/simple"
    assert prov_env["PIP_EXTRA_INDEX_URL"] == "https://more.example/simple"
    # the host's CA bundle goes in at provisioning time (the box itself carries none)
    bundle = tmp_path / "ca.crt"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    files = [kw for args, kw in evaluate(tmp_path, {"TESTBED_VM_CA": str(bundle)})["vm.provision"]
             if args == ["file"]]
    assert files == [{"source": str(bundle), "destination": "/tmp/testbed-host-ca.crt"}]
    assert not [a for a, _ in evaluate(tmp_path, {"TESTBED_VM_CA": str(tmp_path / "none")})["vm.provision"]
                if a == ["file"]]


@pytest.mark.parametrize("driver", ["kvm", "qemu"])
def test_vagrant_validate(tmp_path, driver):
    vagrant = _need("vagrant")
    shutil.copy(REPO_ROOT / "Vagrantfile", tmp_path / "Vagrantfile")
    env = {**os.environ, "VAGRANT_HOME": str(tmp_path / "vagrant.d"), "VAGRANT_CHECKPOINT_DISABLE": "1",
           "TESTBED_VM_DRIVER": driver}
    res = subprocess.run([vagrant, "validate", "--ignore-provider"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "validated successfully" in res.stdout, res.stdout + res.stderr
