"""Shared settings for trainer tests: a run small enough for seconds on a CPU."""

from __future__ import annotations


def tiny_overrides(policy_dir, run_dir, **extra) -> list[str]:
    base = {
        "model.path": str(policy_dir),
        "run_dir": str(run_dir),
        "iterations": 2,
        "threads": 1,
        "tensorboard": False,
        "env.max_turns": 3,
        "rollout.tasks_per_batch": 2,
        "rollout.group_size": 3,
        "rollout.max_new_tokens": 6,
        "algo.preset": "grpo",
        "algo.kl_coef": 0.0,
        "optim.lr": 0.01,
        "optim.mini_batch_steps": 8,
        "optim.micro_batch_steps": 4,
        "eval.episodes": 2,
        "eval.splits": "[valid_seen]",
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]
