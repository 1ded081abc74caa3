"""Policy folders for trainer tests: a tiny random Qwen2 with a tokenizer trained here, and the
same policy after imitating a 50/50 expert on a two-armed bandit (registered here)."""

from __future__ import annotations

import pytest
from train_helpers import household_texts

from empg.envs import TextEnv, register
from tiny_hf import tiny_qwen2, train_bpe


@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory):
    tokenizer = train_bpe(household_texts(), 300)
    model = tiny_qwen2(
        len(tokenizer),
        hidden=32,
        pad_id=tokenizer.pad_token_id,
        eos_id=tokenizer.eos_token_id,
    )
    path = tmp_path_factory.mktemp("policy")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


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


@pytest.fixture(scope="session")
def fifty_fifty_policy(tiny_policy_dir, tmp_path_factory):
    """The tiny test policy after imitating the 50/50 expert (with SFT's default prompt layout,
    which is the trainer's default too): its success on test-two-arms varies with sampling."""
    from empg.models.sft import SFTConfig, train_sft
    from empg.train.config import load_config
    from empg.train.trainer import load_model

    model, tok = load_model(load_config(None, [f"model.path={tiny_policy_dir}"]))
    sft = SFTConfig(
        env="test-two-arms", episodes=64, horizon=1, random_action_prob=0.0, steps=200,
        batch_size=16, lr=1e-2, decay_steps=0, max_length=128,
    )  # fmt: skip
    train_sft(model, tok, sft)
    path = tmp_path_factory.mktemp("two-arms-policy")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
