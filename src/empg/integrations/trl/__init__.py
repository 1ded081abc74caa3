"""EMPG for TRL 1.16.x: ``EMPGGRPOTrainer`` and a multi-turn ``rollout_func`` (docs/trl.md).

``EMPGKnobs``, the rollout helpers and the reward functions import without TRL; the trainer
class imports TRL on first use and says how to install it when it is missing.
"""

from __future__ import annotations

from typing import Any

from empg.integrations.trl.knobs import EMPGKnobs, modulate_sharded
from empg.integrations.trl.rollout import (
    EpisodeRollout,
    RolloutSettings,
    between_turns_text,
    episode_dataset,
    episode_prompt,
    episode_seed,
    invalid_action_penalty,
    make_rollout_func,
    success_reward,
)

_LAZY = ("EMPGGRPOTrainer", "EMPGBatchRecord")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from empg.integrations.trl import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EMPGBatchRecord",
    "EMPGGRPOTrainer",
    "EMPGKnobs",
    "EpisodeRollout",
    "RolloutSettings",
    "between_turns_text",
    "episode_dataset",
    "episode_prompt",
    "episode_seed",
    "invalid_action_penalty",
    "make_rollout_func",
    "modulate_sharded",
    "success_reward",
]
