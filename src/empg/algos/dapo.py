"""DAPO's helpers (dynamic-sampling group filter, overlong shaping) and the algorithm presets.

DAPO (Yu et al., 2025) is not separate code: it is a named preset of settings the trainer
already has (clip-higher, token-mean aggregation, dynamic sampling, overlong shaping, no KL).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from empg.algos.advantages import _group_stats, _prepare
from empg.algos.validation import as_tensor, check_integer, check_ndim
from empg.errors import InputError
from empg.registry import Registry


def dynamic_sampling_mask(values: torch.Tensor, group_id: torch.Tensor) -> torch.Tensor:
    """``(N,)`` bool: True for trajectories whose group does NOT have all-equal ``values``.

    DAPO's dynamic sampling keeps only groups with some variance in the outcome (all-success
    and all-failure groups have zero GRPO advantage and carry no signal). Groups of one are
    dropped too (no variance can exist).
    """
    r, inv, counts = _prepare(values, group_id, 0.0)
    _, _, _, size, equal = _group_stats(r, inv, counts)
    return ~equal & (size > 1)


def overlong_penalty(
    lengths: torch.Tensor, *, max_length: int, buffer_length: int, penalty_factor: float = 1.0
) -> torch.Tensor:
    """DAPO's soft overlong punishment, ``(N,)`` float32, added to the reward.

    ``0`` if ``len <= max_length - buffer_length``; ``-(len - (max_length - buffer_length)) /
    buffer_length * penalty_factor`` inside the buffer; ``-penalty_factor`` beyond
    ``max_length``.
    """
    lengths = as_tensor("lengths", lengths)
    check_ndim("lengths", lengths, 1, "(N,)")
    check_integer("lengths", lengths)
    if not (isinstance(max_length, int) and isinstance(buffer_length, int)):
        raise InputError("max_length and buffer_length must be ints")
    if not 0 < buffer_length <= max_length:
        raise InputError(
            f"need 0 < buffer_length <= max_length, got buffer_length={buffer_length}, "
            f"max_length={max_length}"
        )
    if bool((lengths < 0).any()):
        raise InputError("lengths must be >= 0")
    start = max_length - buffer_length
    over = (lengths.to(torch.float64) - start).clamp(min=0.0) / buffer_length
    return (-penalty_factor * over.clamp(max=1.0)).to(torch.float32)


@dataclass(frozen=True)
class AlgoPreset:
    """The settings that distinguish GRPO-style algorithms. Each field is one knob."""

    adv_estimator: str = "grpo"
    clip_ratio_low: float = 0.2
    clip_ratio_high: float = 0.2
    loss_agg_mode: str = "seq-mean-token-mean"
    dynamic_sampling: bool = False
    overlong_shaping: bool = False
    kl_coef: float = 0.01
    kl_estimator: str = "k3"


PRESETS: Registry[AlgoPreset] = Registry("algorithm preset")
PRESETS.register("grpo")(AlgoPreset())
PRESETS.register("dr_grpo")(
    AlgoPreset(adv_estimator="dr_grpo", loss_agg_mode="seq-mean-token-sum-norm")
)
PRESETS.register("dapo")(
    AlgoPreset(
        clip_ratio_low=0.2,
        clip_ratio_high=0.28,
        loss_agg_mode="token-mean",
        dynamic_sampling=True,
        overlong_shaping=True,
        kl_coef=0.0,
    )
)


def get_preset(name: str, **overrides) -> AlgoPreset:
    """The named preset with ``overrides`` applied (unknown fields raise ``TypeError``)."""
    return replace(PRESETS.get(name), **overrides)
