"""EnvPool: batched stepping, fault isolation (exceptions, hangs, dead workers), stats."""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import pytest

from empg.envs import StepResult, TextEnv, make, register
from empg.envs.pool import EnvPool, PoolStats
from empg.errors import InputError


class CountEnv(TextEnv):
    """Observation is the step count; terminates (won) after ``length`` steps."""

    name = "test-count"

    def __init__(self, length: int = 3, max_steps: int = 50) -> None:
        super().__init__()
        self.length = length
        self.max_steps = max_steps
        self.t = 0
        self.seed = 0

    def _info(self) -> dict[str, Any]:
        return {
            "won": self.t >= self.length,
            "task": f"count to {self.length}",
            "task_type": "count",
        }

    def _reset(self, *, seed, options):
        self.t, self.seed = 0, seed or 0
        return f"seed {self.seed} t 0", self._info()

    def _step(self, action):
        self.t += 1
        done = self.t >= self.length
        return f"seed {self.seed} t {self.t} got {action}", float(done), done, self._info()


class RaisingEnv(CountEnv):
    """Raises on its second step."""

    def _step(self, action):
        if self.t == 1:
            raise RuntimeError("boom")
        return super()._step(action)


class HangingEnv(CountEnv):
    """Sleeps far past any timeout on its first step."""

    def _step(self, action):
        time.sleep(30)
        return super()._step(action)


class DyingEnv(CountEnv):
    """Kills its own process on the first step (only meaningful in a worker process)."""

    def _step(self, action):
        os._exit(3)


class RaisingResetEnv(CountEnv):
    def _reset(self, *, seed, options):
        raise ValueError(f"no task for seed {seed}")


register("_test_pool_count", CountEnv, overwrite=True)
register("_test_pool_raise", RaisingEnv, overwrite=True)
register("_test_pool_hang", HangingEnv, overwrite=True)


def _fns(*names: str) -> list:
    return [functools.partial(make, n) for n in names]


