"""EMPG settings for the TRL trainer and the batch-wide modulation it applies (no TRL import).

:func:`modulate_sharded` is the math the trainer runs on TRL's generation batch: the batch may
be split over several processes (each holding ``B`` rows padded to its own width), yet EMPG's
min-max, mean scale and final normalisation are taken over ALL steps of ALL processes, exactly
as :func:`empg.modulate_token_advantages` would on the concatenated batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from empg.algos.modulation import EMPGConfig, modulate_token_advantages
from empg.errors import InputError

EMPGKnobs = EMPGConfig
"""The EMPG settings of the TRL trainer: the core's :class:`empg.EMPGConfig` itself (the same
type as the trainer's ``algo.empg`` and verl's ``algorithm.empg``); kept as a name for existing
code."""


def _pad_to(x: torch.Tensor, width: int) -> torch.Tensor:
    if x.shape[1] == width:
        return x
    pad = x.new_zeros((x.shape[0], width - x.shape[1]))
    return torch.cat([x, pad], dim=1)


def modulate_sharded(
    token_entropy: Sequence[torch.Tensor],
    loss_mask: Sequence[torch.Tensor],
    advantages: Sequence[torch.Tensor],
    knobs: EMPGConfig,
) -> list[torch.Tensor]:
    """EMPG over a batch held as shards (one per process), returned shard by shard.

    Args:
        token_entropy: per shard ``(B_p, T_p)`` float per-token entropy of the completions.
        loss_mask: per shard ``(B_p, T_p)`` 0/1, model tokens (completion mask x env mask).
        advantages: per shard ``(B_p,)`` float outcome advantages.
        knobs: the EMPG settings.

    Returns:
        per shard ``(B_p, T_p)`` float32 modulated advantages, 0 on masked tokens. If no shard
        holds a single model token, all zeros (there is nothing to train on).
    """
    n = len(token_entropy)
    if n == 0 or len(loss_mask) != n or len(advantages) != n:
        raise InputError(
            f"need one entropy, mask and advantage tensor per shard, got {len(token_entropy)}, "
            f"{len(loss_mask)}, {len(advantages)}"
        )
    width = max(int(e.shape[1]) for e in token_entropy)
    rows = [int(e.shape[0]) for e in token_entropy]
    ent = torch.cat([_pad_to(e.float(), width) for e in token_entropy], dim=0)  # (B, W)
    mask = torch.cat([_pad_to(m.long(), width) for m in loss_mask], dim=0)  # (B, W)
    adv = torch.cat([a.reshape(-1).float() for a in advantages], dim=0)  # (B,)
    if int(mask.sum()) == 0:
        full = torch.zeros(ent.shape, dtype=torch.float32, device=ent.device)
    else:
        full = modulate_token_advantages(ent, mask, adv, **knobs.knobs())
    out, start = [], 0
    for r, e in zip(rows, token_entropy, strict=True):
        out.append(full[start : start + r, : e.shape[1]])
        start += r
    return out
