"""``check_env``: verify that an environment follows the text-environment contract."""

from __future__ import annotations

import random
from typing import Any

from empg.envs.core import REQUIRED_INFO_KEYS, ResetNeeded, StepResult, TextEnv

HOSTILE_ACTIONS = (
    "",
    " ",
    "x" * (1 << 20),
    "\udcff\x00\u202e\U0001f600 go to ???",
    "$(rm -rf /); `reboot`; __import__('os').system('ls')",
    "<script>alert(1)</script>",
    "click[<b>]]]][[[",
    "search[]",
    "\n\n\n",
)


class EnvCheckError(AssertionError):
    """The environment broke the contract; the message says where."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise EnvCheckError(msg)


def _check_info(info: Any, where: str) -> None:
    _check(isinstance(info, dict), f"{where}: info must be a dict, got {type(info).__name__}")
    for key in REQUIRED_INFO_KEYS:
        _check(key in info, f"{where}: info lacks required key {key!r}")
    _check(isinstance(info["won"], bool), f"{where}: info['won'] must be bool")
    _check(isinstance(info["task"], str), f"{where}: info['task'] must be str")
    _check(isinstance(info["task_type"], str), f"{where}: info['task_type'] must be str")
    if "admissible_actions" in info:
        adm = info["admissible_actions"]
        _check(
            isinstance(adm, list) and all(isinstance(a, str) for a in adm),
            f"{where}: info['admissible_actions'] must be a list of str",
        )


def _check_result(res: Any, where: str) -> None:
    _check(isinstance(res, StepResult), f"{where}: step must return StepResult")
    _check(isinstance(res.observation, str), f"{where}: observation must be str")
    _check(isinstance(res.reward, float), f"{where}: reward must be float")
    _check(isinstance(res.terminated, bool), f"{where}: terminated must be bool")
    _check(isinstance(res.truncated, bool), f"{where}: truncated must be bool")
    _check(not (res.terminated and res.truncated), f"{where}: terminated and truncated both set")
    _check_info(res.info, where)


def _safe_step(env: TextEnv, action: str, where: str) -> StepResult:
    """``env.step(action)``; an exception (other than the contract's ResetNeeded) breaks the
    contract, which says any string gets an ordinary observation."""
    try:
        return env.step(action)
    except ResetNeeded:
        raise
    except Exception as e:  # any other exception breaks the contract
        raise EnvCheckError(f"{where} raised {type(e).__name__}: {e}") from e


def _pick_action(env: TextEnv, info: dict, rng: random.Random, policy: str) -> str:
    if policy == "expert":
        try:
            return env.expert_action()
        except NotImplementedError:
            pass
    adm = info.get("admissible_actions") or []
    return rng.choice(adm) if adm else rng.choice((*HOSTILE_ACTIONS[:2], "look"))


def _rollout(env: TextEnv, seed: int, policy: str, max_steps: int) -> list[tuple]:
    rng = random.Random(seed)
    obs, info = env.reset(seed=seed)
    _check(isinstance(obs, str), "reset: observation must be str")
    _check_info(info, "reset")
    trace: list[tuple] = [(obs, info.get("task"), tuple(info.get("admissible_actions") or ()))]
    for t in range(max_steps):
        action = _pick_action(env, info, rng, policy)
        res = _safe_step(env, action, f"step {t} ({policy}), action {action[:20]!r}")
        _check_result(res, f"step {t} ({policy})")
        info = res.info
        trace.append(
            (action, res.observation, res.reward, res.terminated, res.truncated, info["won"])
        )
        if res.terminated or res.truncated:
            break
    return trace


def check_env(env: TextEnv, *, seeds: tuple[int, ...] = (0, 1), max_steps: int = 200) -> None:
    """Raise :class:`EnvCheckError` if ``env`` breaks the contract.

    Checks: reset/step types and info keys; determinism (same seed and actions give the same
    trace, expert and random-admissible policies); hostile action strings give ordinary
    observations; ``step`` after the end raises :class:`ResetNeeded`; an episode ends within
    ``env.max_steps``.
    """
    _check(isinstance(env, TextEnv), f"env must be a TextEnv, got {type(env).__name__}")
    for seed in seeds:
        for policy in ("expert", "random"):
            a = _rollout(env, seed, policy, max_steps)
            b = _rollout(env, seed, policy, max_steps)
            _check(a == b, f"seed {seed}, {policy} policy: two runs differ (not deterministic)")
            last = a[-1]
            _check(
                len(a) - 1 <= env.max_steps and (last[3] or last[4]),
                f"seed {seed}, {policy}: episode did not end within max_steps={env.max_steps}",
            )
            try:
                env.step("look")
            except ResetNeeded:
                pass
            else:
                raise EnvCheckError("step after the episode ended must raise ResetNeeded")
    # hostile inputs: ordinary observations, no exceptions
    env.reset(seed=seeds[0])
    for action in HOSTILE_ACTIONS:
        res = _safe_step(env, action, f"hostile action {action[:20]!r}")
        _check_result(res, f"hostile action {action[:20]!r}")
        if res.terminated or res.truncated:
            env.reset(seed=seeds[0])
    _check(isinstance(env.expert_thought(), str), "expert_thought() must return str")
