"""evaluate_policy's environments: every one it built is closed, even when a later one fails."""

from __future__ import annotations

import pytest
import torch

from empg.envs import TextEnv, register
from empg.models.evaluate import EvalConfig, evaluate_policy

OPEN: set[int] = set()


class _FailsOnSeed2(TextEnv):
    """Counts its open instances; reset(seed=2) raises, as a damaged task file would."""

    name = "_test_eval_fails_on_seed_2"

    def __init__(self, split: str = "valid_seen") -> None:
        super().__init__()
        OPEN.add(id(self))

    def _reset(self, *, seed, options):
        if seed == 2:
            raise ValueError("task 2 is damaged")
        return "a room", {"task": "leave", "admissible_actions": ["leave"]}

    def _step(self, action):
        return "outside", 1.0, True, {"won": True}

    def close(self) -> None:
        OPEN.discard(id(self))
        super().close()


register(_FailsOnSeed2.name, _FailsOnSeed2, overwrite=True)


def test_a_failing_reset_closes_the_environments_already_built():
    model = torch.nn.Linear(1, 1)  # never reached: the failure comes before any generation
    cfg = EvalConfig(env=_FailsOnSeed2.name, episodes=4)
    with pytest.raises(ValueError, match="task 2 is damaged"):
        evaluate_policy(model, None, cfg)
    assert not OPEN
