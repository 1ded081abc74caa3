"""End to end, the trainer learns: on a one-step two-armed bandit, RL moves a policy that picks
both arms equally often to the rewarded one. Catches sign, mask and alignment errors that the
equality tests of the pieces cannot (they compare each piece with its own reference)."""

from __future__ import annotations

import pytest
from train_helpers import tiny_overrides

from empg.envs import TextEnv, register
from empg.models.sft import SFTConfig, train_sft
from empg.train.config import load_config
from empg.train.metrics import read_metrics
from empg.train.trainer import Trainer, load_model

QUIET = lambda *_: None


class TwoArmsEnv(TextEnv):
    """One step: "go to cabinet 1" wins, "go to drawer 1" does not. The expert picks each arm on
    half of the seeds, so a policy imitating it starts near 50%."""

    name = "test-two-arms"
    max_steps = 1

    def __init__(self, split: str = "train") -> None:
        super().__init__()
        self._seed = 0

    def _info(self, won: bool = False) -> dict:
        return {
            "won": won,
            "task": "find the key",
            "task_type": "arms",
            "admissible_actions": ["go to cabinet 1", "go to drawer 1"],
        }

    def _reset(self, *, seed, options):
        self._seed = 0 if seed is None else seed
        return "You are in a room. There is a cabinet 1 and a drawer 1.", self._info()

    def _step(self, action):
        won = action.strip() == "go to cabinet 1"
        return "Done.", float(won), True, self._info(won)

    def expert_action(self) -> str:
        return "go to cabinet 1" if self._seed % 2 == 0 else "go to drawer 1"

    def expert_thought(self) -> str:
        return "I look around"


register("test-two-arms", TwoArmsEnv, overwrite=True)


@pytest.fixture(scope="module")
def fifty_fifty_policy(tiny_policy_dir, tmp_path_factory):
    """The tiny test policy after imitating the 50/50 expert (with SFT's default prompt layout,
    which is the trainer's default too)."""
    cfg = load_config(None, [f"model.path={tiny_policy_dir}"])
    model, tok = load_model(cfg)
    sft = SFTConfig(
        env="test-two-arms", episodes=64, horizon=1, random_action_prob=0.0, steps=200,
        batch_size=16, lr=1e-2, decay_steps=0, max_length=128,
    )  # fmt: skip
    train_sft(model, tok, sft)
    path = tmp_path_factory.mktemp("two-arms-policy")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


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
