"""``EnvPool``: step a batch of text environments together, with per-episode fault isolation.

::

    pool = EnvPool.from_name("textworld", 8, challenge="tw-cooking", step_timeout=5.0)
    first = pool.reset_all(seeds=range(8))            # list[StepResult], one per env
    results = pool.step([agent(r.observation) for r in first])
    ...
    print(pool.stats.steps_per_second)

Each environment lives in its own worker: a daemon thread (``backend="thread"``, the default,
cheap, but CPU-bound environments share the GIL) or a child process (``backend="process"``,
real parallelism; the factories must then be picklable, e.g. ``functools.partial(make, name)``
or a module-level function).

Fault isolation: if ``reset``/``step`` of one environment raises, or runs longer than
``step_timeout`` (``reset_timeout`` for resets) seconds, only THAT episode ends: its result is
``terminated=True`` with ``info["error"]`` holding the reason (``"timeout after 2.0 s"``,
``"RuntimeError: boom"``). The rest of the batch is unaffected. A timed-out worker cannot be
interrupted safely: a thread is abandoned (it keeps running in the background; its environment
is never touched again), a process is killed together with any process it started (each worker
leads its own process group: a game generator run by a hung reset goes too); either way the
slot gets a fresh worker and a fresh environment from its factory at the next ``reset_all``.

Threads isolate hangs only between environments that share nothing: TextWorld and ALFWorld
calls all hold one process-wide engine lock (:data:`empg.envs.textworld.ENGINE_LOCK`), so one
call that hangs inside an engine keeps that lock, and every later call of those environments in
the process times out too. Use ``backend="process"`` for them where a hang must stay isolated.

Finished environments (terminated, truncated or failed) are skipped by ``step`` (their entry
in the returned list is ``None``; their action is ignored) until the next ``reset_all``.

The timeout clock starts when the worker begins the call. With threads and many CPU-bound
environments the GIL stretches each call's wall time; give such batches a generous timeout or
use processes.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from empg.envs.core import StepResult, TextEnv, make
from empg.errors import InputError

EnvFactory = Callable[[], TextEnv]
BACKENDS = ("thread", "process")


@dataclass
class PoolStats:
    """Throughput counters of an :class:`EnvPool` (cumulative since creation)."""

    steps: int = 0
    """environment steps that completed normally"""
    step_seconds: float = 0.0
    """wall-clock seconds spent inside ``EnvPool.step`` calls"""
    step_calls: int = 0
    """number of ``EnvPool.step`` calls"""
    resets: int = 0
    """environment resets that completed normally"""
    errors: int = 0
    """calls that raised inside an environment (excluding timeouts)"""
    timeouts: int = 0
    """calls that ran past their timeout"""

    @property
    def steps_per_second(self) -> float:
        """Completed environment steps per wall-clock second spent in ``step`` (0 if none)."""
        return self.steps / self.step_seconds if self.step_seconds > 0 else 0.0


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _call(env: TextEnv, method: str, payload: Any) -> StepResult:
    """Run one command on ``env``; resets are wrapped into a StepResult for uniformity."""
    if method == "reset":
        seed, options = payload
        obs, info = env.reset(seed=seed, options=options)
        return StepResult(obs, 0.0, False, False, info)
    return env.step(payload)


# -- thread backend ---------------------------------------------------------------------------
class _ThreadWorker:
    """One daemon thread owning one environment; commands arrive through a queue."""

    def __init__(self, factory: EnvFactory, index: int) -> None:
        self._factory = factory
        self._env: TextEnv | None = None
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.started_at: float | None = None  # when the current command began running
        self._thread = threading.Thread(
            target=self._loop, name=f"empg-envpool-{index}", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                break
            method, payload, fut = item
            self.started_at = time.monotonic()
            try:
                if method == "close":
                    if self._env is not None:
                        self._env.close()
                    fut.set_result(None)
                    break
                if self._env is None:
                    self._env = self._factory()
                fut.set_result(_call(self._env, method, payload))
            except BaseException as exc:
                fut.set_exception(exc)

    def submit(self, method: str, payload: Any) -> Future:
        fut: Future = Future()
        self.started_at = None
        self._inbox.put((method, payload, fut))
        return fut

    def collect(self, fut: Future, deadline_s: float | None) -> tuple[str, Any]:
        """Wait for ``fut``: ('ok', result) | ('error', reason) | ('timeout', reason)."""
        while True:
            if deadline_s is None:
                wait_s = None
            else:
                began = self.started_at
                # not begun yet (the thread is being scheduled): count from now
                began = time.monotonic() if began is None else began
                wait_s = max(0.0, began + deadline_s - time.monotonic())
            try:
                return "ok", fut.result(timeout=wait_s)
            except FutureTimeout:
                if fut.done():  # the environment itself raised TimeoutError
                    return "error", _describe(fut.exception())  # type: ignore[arg-type]
                if self.started_at is None:
                    continue  # command still queued; its clock has not started
                if time.monotonic() >= self.started_at + deadline_s:  # type: ignore[operator]
                    return "timeout", f"timeout after {deadline_s:g} s"
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt | SystemExit) and not fut.done():
                    raise  # Ctrl-C while waiting: the caller's, not the environment's
                return "error", _describe(exc)

    def close(self, timeout: float) -> None:
        fut = self.submit("close", None)
        with contextlib.suppress(BaseException):  # closing is best effort
            fut.result(timeout=timeout)

    def abandon(self) -> None:
        """Stop the thread after its current (hung) call, if that ever returns."""
        self._inbox.put(None)


# -- process backend --------------------------------------------------------------------------
def _process_main(conn: Connection, factory: EnvFactory) -> None:
    if hasattr(os, "setsid"):  # lead a process group, so abandon() can kill what we start
        with contextlib.suppress(OSError):
            os.setsid()
    env: TextEnv | None = None
    while True:
        try:
            method, payload = conn.recv()
        except (EOFError, OSError):
            break
        if method == "close":
            try:
                if env is not None:
                    env.close()
            finally:
                conn.send(("ok", None))
            break
        try:
            if env is None:
                env = factory()
            conn.send(("ok", _call(env, method, payload)))
        except BaseException as exc:
            try:
                conn.send(("error", _describe(exc)))
            except Exception:
                conn.send(("error", f"{type(exc).__name__} (unpicklable details)"))
            if isinstance(exc, KeyboardInterrupt):
                break


class _ProcessWorker:
    """One child process owning one environment; commands go over a pipe."""

    def __init__(self, factory: EnvFactory, index: int, ctx: Any) -> None:
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_process_main, args=(child, factory), name=f"empg-envpool-{index}", daemon=True
        )
        self._proc.start()
        child.close()
        self.sent_at: float = 0.0

    @property
    def conn(self) -> Connection:
        return self._conn

    def submit(self, method: str, payload: Any) -> Connection:
        self._conn.send((method, payload))
        self.sent_at = time.monotonic()
        return self._conn

    def receive(self) -> tuple[str, Any]:
        try:
            return self._conn.recv()
        except (EOFError, OSError):
            self._proc.join(timeout=1.0)
            return "dead", f"worker process died (exit code {self._proc.exitcode})"

    def close(self, timeout: float) -> None:
        try:
            self._conn.send(("close", None))
            if self._conn.poll(timeout):
                self._conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            pass
        self._proc.join(timeout=timeout)
        self.abandon()

    def abandon(self) -> None:
        """Kill the worker and the processes it started (its process group; while it is alive
        its pid is that group's id, so no other group can be hit)."""
        if self._proc.is_alive():
            pid = self._proc.pid
            if hasattr(os, "killpg") and pid is not None:
                with contextlib.suppress(OSError):  # not (yet) a group leader: kill it alone
                    if os.getpgid(pid) == pid:
                        os.killpg(pid, signal.SIGKILL)
            self._proc.kill()
            self._proc.join(timeout=5.0)
        self._conn.close()


# -- the pool -----------------------------------------------------------------------------------
class EnvPool:
    """A batch of environments stepped together; see the module docstring.

    Args:
        env_fns: one zero-argument factory per environment (``len(env_fns)`` is the batch size).
        backend: ``"thread"`` (default) or ``"process"``.
        step_timeout: seconds one ``step`` may run before its episode is ended (None: no limit).
        reset_timeout: the same for ``reset`` (None: no limit; resets may load or generate games).
        mp_context: multiprocessing start method for the process backend (None: the default).
    """

    def __init__(
        self,
        env_fns: Sequence[EnvFactory],
        *,
        backend: str = "thread",
        step_timeout: float | None = None,
        reset_timeout: float | None = None,
        mp_context: str | None = None,
    ) -> None:
        env_fns = list(env_fns)
        if not env_fns:
            raise InputError("env_fns must hold at least one environment factory, got none")
        if not all(callable(f) for f in env_fns):
            raise InputError("env_fns must be zero-argument callables returning a TextEnv")
        if backend not in BACKENDS:
            raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
        for label, value in (("step_timeout", step_timeout), ("reset_timeout", reset_timeout)):
            if value is not None and not value > 0:
                raise InputError(f"{label} must be a positive number of seconds or None")
        self.backend = backend
        self.step_timeout = step_timeout
        self.reset_timeout = reset_timeout
        self._fns = env_fns
        self._ctx = mp.get_context(mp_context) if backend == "process" else None
        self._workers: list[Any] = [self._spawn(i) for i in range(len(env_fns))]
        self._done = [True] * len(env_fns)  # nothing may step before reset_all
        self._last_info: list[dict[str, Any]] = [{} for _ in env_fns]
        self._closed = False
        self.stats = PoolStats()

    @classmethod
    def from_name(
        cls, name: str, n: int, *, pool_kwargs: dict[str, Any] | None = None, **env_kwargs: Any
    ) -> EnvPool:
        """``n`` copies of the registered environment ``name`` built with ``env_kwargs``."""
        if not isinstance(n, int) or n < 1:
            raise InputError(f"n must be a positive int, got {n!r}")
        fn = functools.partial(make, name, **env_kwargs)
        return cls([fn] * n, **(pool_kwargs or {}))

    def __len__(self) -> int:
        return len(self._fns)

    @property
    def done(self) -> list[bool]:
        """Per-env flag: the episode has ended (or never started) and ``step`` skips it."""
        return list(self._done)

    @property
    def all_done(self) -> bool:
        return all(self._done)

    # -- API ------------------------------------------------------------------------------------
    def reset_all(
        self,
        seeds: Iterable[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> list[StepResult]:
        """Reset every environment (``seeds[i]`` for env i; None: no seed).

        Returns one StepResult per env (reward 0, not terminated); an env whose reset failed
        gets ``terminated=True`` and ``info["error"]`` and stays done.
        """
        self._check_open()
        seed_list = [None] * len(self) if seeds is None else list(seeds)
        if len(seed_list) != len(self):
            raise InputError(
                f"seeds must hold {len(self)} entries (one per env), got {len(seed_list)}"
            )
        payloads = [(s, dict(options or {})) for s in seed_list]
        # a failed reset must not report the previous episode's task
        self._last_info = [{} for _ in range(len(self))]
        results = self._run("reset", list(range(len(self))), payloads, self.reset_timeout)
        out: list[StepResult] = []
        for i, res in enumerate(results):
            assert res is not None
            self._done[i] = res.terminated
            out.append(res)
            if "error" not in res.info:
                self.stats.resets += 1
        return out

    def step(self, actions: Sequence[str | None]) -> list[StepResult | None]:
        """Step every unfinished env with its action; finished envs give ``None``."""
        self._check_open()
        actions = list(actions)
        if len(actions) != len(self):
            raise InputError(
                f"actions must hold {len(self)} entries (one per env; None for finished envs), "
                f"got {len(actions)}"
            )
        active = [i for i in range(len(self)) if not self._done[i]]
        for i in active:
            if actions[i] is None:
                raise InputError(f"actions[{i}] is None but env {i} is still running")
        t0 = time.perf_counter()
        results = self._run("step", active, [actions[i] for i in active], self.step_timeout)
        self.stats.step_seconds += time.perf_counter() - t0
        self.stats.step_calls += 1
        for i in active:
            res = results[i]
            assert res is not None
            if res.terminated or res.truncated:
                self._done[i] = True
            if "error" not in res.info:
                self.stats.steps += 1
        return results

    def close(self) -> None:
        """Close every environment and stop the workers. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for w in self._workers:
            w.close(timeout=5.0)

    def __enter__(self) -> EnvPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("EnvPool is closed; create a new one")

    def _spawn(self, i: int) -> Any:
        if self.backend == "thread":
            return _ThreadWorker(self._fns[i], i)
        return _ProcessWorker(self._fns[i], i, self._ctx)

    def _failure(self, i: int, reason: str) -> StepResult:
        last = self._last_info[i]
        info = {
            "won": False,
            "task": str(last.get("task", "")),
            "task_type": str(last.get("task_type", "")),
            "error": reason,
        }
        return StepResult("", 0.0, True, False, info)

    def _replace_worker(self, i: int) -> None:
        self._workers[i].abandon()
        self._workers[i] = self._spawn(i)

    def _run(
        self, method: str, idx: list[int], payloads: list[Any], timeout: float | None
    ) -> list[StepResult | None]:
        outcomes = (
            self._run_threads(method, idx, payloads, timeout)
            if self.backend == "thread"
            else self._run_processes(method, idx, payloads, timeout)
        )
        results: list[StepResult | None] = [None] * len(self)
        for i, (kind, value) in zip(idx, outcomes, strict=True):
            if kind == "ok":
                results[i] = value
                self._last_info[i] = value.info
                continue
            if kind == "timeout":
                self.stats.timeouts += 1
            else:
                self.stats.errors += 1
            if kind in ("timeout", "dead"):
                self._replace_worker(i)  # a hung or dead worker is never used again
            results[i] = self._failure(i, value)
        return results

    def _run_threads(
        self, method: str, idx: list[int], payloads: list[Any], timeout: float | None
    ) -> list[tuple[str, Any]]:
        futures = [self._workers[i].submit(method, p) for i, p in zip(idx, payloads, strict=True)]
        return [self._workers[i].collect(f, timeout) for i, f in zip(idx, futures, strict=True)]

    def _run_processes(
        self, method: str, idx: list[int], payloads: list[Any], timeout: float | None
    ) -> list[tuple[str, Any]]:
        pending: dict[Connection, int] = {}
        outcomes: dict[int, tuple[str, Any]] = {}
        for i, p in zip(idx, payloads, strict=True):
            try:
                pending[self._workers[i].submit(method, p)] = i
            except (OSError, BrokenPipeError, ValueError) as exc:
                outcomes[i] = ("dead", f"worker process unreachable ({_describe(exc)})")
        while pending:
            now = time.monotonic()
            wait_s = None
            if timeout is not None:
                wait_s = max(
                    0.0, min(self._workers[i].sent_at for i in pending.values()) + timeout - now
                )
            ready = wait(list(pending), timeout=wait_s)
            for conn in ready:
                i = pending.pop(conn)
                kind, value = self._workers[i].receive()
                outcomes[i] = (kind, value)
            if timeout is not None:
                now = time.monotonic()
                for conn, i in list(pending.items()):
                    if now >= self._workers[i].sent_at + timeout:
                        del pending[conn]
                        outcomes[i] = ("timeout", f"timeout after {timeout:g} s")
        return [outcomes[i] for i in idx]
