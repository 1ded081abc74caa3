"""The PPO-style policy update over step rows, and the recomputation of old log-probs and
entropies that precedes it (the entropy EMPG uses comes from this recomputation, as in the paper).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from empg.algos.losses import aggregate_loss, kl_penalty, masked_mean, ppo_policy_loss
from empg.errors import NonFiniteError, TrainingDivergedError
from empg.train.config import AlgoConfig, OptimConfig
from empg.train.policy import (
    RowAllowed,
    micro_batches,
    pack_rows,
    response_logprobs_and_entropy,
)


@dataclass
class UpdateBatch:
    """Step rows for one update.

    Attributes:
        prompts, responses: token ids per row (S rows).
        old_logprobs: ``(S, R)`` float32, recomputed with the policy before the update.
        response_mask: ``(S, R)`` bool.
        advantages: ``(S,)`` float32 per-step advantage (every token of a step carries it).
        ref_logprobs: ``(S, R)`` reference-model log-probs, or None (no KL term).
        allowed: per row, per response token the ids a constrained token was sampled among
            (scored under that restricted distribution), or None.
    """

    prompts: list[list[int]]
    responses: list[list[int]]
    old_logprobs: torch.Tensor
    response_mask: torch.Tensor
    advantages: torch.Tensor
    ref_logprobs: torch.Tensor | None = None
    allowed: list[RowAllowed] | None = None


def _pad_to(x: torch.Tensor, width: int) -> torch.Tensor:
    return torch.nn.functional.pad(x, (0, width - x.shape[1])) if x.shape[1] < width else x


@torch.no_grad()
def recompute_logprobs(
    model,
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    *,
    pad_id: int,
    micro_batch: int,
    temperature: float = 1.0,
    chunk_size: int | None = None,
    allowed: Sequence[RowAllowed] | None = None,
    share_prefix: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(logprobs, entropy, mask)``, each ``(S, R)`` with ``R`` the longest response;
    ``allowed`` and ``share_prefix`` as in :func:`empg.train.policy.pack_rows`."""
    device = next(model.parameters()).device
    width = max(1, max(len(r) for r in responses))
    lps, ents = [], []
    batches = micro_batches(range(len(prompts)), prompts, responses, micro_batch, share_prefix)
    order = [i for idx in batches for i in idx]
    for idx in batches:
        rows = pack_rows(
            [prompts[i] for i in idx],
            [responses[i] for i in idx],
            pad_id,
            device,
            None if allowed is None else [allowed[i] for i in idx],
            share_prefix=share_prefix,
        )
        lp, ent = response_logprobs_and_entropy(
            model, rows, temperature=temperature, chunk_size=chunk_size
        )
        lps.append(_pad_to(lp, width).cpu())
        ents.append(_pad_to(ent, width).cpu())
    inv = torch.empty(len(order), dtype=torch.long)
    inv[torch.tensor(order)] = torch.arange(len(order))
    lp = torch.cat(lps)[inv]
    ent = torch.cat(ents)[inv]
    mask = torch.zeros(len(prompts), width, dtype=torch.bool)
    for i, r in enumerate(responses):
        mask[i, : len(r)] = True
    return lp, ent, mask


