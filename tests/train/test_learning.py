"""End to end, the trainer learns: on a one-step two-armed bandit, RL moves a policy that picks
both arms equally often to the rewarded one. Catches sign, mask and alignment errors that the
equality tests of the pieces cannot (they compare each piece with its own reference)."""

from __future__ import annotations

import pytest
from train_helpers import QUIET, tiny_overrides

from empg.train.config import load_config
from empg.train.metrics import read_metrics
from empg.train.trainer import Trainer


@pytest.mark.parametrize("empg_on", [False, True])
def test_rl_moves_a_fifty_fifty_policy_to_the_rewarded_arm(fifty_fifty_policy, tmp_path, empg_on):
    overrides = tiny_overrides(
        fifty_fifty_policy,
        tmp_path / "run",
        **{
            "env.name": "test-two-arms",
            "env.max_turns": 1,
            "iterations": 10,
            "rollout.tasks_per_batch": 4,
            "rollout.group_size": 8,
            "rollout.max_new_tokens": 40,  # the answer is 30 tokens with eos
            "rollout.temperature": 1.0,
            "algo.preset": "dapo",
            "algo.empg.enable": str(empg_on).lower(),
            "optim.lr": 1e-3,
            "optim.mini_batch_steps": 32,
            "optim.micro_batch_steps": 32,
            "optim.ppo_epochs": 4,
            "eval.episodes": 64,
            "eval.temperature": 1.0,
        },
    )
    Trainer(load_config(None, overrides), log=QUIET).run()
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    evals = [r["eval/valid_seen/success_rate"] for r in records if r["kind"] == "eval"]
    assert 0.2 <= evals[0] <= 0.8, f"the warm start should pick both arms, got {evals[0]}"
    # measured at T=1 on 64 episodes: 0.67 -> 0.91 (DAPO) and 0.67 -> 0.89 (DAPO + EMPG) with
    # transformers' sdpa attention; with the folded grouped-query attention (the same math in
    # another floating-point order) the warm start lands elsewhere: 0.52 -> 0.83 (DAPO + EMPG)
    assert evals[-1] >= 0.8 and evals[-1] > evals[0] + 0.15, evals
