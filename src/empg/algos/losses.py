"""PPO clipped surrogate (with DAPO clip-higher and dual clip), loss aggregation, KL estimators.

All functions take ``(B, L)`` token tensors and a ``(B, L)`` 0/1 ``response_mask``; values on
masked tokens never change any result (they are selected away, not multiplied, so even NaN
there is harmless).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from empg.algos.validation import (
    as_tensor,
    check_finite,
    check_float,
    check_mask,
    check_ndim,
    check_same_shape,
    check_scalar,
)
from empg.errors import InputError
from empg.registry import Registry

LOSS_AGG_MODES = (
    "token-mean",
    "seq-mean-token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-sum-norm",
)


def _mask_and_check(name_values: dict[str, torch.Tensor], response_mask: torch.Tensor):
    response_mask = as_tensor("response_mask", response_mask)
    check_ndim("response_mask", response_mask, 2, "(B, L)")
    m = check_mask("response_mask", response_mask)
    for name, x in name_values.items():
        x = as_tensor(name, x)
        check_same_shape(name, x, "response_mask", response_mask)
        check_float(name, x)
        check_finite(name, x, where=m)
    return m


def aggregate_loss(
    loss_mat: torch.Tensor,
    response_mask: torch.Tensor,
    mode: str = "token-mean",
    norm_len: int | None = None,
) -> torch.Tensor:
    """Reduce a ``(B, L)`` per-token loss to a scalar.

    * ``token-mean``: sum over all response tokens / number of response tokens (DAPO).
    * ``seq-mean-token-mean``: mean over sequences of each sequence's token mean (GRPO paper).
    * ``seq-mean-token-sum``: mean over sequences of each sequence's token sum.
    * ``seq-mean-token-sum-norm``: token sum over the batch / (B * norm_len) (Dr. GRPO; verl
      0.9's ``agg_loss`` with ``loss_scale_factor=norm_len``). Dr. GRPO divides by a constant,
      the generation budget: pass it as ``norm_len`` (e.g. the maximum number of response
      tokens); left ``None`` it is the tensor's width ``L``, which then depends on how the
      batch was padded or split.

    Sequences with no response token are left out of sequence means and of ``B``. An
    all-masked batch gives 0 (connected to the graph, so ``backward`` still works).
    """
    if mode not in LOSS_AGG_MODES:
        raise InputError(f"loss_agg_mode must be one of {LOSS_AGG_MODES}, got {mode!r}")
    if norm_len is not None and (
        isinstance(norm_len, bool) or int(norm_len) != norm_len or norm_len < 1
    ):
        raise InputError(f"norm_len must be a positive integer or None, got {norm_len!r}")
    m = _mask_and_check({"loss_mat": loss_mat}, response_mask)
    x = torch.where(m, loss_mat, torch.zeros((), dtype=loss_mat.dtype, device=loss_mat.device))
    if mode == "token-mean":
        return x.sum() / m.sum().clamp_min(1)
    tok = m.sum(dim=1)  # (B,)
    if mode == "seq-mean-token-sum-norm":
        width = m.shape[1] if norm_len is None else int(norm_len)
        return x.sum() / ((tok > 0).sum().clamp_min(1) * width)
    seq = x.sum(dim=1)
    if mode == "seq-mean-token-mean":
        seq = seq / tok.clamp_min(1)
    has = tok > 0
    return torch.where(has, seq, torch.zeros_like(seq)).sum() / has.sum().clamp_min(1)


def masked_mean(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    x = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device))
    return x.sum() / m.sum().clamp_min(1)


@dataclass
class PolicyLossOutput:
    """Scalar loss plus detached diagnostics (scalars as 0-d tensors)."""

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


def ppo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    clip_ratio_low: float = 0.2,
    clip_ratio_high: float | None = None,
    clip_ratio_c: float | None = None,
    loss_agg_mode: str = "token-mean",
    norm_len: int | None = None,
) -> PolicyLossOutput:
    """PPO clipped surrogate with separate low/high clip ratios and optional dual clip.

    ``ratio = exp(logprobs - old_logprobs)`` (log-ratio clamped to [-20, 20] for safety);
    per token ``loss = max(-A ratio, -A clip(ratio, 1 - low, 1 + high))``; with dual clip
    (``clip_ratio_c > 1``) negative-advantage tokens are further capped at ``-A * c``.

    Args:
        logprobs: ``(B, L)`` current policy log-probs (differentiable).
        old_logprobs: ``(B, L)`` behaviour-policy log-probs.
        advantages: ``(B, L)`` per-token advantages, or ``(B,)`` one per row.
        response_mask: ``(B, L)`` 0/1.
        clip_ratio_low, clip_ratio_high: epsilons; ``high=None`` means ``high = low``.
        clip_ratio_c: dual-clip constant (> 1) or None.
        loss_agg_mode, norm_len: see :func:`aggregate_loss`.

    Metrics: ``clipfrac`` (tokens where clipping was active), ``clipfrac_low``/``clipfrac_high``
    (ratio below 1-low with A<0 / above 1+high with A>0), ``dualclip_frac``, ``approx_kl``
    (mean of old - new log-prob, the k1 estimate), ``ratio_mean``.
    """
    low = check_scalar("clip_ratio_low", clip_ratio_low, non_negative=True)
    high = (
        low
        if clip_ratio_high is None
        else check_scalar("clip_ratio_high", clip_ratio_high, non_negative=True)
    )
    if clip_ratio_c is not None:
        c = check_scalar("clip_ratio_c", clip_ratio_c)
        if c <= 1.0:
            raise InputError(f"clip_ratio_c must be > 1 for dual clip, got {c}")
    advantages = as_tensor("advantages", advantages)
    if advantages.dim() == 1:
        if advantages.shape[0] != as_tensor("logprobs", logprobs).shape[0]:
            raise InputError(
                f"advantages of shape {tuple(advantages.shape)} must have one entry per row "
                f"of logprobs {tuple(logprobs.shape)} (or be (B, L))"
            )
        advantages = advantages.unsqueeze(1).expand_as(logprobs)
    m = _mask_and_check(
        {"logprobs": logprobs, "old_logprobs": old_logprobs, "advantages": advantages},
        response_mask,
    )
    zero = torch.zeros((), dtype=logprobs.dtype, device=logprobs.device)
    log_ratio = torch.where(m, logprobs - old_logprobs, zero).clamp(-20.0, 20.0)
    adv = torch.where(m, advantages.to(logprobs.dtype), zero)
    ratio = torch.exp(log_ratio)
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1.0 - low, 1.0 + high)
    pg = torch.maximum(pg1, pg2)
    clipped = (pg2 > pg1) & m
    dual = torch.zeros_like(m)
    if clip_ratio_c is not None:
        cap = -adv * clip_ratio_c
        dual = (adv < 0) & (pg > cap) & m
        pg = torch.where(adv < 0, torch.minimum(pg, cap), pg)
    loss = aggregate_loss(pg, m, loss_agg_mode, norm_len)
    with torch.no_grad():
        mf = m.to(torch.float32)
        n = mf.sum().clamp_min(1)
        metrics = {
            "clipfrac": clipped.float().sum() / n,
            "clipfrac_low": (clipped & (adv < 0)).float().sum() / n,
            "clipfrac_high": (clipped & (adv > 0)).float().sum() / n,
            "dualclip_frac": dual.float().sum() / n,
            "approx_kl": masked_mean(-log_ratio.detach(), m),
            "ratio_mean": masked_mean(ratio.detach(), m),
        }
    return PolicyLossOutput(loss, metrics)


KLFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
KL_ESTIMATORS: Registry[KLFn] = Registry("KL estimator")


@KL_ESTIMATORS.register("k1")
def kl_k1(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """k1 = log pi - log pi_ref (unbiased, high variance)."""
    return logprobs - ref_logprobs


@KL_ESTIMATORS.register("k2")
def kl_k2(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """k2 = 0.5 (log pi - log pi_ref)^2."""
    return 0.5 * (logprobs - ref_logprobs).square()


@KL_ESTIMATORS.register("k3")
def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """k3 (low-variance): exp(ref - lp) - (ref - lp) - 1, log-ratio and result clamped to
    [-20, 20] and [-10, 10] as in verl's ``low_var_kl``."""
    d = (ref_logprobs - logprobs).clamp(-20.0, 20.0)
    return (torch.exp(d) - d - 1.0).clamp(-10.0, 10.0)


def kl_penalty(
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    response_mask: torch.Tensor,
    kind: str = "k3",
) -> torch.Tensor:
    """Per-token KL estimate ``(B, L)`` of the policy from the reference; 0 on masked tokens."""
    fn = KL_ESTIMATORS.get(kind)
    m = _mask_and_check({"logprobs": logprobs, "ref_logprobs": ref_logprobs}, response_mask)
    zero = torch.zeros((), dtype=logprobs.dtype, device=logprobs.device)
    kl = fn(torch.where(m, logprobs, zero), torch.where(m, ref_logprobs, zero))
    return torch.where(m, kl, zero)
