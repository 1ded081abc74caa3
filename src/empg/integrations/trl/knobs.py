"""EMPG settings for the TRL trainer and the batch-wide modulation it applies (no TRL import).

:func:`modulate_sharded` is the math the trainer runs on TRL's generation batch: the batch may
be split over several processes (each holding ``B`` rows padded to its own width), yet EMPG's
min-max, mean scale and final normalisation are taken over ALL steps of ALL processes, exactly
as :func:`empg.modulate_token_advantages` would on the concatenated batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from empg.algos.modulation import FINAL_NORMS, modulate_token_advantages
from empg.errors import ConfigError, InputError


@dataclass(frozen=True)
class EMPGKnobs:
    """EMPG's knobs (REFERENCE section 1); defaults are the authors' pseudocode."""

    k: float = 1.0
    """temperature of the self-calibrating scale g = exp(-k Hn) / mean(exp(-k Hn))"""
    k_future: float = 1.0
    """temperature of the future-clarity bonus f = exp(-k_future Hn[next step])"""
    zeta: float = 0.1
    """weight of the future-clarity bonus"""
    scale: bool = True
    """apply g (False: the paper's 'f only' ablation)"""
    bonus: bool = True
    """add zeta * f (False: the paper's 'g only' ablation)"""
    final_norm: str = "mean"
    """final batch normalisation: 'mean' (authors), 'mean_std' or 'none'"""
    eps: float = 1e-8
    """added to the entropy range and to the std"""

    def __post_init__(self) -> None:
        for name in ("k", "k_future", "zeta", "eps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
                raise ConfigError(f"EMPGKnobs.{name} must be a finite number, got {v!r}")
        if self.eps <= 0:
            raise ConfigError(f"EMPGKnobs.eps must be > 0, got {self.eps!r}")
        for name in ("scale", "bonus"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"EMPGKnobs.{name} must be a bool, got {getattr(self, name)!r}")
        if self.final_norm not in FINAL_NORMS:
            raise ConfigError(
                f"EMPGKnobs.final_norm must be one of {FINAL_NORMS}, got {self.final_norm!r}"
            )

    def as_kwargs(self) -> dict:
        """The knobs as keyword arguments of :func:`empg.modulate_token_advantages`."""
        return asdict(self)


def _pad_to(x: torch.Tensor, width: int) -> torch.Tensor:
    if x.shape[1] == width:
        return x
    pad = x.new_zeros((x.shape[0], width - x.shape[1]))
    return torch.cat([x, pad], dim=1)


def modulate_sharded(
    token_entropy: Sequence[torch.Tensor],
    loss_mask: Sequence[torch.Tensor],
    advantages: Sequence[torch.Tensor],
    knobs: EMPGKnobs,
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
        full = modulate_token_advantages(ent, mask, adv, **knobs.as_kwargs())
    out, start = [], 0
    for r, e in zip(rows, token_entropy, strict=True):
        out.append(full[start : start + r, : e.shape[1]])
        start += r
    return out
