"""From a rollout step table to the per-step advantages the update uses: the core's outcome
estimator over trajectories, DAPO overlong shaping, then EMPG. Nothing here is new math; it is
the glue that decides which core function gets which columns."""

from __future__ import annotations

from typing import Any

import torch

from empg.agent.batch import StepTable
from empg.algos.advantages import step_outcome_advantages
from empg.algos.dapo import overlong_penalty
from empg.algos.modulation import modulate_advantages
from empg.algos.steps import step_entropy_from_rows
from empg.train.config import AlgoConfig


def batch_advantages(
    table: StepTable,
    entropies: torch.Tensor,
    mask: torch.Tensor,
    algo: AlgoConfig,
    max_new_tokens: int,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Per-step advantages ``(S,)`` float32 and statistics.

    Args:
        table: the batch's step table (outcome reward, group, trajectory and step ids).
        entropies: ``(S, R)`` per-token entropies recomputed with the policy.
        mask: ``(S, R)`` response mask.
        algo: estimator, overlong shaping and EMPG knobs.
        max_new_tokens: the per-step response cap (for the overlong penalty).

    Overlong shaping (DAPO) is applied per step and summed into the trajectory's outcome
    reward, so a trajectory pays for every response that ran into the token cap.
    """
    stats: dict[str, Any] = {}
    outcome = table.outcome_reward.clone()
    if algo.overlong_shaping:
        pen = overlong_penalty(
            mask.sum(1),
            max_length=max_new_tokens,
            buffer_length=min(algo.overlong_buffer, max_new_tokens),
        )
        per_traj = torch.zeros(int(table.traj_id.max()) + 1).index_add_(0, table.traj_id, pen)
        outcome = outcome + per_traj[table.traj_id]
        stats["adv/overlong_penalty_mean"] = float(pen.mean())
    adv = step_outcome_advantages(algo.adv_estimator, outcome, table.group_id, table.traj_id)
    stats["adv/outcome_abs_mean"] = float(adv.abs().mean())
    e = algo.empg
    if e.enable:
        step_h = step_entropy_from_rows(entropies, mask)
        adv = modulate_advantages(step_h, adv, table.traj_id, table.step_index, **e.knobs())
        stats["empg/step_entropy_mean"] = float(step_h.mean())
        stats["empg/step_entropy_std"] = float(step_h.std()) if step_h.numel() > 1 else 0.0
    stats.update(
        {
            "adv/mean": float(adv.mean()),
            "adv/std": float(adv.std()) if adv.numel() > 1 else 0.0,
            "adv/min": float(adv.min()),
            "adv/max": float(adv.max()),
        }
    )
    return adv, stats
