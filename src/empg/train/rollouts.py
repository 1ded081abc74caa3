"""The trainer's view of rollouts: per-iteration seeding, dynamic sampling, evaluation.

All randomness of iteration ``it`` derives from ``(seed, it, round)``, never from a stream
carried across iterations, so a resumed run repeats exactly what an uninterrupted one does.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from empg.agent.batch import RolloutBatch
from empg.agent.generation import GenerationConfig
from empg.agent.prompts import PromptConfig
from empg.agent.rollout import RolloutConfig, collect_rollouts
from empg.algos.dapo import dynamic_sampling_mask
from empg.train.config import FILTER_METRICS, TrainConfig


def derived_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (stable across processes and platforms)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def prompt_config(cfg: TrainConfig) -> PromptConfig:
    r = cfg.rollout
    return PromptConfig(
        history=r.history,
        show_admissible=r.show_admissible,
        compact=r.compact_prompt,
        first_observation=r.first_observation,
        past_actions=r.past_actions,
        recall_observation=r.recall_observation,
    )


def rollout_config(
    cfg: TrainConfig, split: str, *, temperature: float, group_size: int
) -> RolloutConfig:
    r = cfg.rollout
    return RolloutConfig(
        env_name=cfg.env.name,
        env_kwargs={**cfg.env.kwargs, "split": split},
        group_size=group_size,
        max_turns=cfg.env.max_turns,
        prompt=prompt_config(cfg),
        generation=GenerationConfig(
            max_new_tokens=r.max_new_tokens, temperature=temperature, top_p=r.top_p
        ),
        outcome=r.outcome,
        invalid_penalty=r.invalid_penalty,
        noop_penalty=r.noop_penalty,
        prefix_cache=r.prefix_cache,
        constrain_actions=r.constrain_actions,
        restricted_logprobs=r.restricted_logprobs,
        pool_backend=r.pool_backend,
    )


def merge_batches(batches: list[RolloutBatch], keep_groups: list[set[int]]) -> RolloutBatch:
    """Concatenate batches keeping only ``keep_groups[i]`` of batch ``i``; ids are renumbered
    so trajectories and groups stay unique and dense."""
    steps, trajs = [], []
    traj_map: dict[tuple[int, int], int] = {}
    group_map: dict[tuple[int, int], int] = {}
    for b, (batch, keep) in enumerate(zip(batches, keep_groups, strict=True)):
        for t in batch.trajectories:
            if t.group_id not in keep:
                continue
            group_map.setdefault((b, t.group_id), len(group_map))
            traj_map[(b, t.traj_id)] = len(traj_map)
            trajs.append(
                dataclasses.replace(
                    t, traj_id=traj_map[(b, t.traj_id)], group_id=group_map[(b, t.group_id)]
                )
            )
        for s in batch.steps:
            if (b, s.traj_id) in traj_map:
                steps.append(
                    dataclasses.replace(
                        s, traj_id=traj_map[(b, s.traj_id)], group_id=group_map[(b, s.group_id)]
                    )
                )
    first = batches[0]
    return RolloutBatch(
        steps=steps,
        trajectories=trajs,
        pad_token_id=first.pad_token_id,
        env_turn_ids=first.env_turn_ids,
    )


def groups_worth_training(trajectories: list, metric: str = "success") -> set[int]:
    """Ids of the groups whose ``metric`` differs between members (DAPO dynamic sampling).

    ``metric`` is ``"success"`` (the won flag: DAPO filters on accuracy) or ``"reward"`` (the
    outcome reward). On success, groups that all fail but differ only in invalid-action
    penalties are dropped: with group-normalised advantages they would train on format alone.
    """
    if metric not in FILTER_METRICS:
        raise ValueError(f"metric must be success or reward, got {metric!r}")
    if not trajectories:
        return set()
    values = torch.tensor(
        [float(t.won) if metric == "success" else t.outcome_reward for t in trajectories],
        dtype=torch.float32,
    )
    gid = torch.tensor([t.group_id for t in trajectories])
    ok = dynamic_sampling_mask(values, gid)
    return {int(g) for g, k in zip(gid.tolist(), ok.tolist(), strict=True) if k}


def groups_with_env_errors(trajectories: list) -> set[int]:
    """Ids of the groups with an episode that an environment fault ended (a step that raised
    or timed out in the pool: ``reason`` ``"error: ..."``). Such an episode's outcome says
    nothing about the policy, and scoring it as a failure would push the group's advantages
    around, so the trainer does not train on its group (DAPO samples another in its place)."""
    return {t.group_id for t in trajectories if str(t.reason).startswith("error")}


def draw_task_seeds(rng: np.random.Generator, n: int, pool: list[int]) -> list[int]:
    """``n`` task seeds: any seed when ``pool`` is empty, else drawn from ``pool`` (distinct while
    the pool is large enough, then with repeats)."""
    if not pool:
        return rng.integers(0, 2**31 - 1, size=n).tolist()
    return [int(s) for s in rng.choice(pool, size=n, replace=n > len(pool))]


def _step_share(trajectories: list, count: str) -> float:
    """Share of all steps counted by the trajectories' ``count`` field (0 without steps)."""
    return sum(getattr(t, count) for t in trajectories) / max(
        1, sum(t.length for t in trajectories)
    )


