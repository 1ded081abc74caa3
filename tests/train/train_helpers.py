"""Shared settings for trainer tests: a run small enough for seconds on a CPU."""

from __future__ import annotations

from empg.agent import format_response, render_prompt
from empg.envs import make


def household_texts() -> list[str]:
    """Prompts, expert responses and observations of a few household train episodes: a
    tokenizer trained on them covers the words a rollout meets."""
    env = make("household", split="train")
    texts = []
    for seed in range(6):
        obs, info = env.reset(seed=seed)
        texts.append(render_prompt([{"role": "user", "content": f"Task: {info['task']}\n{obs}"}]))
        for _ in range(4):
            act = env.expert_action()
            texts.append(format_response(env.expert_thought() or "next", act))
            res = env.step(act)
            texts.append(res.observation)
            if res.terminated or res.truncated:
                break
    return texts


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
