"""One process trains into a run directory at a time; Ctrl-C says how to continue."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_helpers import QUIET, tiny_overrides

from empg.errors import ConfigError
from empg.train.config import load_config
from empg.train.lock import lock_run_dir, unlock_run_dir
from empg.train.trainer import Trainer

SRC = str(Path(__file__).parents[2] / "src")


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=SRC)


def _locks_elsewhere(folder: Path) -> bool:
    """Whether another process can take the folder's lock right now."""
    code = "import sys; from empg.train.lock import lock_run_dir; lock_run_dir(sys.argv[1])"
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder)], env=_env(), capture_output=True, text=True
    )
    if done.returncode not in (0, 1) or (done.returncode and "in use by" not in done.stderr):
        raise AssertionError(done.stderr)
    return done.returncode == 0


def test_a_live_run_dir_refuses_a_second_trainer_and_ctrl_c_says_how_to_resume(
    tiny_policy_dir, tmp_path
):
    run = tmp_path / "live"
    # more iterations than the test can see through (with hidden size 32 a few hundred take
    # seconds, and a busy machine once let 200 finish before the Ctrl-C below): only SIGINT ends it
    args = tiny_overrides(tiny_policy_dir, run, iterations=1_000_000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "empg.cli", "train", *args],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        first = run / "checkpoints" / "iter_000001" / "trainer_state.json"
        while time.time() < deadline and not first.exists() and proc.poll() is None:
            time.sleep(0.05)
        assert first.exists(), "training did not progress"
        saved = (run / "config.json").read_bytes()
        for resume in (False, True):
            other = load_config(None, [*args, "seed=7"])
            busy = rf"in use by another empg process \(pid {proc.pid}\)"
            with pytest.raises(ConfigError, match=busy):
                Trainer(other, resume=resume, log=QUIET)
        assert (run / "config.json").read_bytes() == saved  # the live run's config is untouched
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "empg train: interrupted; iter_" in err and "is the last complete checkpoint" in err
    assert f"Continue with:\n  empg train --resume {shlex.join(args)}" in err
    assert _locks_elsewhere(run)  # Ctrl-C released the lock


def test_the_lock_is_counted_within_a_process_and_released_by_run(tiny_policy_dir, tmp_path):
    folder = tmp_path / "counted"
    a, b = lock_run_dir(folder), lock_run_dir(folder)  # one process may hold it twice
    assert a == b and (folder / ".lock").read_text().strip() == str(os.getpid())
    unlock_run_dir(a)
    assert not _locks_elsewhere(folder)  # one hold left
    unlock_run_dir(b)
    assert _locks_elsewhere(folder)

    run = tmp_path / "run"
    cfg = load_config(None, tiny_overrides(tiny_policy_dir, run, iterations=1))
    trainer = Trainer(cfg, log=QUIET)
    assert not _locks_elsewhere(run)
    trainer.run()
    assert _locks_elsewhere(run)
    with pytest.raises(ConfigError, match="already holds a run"):  # a refused start unlocks
        Trainer(cfg, log=QUIET)
    assert _locks_elsewhere(run)


def test_a_run_dir_under_home_is_locked_where_the_run_writes(
    tiny_policy_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    over = [o for o in tiny_overrides(tiny_policy_dir, "x", iterations=0) if "run_dir" not in o]
    trainer = Trainer(load_config(None, [*over, "run_dir=~/home-run"]), log=QUIET)
    assert trainer.run_dir == tmp_path / "home-run"
    assert not _locks_elsewhere(tmp_path / "home-run")
    assert not (tmp_path / "~").exists()
    trainer.run()
    assert (tmp_path / "home-run" / "metrics.jsonl").is_file()
    trainer.run_dir = tmp_path / "elsewhere"
    trainer._unlock()  # a second release is a no-op
    assert _locks_elsewhere(tmp_path / "home-run")


def test_lock_run_dir_itself_expands_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    key = lock_run_dir("~/runs/a")
    try:
        assert key == (tmp_path / "home" / "runs" / "a").resolve()
        assert not (tmp_path / "~").exists()
        assert not _locks_elsewhere(tmp_path / "home" / "runs" / "a")
    finally:
        unlock_run_dir(key)


def test_a_file_system_that_cannot_lock_warns_and_goes_on(tmp_path, monkeypatch):
    import errno

    import empg.train.lock as lock

    def unsupported(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock.fcntl, "flock", unsupported)
    with pytest.warns(RuntimeWarning, match="cannot lock .*No locks available"):
        key = lock_run_dir(tmp_path / "nfs")
    unlock_run_dir(key)  # nothing held: a no-op


def test_a_run_dir_that_cannot_be_a_folder_is_a_one_line_error(tmp_path, capsys):
    from empg import cli

    afile = tmp_path / "afile"
    afile.write_text("")
    for run_dir in (afile, afile / "sub"):
        with pytest.raises(ConfigError, match="cannot create the folder"):
            lock_run_dir(run_dir)
        assert cli.main(["train", f"run_dir={run_dir}", "iterations=0"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("empg train: error: run_dir") and len(err.splitlines()) == 1