BACKENDS = ["thread", "process"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_plain_batch_matches_single_envs(backend):
    with EnvPool([CountEnv, functools.partial(CountEnv, 2)], backend=backend) as pool:
        first = pool.reset_all(seeds=[5, 6])
        assert [r.observation for r in first] == ["seed 5 t 0", "seed 6 t 0"]
        assert all(isinstance(r, StepResult) and not r.terminated for r in first)
        r1 = pool.step(["a", "b"])
        assert [r.observation for r in r1] == ["seed 5 t 1 got a", "seed 6 t 1 got b"]
        r2 = pool.step(["c", "d"])
        assert r2[1].terminated and r2[1].reward == 1.0 and r2[1].info["won"] is True
        assert pool.done == [False, True]
        r3 = pool.step(["e", None])  # finished env 1 is skipped
        assert r3[1] is None
        assert r3[0].observation == "seed 5 t 3 got e" and r3[0].terminated
        assert pool.all_done
        assert pool.stats.steps == 5 and pool.stats.step_calls == 3
        assert pool.stats.resets == 2 and pool.stats.errors == 0 and pool.stats.timeouts == 0
        assert pool.stats.steps_per_second > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_exception_and_hang_end_only_their_episode(backend):
    fns = [CountEnv, RaisingEnv, HangingEnv, functools.partial(CountEnv, 5)]
    with EnvPool(fns, backend=backend, step_timeout=0.5) as pool:
        pool.reset_all(seeds=[0, 1, 2, 3])
        t0 = time.monotonic()
        r1 = pool.step(["x"] * 4)
        elapsed = time.monotonic() - t0
        assert elapsed < 3.0, f"the hanging env blocked the batch for {elapsed:.1f} s"
        assert r1[2].terminated and r1[2].info["error"] == "timeout after 0.5 s"
        assert r1[2].info["won"] is False and r1[2].info["task"] == "count to 3"
        assert not r1[0].terminated and not r1[1].terminated and not r1[3].terminated
        r2 = pool.step(["y", "y", None, "y"])
        assert r2[1].terminated and r2[1].info["error"] == "RuntimeError: boom"
        assert r2[2] is None
        assert r2[0].observation == "seed 0 t 2 got y" and "error" not in r2[0].info
        assert r2[3].observation == "seed 3 t 2 got y"
        assert pool.done == [False, True, True, False]
        assert pool.stats.timeouts == 1 and pool.stats.errors == 1
        assert pool.stats.steps == 3 + 2  # completed steps only

        # the next reset gives the hung slot a fresh worker and environment
        again = pool.reset_all(seeds=[0, 1, 2, 3])
        assert [r.observation for r in again] == [f"seed {i} t 0" for i in range(4)]
        assert pool.done == [False] * 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_failed_reset_is_isolated(backend):
    with EnvPool([CountEnv, RaisingResetEnv], backend=backend) as pool:
        res = pool.reset_all(seeds=[0, 7])
        assert not res[0].terminated
        assert res[1].terminated and res[1].info["error"] == "ValueError: no task for seed 7"
        assert pool.done == [False, True]
        assert pool.step(["a", None])[1] is None


class PickyResetEnv(CountEnv):
    """Seed 99 has no task; other seeds name theirs."""

    def _reset(self, *, seed, options):
        if seed == 99:
            raise RuntimeError("bad seed")
        obs, info = super()._reset(seed=seed, options=options)
        return obs, {**info, "task": f"task-{seed}"}


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_failed_reset_does_not_report_the_previous_episodes_task(backend):
    with EnvPool([PickyResetEnv], backend=backend) as pool:
        assert pool.reset_all(seeds=[1])[0].info["task"] == "task-1"
        res = pool.reset_all(seeds=[99])[0]
        assert res.terminated and res.info["error"] == "RuntimeError: bad seed"
        assert res.info["task"] == ""


def test_dead_worker_process_is_replaced():
    with EnvPool([CountEnv, DyingEnv], backend="process", step_timeout=5.0) as pool:
        pool.reset_all(seeds=[0, 0])
        res = pool.step(["a", "a"])
        assert res[1].terminated
        assert res[1].info["error"] == "worker process died (exit code 3)"
        assert pool.stats.errors == 1 and pool.stats.timeouts == 0
        again = pool.reset_all(seeds=[0, 4])
        assert again[1].observation == "seed 4 t 0"


class SpawningResetEnv(CountEnv):
    """Its reset starts a child process (as TextWorld's reset runs tw-make), writes the
    child's pid to ``pid_file`` and waits for it far past any timeout."""

    def __init__(self, pid_file: str) -> None:
        super().__init__()
        self.pid_file = pid_file

    def _reset(self, *, seed, options):
        import subprocess
        import sys

        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        with open(self.pid_file, "w") as f:
            f.write(str(child.pid))
        child.wait()
        return super()._reset(seed=seed, options=options)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a killed child not yet reaped by its (killed) parent is a zombie: gone in all but name
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ", 1)[1][0] != "Z"


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups are POSIX")
def test_a_timed_out_process_worker_takes_its_own_child_processes_with_it(tmp_path):
    pid_file = tmp_path / "child.pid"
    with EnvPool(
        [functools.partial(SpawningResetEnv, str(pid_file))], backend="process", reset_timeout=1.0
    ) as pool:
        res = pool.reset_all(seeds=[0])[0]
        assert res.terminated and res.info["error"] == "timeout after 1 s"
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5.0
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the hung worker's child process outlived it"


class SlowEnv(CountEnv):
    def _step(self, action):
        time.sleep(1.0)
        return super()._step(action)


def test_ctrl_c_while_waiting_for_a_thread_worker_reaches_the_caller():
    """A SIGINT that lands while the main thread waits for a step is the user's Ctrl-C: it
    must not become one episode's error (a training run would then go on)."""
    import signal
    import threading

    with EnvPool([SlowEnv], backend="thread", step_timeout=10.0) as pool:
        pool.reset_all(seeds=[0])
        timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                pool.step(["a"])
        finally:
            timer.cancel()


def test_from_name_uses_the_registry():
    with EnvPool.from_name("_test_pool_count", 3, length=1) as pool:
        res = pool.reset_all(seeds=[0, 1, 2])
        assert len(pool) == 3 and len(res) == 3
        out = pool.step(["go"] * 3)
        assert all(r.terminated and r.info["won"] for r in out)


def test_registered_hanging_env_by_name_times_out():
    pool = EnvPool(_fns("_test_pool_count", "_test_pool_hang"), step_timeout=0.3)
    try:
        pool.reset_all(seeds=[0, 0])
        t0 = time.monotonic()
        res = pool.step(["a", "a"])
        assert time.monotonic() - t0 < 2.5
        assert res[1].info["error"] == "timeout after 0.3 s"
        assert res[0].observation == "seed 0 t 1 got a"
    finally:
        pool.close()


def test_argument_errors():
    with pytest.raises(InputError, match="at least one"):
        EnvPool([])
    with pytest.raises(InputError, match="backend must be one of"):
        EnvPool([CountEnv], backend="gpu")
    with pytest.raises(InputError, match="step_timeout"):
        EnvPool([CountEnv], step_timeout=0)
    with EnvPool([CountEnv, CountEnv]) as pool:
        with pytest.raises(InputError, match="seeds must hold 2"):
            pool.reset_all(seeds=[1])
        pool.reset_all()
        with pytest.raises(InputError, match="actions must hold 2"):
            pool.step(["a"])
        with pytest.raises(InputError, match=r"actions\[1\] is None"):
            pool.step(["a", None])
    with pytest.raises(RuntimeError, match="closed"):
        pool.step(["a", "b"])


def test_step_before_reset_skips_everything():
    with EnvPool([CountEnv]) as pool:
        assert pool.step([None]) == [None]


def test_stats_rate():
    s = PoolStats(steps=10, step_seconds=2.0)
    assert s.steps_per_second == 5.0
    assert PoolStats().steps_per_second == 0.0
