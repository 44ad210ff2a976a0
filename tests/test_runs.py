import json
import subprocess

from testbed.runs import Run, reap_stale, start_time


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_reaping_kills_what_a_dead_run_left_and_spares_live_runs(tmp_path):
    live = Run.register("live-run", tmp_path)
    orphan = subprocess.Popen(["sleep", "30"])
    dead = Run.register("dead-run", tmp_path)
    dead.track(orphan.pid, "sleep@h")
    (dead.dir / "owner.json").write_text(json.dumps({"pid": dead_pid(), "start": 1}))
    spared = subprocess.Popen(["sleep", "30"])
    live.track(spared.pid, "sleep@g")
    try:
        actions = reap_stale(tmp_path)
        assert orphan.wait(timeout=5) == -9
        assert not dead.dir.exists() and live.dir.exists()
        assert spared.poll() is None, "a live run's process must never be touched"
        assert any("dead-run" in a and "sleep@h" in a for a in actions)
    finally:
        spared.kill()
        spared.wait()


def test_a_reused_pid_is_not_killed(tmp_path):
    bystander = subprocess.Popen(["sleep", "30"])
    dead = Run.register("dead-run", tmp_path)
    (dead.dir / "pids" / str(bystander.pid)).write_text(json.dumps({"start": start_time(bystander.pid) - 1}))
    (dead.dir / "owner.json").write_text(json.dumps({"pid": dead_pid(), "start": 1}))
    try:
        reap_stale(tmp_path)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_nothing_to_reap(tmp_path):
    assert reap_stale(tmp_path / "missing") == []
