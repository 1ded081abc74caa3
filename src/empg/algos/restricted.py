"""Log-probs and entropies of a distribution restricted to an allowed set of tokens.

Action-constrained decoding (:mod:`empg.agent.constrain`) samples some tokens from
``softmax(logits / T)`` renormalised over a small allowed set. To train the policy that was
actually sampled, those tokens are scored under the same restricted distribution::

    p_A(y) = exp(z_y / T) / sum_{j in A} exp(z_j / T),   H_A = -sum_{j in A} p_A(j) log p_A(j)

Only the ``K`` allowed logits of each such token are needed, never the full vocabulary.
``pad_allowed`` packs ragged allowed sets into ``(C, K)`` tensors;
``restricted_logprobs_and_entropy`` scores them (differentiable, float32).
A token whose set holds only itself gets log-prob 0 and entropy 0: it was forced, so it carries
no gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from empg.algos.validation import check_scalar
from empg.errors import InputError, ShapeError


@dataclass(frozen=True)
class AllowedSets:
    """Allowed token sets of ``C`` tokens, padded to the largest size ``K``.

    Attributes:
        ids: ``(C, K)`` long token ids (padding repeats a valid id; see ``valid``).
        valid: ``(C, K)`` bool, False on padding.
        label_index: ``(C,)`` long, the column of each token's own id in ``ids``.
    """

    ids: torch.Tensor
    valid: torch.Tensor
    label_index: torch.Tensor


def pad_allowed(allowed: Sequence[Sequence[int]], labels: Sequence[int]) -> AllowedSets:
    """Pack the allowed set of each of ``C`` tokens; each token (``labels[c]``) must be in its
    own set, and no set may be empty."""
    if len(allowed) != len(labels):
        raise ShapeError(f"{len(allowed)} allowed sets for {len(labels)} labels")
    rows = [list(dict.fromkeys(int(i) for i in a)) for a in allowed]  # drop repeats
    width = max((len(r) for r in rows), default=1)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    valid = torch.zeros((len(rows), width), dtype=torch.bool)
    label_index = torch.zeros(len(rows), dtype=torch.long)
    for c, (row, y) in enumerate(zip(rows, labels, strict=True)):
        if not row:
            raise InputError(f"allowed set {c} is empty")
        if int(y) not in row:
            raise InputError(f"token {int(y)} (position {c}) is not in its allowed set {row[:8]}")
        ids[c, : len(row)] = torch.tensor(row, dtype=torch.long)
        ids[c, len(row) :] = row[0]
        valid[c, : len(row)] = True
        label_index[c] = row.index(int(y))
    return AllowedSets(ids, valid, label_index)


def restricted_logprobs_and_entropy(
    logits: torch.Tensor,
    valid: torch.Tensor,
    label_index: torch.Tensor,
    *,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of each label and entropy (nats) of ``softmax(logits / T)`` over the valid
    columns only.

    Args:
        logits: ``(C, K)`` float, the logits of each token's allowed ids (finite on valid
            columns; padding columns are ignored whatever they hold).
        valid: ``(C, K)`` bool, at least one True per row.
        label_index: ``(C,)`` the label's column (must be a valid one).
        temperature: ``> 0``.

    Returns:
        ``(logprobs, entropy)``, float32 ``(C,)``; gradients flow to ``logits``.
    """
    if logits.dim() != 2 or valid.shape != logits.shape:
        raise ShapeError(
            f"logits and valid must both be (C, K), got {tuple(logits.shape)} and "
            f"{tuple(valid.shape)}"
        )
    if label_index.shape != logits.shape[:1]:
        raise ShapeError(f"label_index must be (C,), got {tuple(label_index.shape)}")
    t = check_scalar("temperature", temperature, positive=True)
    valid = valid.to(device=logits.device, dtype=torch.bool)
    label_index = label_index.to(device=logits.device, dtype=torch.long)
    if logits.shape[0] == 0:
        empty = logits.new_zeros(0, dtype=torch.float32)
        return empty, empty.clone()
    if not bool(valid.any(-1).all()):
        raise InputError("every allowed set needs at least one valid column")
    if not bool(valid.gather(1, label_index[:, None]).all()):
        raise InputError("a label_index points at a padding column")
    z = logits.float().masked_fill(~valid, float("-inf")) / t
    logp = torch.log_softmax(z, dim=-1)
    safe = logp.masked_fill(~valid, 0.0)  # no 0 * -inf in forward or backward
    ent = -(safe.exp() * safe).masked_fill(~valid, 0.0).sum(-1)
    lp = safe.gather(1, label_index[:, None]).squeeze(1)
    return lp, ent