def collect_training_batch(backend, cfg: TrainConfig, iteration: int) -> tuple[RolloutBatch, dict]:
    """Grouped rollouts for one iteration, with DAPO dynamic sampling when enabled."""
    r = cfg.rollout
    rcfg = rollout_config(
        cfg, cfg.env.train_split, temperature=r.temperature, group_size=r.group_size
    )
    batches, keeps = [], []
    kept = 0
    sampled_groups = 0
    env_error_groups = 0
    rounds = 1 + (r.max_resample_rounds if cfg.algo.dynamic_sampling else 0)
    for rnd in range(rounds):
        need = r.tasks_per_batch - kept
        if need <= 0:
            break
        rng = np.random.default_rng(derived_seed(cfg.seed, iteration, rnd, 1))
        seeds = draw_task_seeds(rng, need, cfg.env.train_tasks)
        gen = torch.Generator().manual_seed(derived_seed(cfg.seed, iteration, rnd, 2))
        batch = collect_rollouts(backend, seeds, rcfg, generator=gen)
        sampled_groups += need
        groups = {t.group_id for t in batch.trajectories}
        if cfg.algo.dynamic_sampling:
            groups = groups_worth_training(batch.trajectories, cfg.algo.filter_metric)
        faulty = groups_with_env_errors(batch.trajectories)
        env_error_groups += len(faulty)
        groups -= faulty
        batches.append(batch)
        keeps.append(groups)
        kept += len(groups)
    merged = merge_batches(batches, keeps)
    all_trajs = [t for b in batches for t in b.trajectories]
    stats = {
        "rollout/success_rate": float(np.mean([t.won for t in all_trajs])),
        "rollout/reward_mean": float(np.mean([t.outcome_reward for t in all_trajs])),
        "rollout/steps_mean": float(np.mean([t.length for t in all_trajs])),
        "rollout/invalid_rate": _step_share(all_trajs, "invalid_steps"),
        "rollout/noop_rate": _step_share(all_trajs, "noop_steps"),
        "rollout/groups_sampled": sampled_groups,
        "rollout/groups_kept": len({t.group_id for t in merged.trajectories}),
        "rollout/env_error_groups": env_error_groups,
        "rollout/rounds": len(batches),
        "rollout/step_rows": len(merged.steps),
    }
    return merged, stats


#: seconds between progress lines of a long evaluation
PROGRESS_EVERY_S = 30.0


def _progress_lines(
    what: str, log: Callable[[str], None], every_s: float
) -> Callable[[int, int, int], None]:
    """An ``on_turn`` callback for :func:`collect_rollouts` that logs a line at most every
    ``every_s`` seconds: turns played, episodes finished, time so far."""
    t0 = last = time.perf_counter()

    def on_turn(turn: int, finished: int, total: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last >= every_s and finished < total:
            last = now
            log(f"[empg]   {what}: turn {turn}, {finished}/{total} episodes done, {now - t0:.0f} s")

    return on_turn


def evaluate(
    backend, cfg: TrainConfig, iteration: int, log: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Success (overall and per task type), mean reward, mean steps and invalid-action rate on
    the fixed held-out task list of every eval split (seeds 0..episodes-1, fixed sampling seed),
    and each task's outcome (``eval/<split>/wins``, 0/1 in task order, for paired comparisons).
    ``log`` gets a line per split as it finishes (with the time it took), and a progress line
    every :data:`PROGRESS_EVERY_S` seconds while one runs."""
    out: dict[str, Any] = {"kind": "eval", "iteration": iteration}
    for i, split in enumerate(cfg.eval.splits):
        t0 = time.perf_counter()
        rcfg = rollout_config(cfg, split, temperature=cfg.eval.temperature, group_size=1)
        gen = torch.Generator().manual_seed(derived_seed(cfg.seed, 7_777))
        progress = _progress_lines(f"eval {split}", log, PROGRESS_EVERY_S) if log else None
        batch = collect_rollouts(
            backend, list(range(cfg.eval.episodes)), rcfg, generator=gen, on_turn=progress
        )
        trajs = batch.trajectories
        by_type: dict[str, list[bool]] = defaultdict(list)
        first_type = {}
        for s in batch.steps:
            first_type.setdefault(s.traj_id, s.task_type)
        for t in trajs:
            by_type[first_type.get(t.traj_id, "unknown")].append(t.won)
        p = f"eval/{split}"
        out[f"{p}/success_rate"] = float(np.mean([t.won for t in trajs]))
        out[f"{p}/reward_mean"] = float(np.mean([t.env_reward_sum for t in trajs]))
        out[f"{p}/steps_mean"] = float(np.mean([t.length for t in trajs]))
        out[f"{p}/invalid_rate"] = _step_share(trajs, "invalid_steps")
        out[f"{p}/noop_rate"] = _step_share(trajs, "noop_steps")
        out[f"{p}/wins"] = [int(t.won) for t in sorted(trajs, key=lambda t: t.task_seed)]
        for tt, wins in sorted(by_type.items()):
            out[f"{p}/success/{tt}"] = float(np.mean(wins))
        if log is not None:
            log(
                f"[empg]   eval {split} ({i + 1}/{len(cfg.eval.splits)}): {len(trajs)} episodes, "
                f"success {out[f'{p}/success_rate']:.1%}, {time.perf_counter() - t0:.0f} s"
            )
    rates = [out[f"eval/{s}/success_rate"] for s in cfg.eval.splits]
    out["eval/success_rate"] = float(np.mean(rates)) if rates else float("nan")
    return out