def ppo_update(
    model,
    optimizer: torch.optim.Optimizer,
    batch: UpdateBatch,
    algo: AlgoConfig,
    optim: OptimConfig,
    *,
    pad_id: int,
    temperature: float = 1.0,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
    bad_streak: int = 0,
    share_prefix: bool = False,
    norm_len: int | None = None,
) -> tuple[dict[str, float], int]:
    """Run ``optim.ppo_epochs`` passes of mini-batch updates. Returns (metrics, bad_streak).

    ``norm_len``: the constant length of ``seq-mean-token-sum-norm`` (Dr. GRPO); the trainer
    passes ``rollout.max_new_tokens``. Left ``None`` it is the batch's response width, the same
    for every micro-batch, so the update never depends on how a mini-batch is split.

    ``share_prefix``: micro-batches group rows by common prompt prefix, which each micro-batch
    runs once (:func:`empg.train.policy.pack_rows`); the mini-batches are the same either way.

    A mini-batch whose loss or gradient norm is not finite is skipped with a warning; after
    ``optim.max_bad_updates`` consecutive skips :class:`TrainingDivergedError` is raised.
    """
    device = next(model.parameters()).device
    n = len(batch.prompts)
    norm_len = int(batch.response_mask.shape[1]) if norm_len is None else norm_len
    params = [p for p in model.parameters() if p.requires_grad]
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}

    def add(key: str, value: float) -> None:
        sums[key] = sums.get(key, 0.0) + value
        counts[key] = counts.get(key, 0) + 1

    model.train()
    for _ in range(optim.ppo_epochs):
        perm = torch.randperm(n, generator=generator).tolist()
        for a in range(0, n, optim.mini_batch_steps):
            # micro-batches of similar length (or of a common prefix) waste little compute;
            # the weights below make the mini-batch gradient independent of how it is split
            mini = perm[a : a + optim.mini_batch_steps]
            micros = micro_batches(
                mini, batch.prompts, batch.responses, optim.micro_batch_steps, share_prefix
            )
            mini_tokens = int(batch.response_mask[mini].sum())
            optimizer.zero_grad(set_to_none=True)
            finite = True
            for idx in micros:
                rows = pack_rows(
                    [batch.prompts[i] for i in idx],
                    [batch.responses[i] for i in idx],
                    pad_id,
                    device,
                    None if batch.allowed is None else [batch.allowed[i] for i in idx],
                    share_prefix=share_prefix,
                )
                try:
                    lp, ent = response_logprobs_and_entropy(
                        model, rows, temperature=temperature, chunk_size=chunk_size
                    )
                    width = lp.shape[1]
                    mask = batch.response_mask[idx][:, :width].to(device)
                    old = batch.old_logprobs[idx][:, :width].to(device)
                    adv = batch.advantages[idx].to(device)
                    out = ppo_policy_loss(  # checks the log-probs it is given are finite
                        lp,
                        old,
                        adv,
                        mask,
                        clip_ratio_low=algo.clip_ratio_low,
                        clip_ratio_high=algo.clip_ratio_high,
                        clip_ratio_c=algo.clip_ratio_c,
                        loss_agg_mode=algo.loss_agg_mode,
                        norm_len=norm_len,
                    )
                except NonFiniteError:  # NaN/inf logits, or log-probs scored from them
                    finite = False
                    break
                loss = out.loss
                if algo.kl_coef > 0 and batch.ref_logprobs is not None:
                    ref = batch.ref_logprobs[idx][:, :width].to(device)
                    kl = kl_penalty(lp, ref, mask, algo.kl_estimator)
                    kl_loss = aggregate_loss(kl, mask, algo.loss_agg_mode, norm_len)
                    loss = loss + algo.kl_coef * kl_loss
                    add("actor/kl_ref", float(kl_loss.detach()))
                # weight micro-batches so the mini-batch loss equals the unsplit aggregation
                if algo.loss_agg_mode == "token-mean":
                    weight = int(mask.sum()) / max(1, mini_tokens)
                else:
                    weight = len(idx) / len(mini)
                if not torch.isfinite(loss):
                    finite = False
                    break
                (loss * weight).backward()
                add("actor/pg_loss", float(out.loss.detach()))
                add("actor/entropy_mean", float(masked_mean(ent.detach(), mask)))
                for k, v in out.metrics.items():
                    add(f"actor/{k}", float(v))
            grad_norm = float("nan")
            if finite:
                max_norm = optim.grad_clip if optim.grad_clip > 0 else float("inf")
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
                finite = math.isfinite(grad_norm)
            if not finite:
                optimizer.zero_grad(set_to_none=True)
                bad_streak += 1
                add("actor/skipped_updates", 1.0)
                warnings.warn(
                    f"non-finite loss or gradient: update skipped ({bad_streak} in a row)",
                    stacklevel=2,
                )
                if bad_streak >= optim.max_bad_updates:
                    raise TrainingDivergedError(
                        f"{bad_streak} consecutive updates had a non-finite loss or gradient; "
                        "lower optim.lr, check the rewards, or raise optim.max_bad_updates"
                    )
                continue
            bad_streak = 0
            optimizer.step()
            add("actor/grad_norm", grad_norm)
            add("actor/updates", 1.0)
    metrics = {k: sums[k] / counts[k] for k in sums}
    for k in ("actor/skipped_updates", "actor/updates"):  # counts, reported even when 0
        metrics[k] = sums.get(k, 0.0)
    return metrics, bad_streak
