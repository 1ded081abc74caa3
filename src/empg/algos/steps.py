"""Reason-then-act steps and their entropies, for both trajectory layouts.

* Row layout (verl-agent, this project's trainer): one row per step, identified by
  ``(traj_id, step_index)``. A row's step entropy is the mean token entropy over its
  response mask.
* Sequence layout (verl agent loop, TRL multi-turn): one row per trajectory, a ``(B, L)``
  response mask whose maximal runs of 1s are the model's turns (steps); environment tokens
  between turns are 0.

Step entropy is always the mean Shannon entropy of the generated tokens of the step (never
prompt or environment tokens); values at masked positions are ignored, even NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from empg.algos.validation import (
    as_tensor,
    check_float,
    check_integer,
    check_mask,
    check_ndim,
    check_nonempty,
    check_same_shape,
)
from empg.errors import InputError


@dataclass(frozen=True)
class StepSegments:
    """Steps found in a ``(B, L)`` response mask, ordered by (row, position).

    Attributes:
        row: ``(S,)`` long, the batch row (trajectory) of each step.
        step_index: ``(S,)`` long, 0-based index of the step within its row.
        start: ``(S,)`` long, first token position of the step.
        end: ``(S,)`` long, one past the last token position.
        token_step: ``(B, L)`` long, global step id of each token, ``-1`` where masked.
    """

    row: torch.Tensor
    step_index: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor
    token_step: torch.Tensor

    @property
    def num_steps(self) -> int:
        return int(self.row.numel())

    @property
    def length(self) -> torch.Tensor:
        """``(S,)`` number of tokens of each step."""
        return self.end - self.start


def segment_steps(response_mask: torch.Tensor) -> StepSegments:
    """Split each row of a ``(B, L)`` 0/1 mask into steps (maximal runs of 1s). Vectorised."""
    response_mask = as_tensor("response_mask", response_mask)
    check_ndim("response_mask", response_mask, 2, "(B, L)")
    m = check_mask("response_mask", response_mask)
    prev = torch.zeros_like(m)
    prev[:, 1:] = m[:, :-1]
    starts = m & ~prev  # (B, L) first token of each run
    nxt = torch.zeros_like(m)
    nxt[:, :-1] = m[:, 1:]
    ends = m & ~nxt  # (B, L) last token of each run
    srow, scol = starts.nonzero(as_tuple=True)  # row-major order = (row, position)
    _, ecol = ends.nonzero(as_tuple=True)
    # global id per token: running count of starts over the flattened (row-major) batch
    gid = starts.reshape(-1).long().cumsum(0).reshape(m.shape) - 1
    token_step = torch.where(m, gid, torch.full_like(gid, -1))
    # step index within row = global id - id of the row's first step
    counts = starts.sum(dim=1)  # (B,)
    first = torch.cumsum(counts, 0) - counts  # (B,) global id of each row's first step
    step_index = torch.arange(srow.numel(), device=m.device) - first[srow]
    return StepSegments(srow, step_index, scol, ecol + 1, token_step)


def _masked_mean_by_group(
    values: torch.Tensor, mask: torch.Tensor, group: torch.Tensor, n_groups: int
) -> tuple[torch.Tensor, torch.Tensor]:
    v = torch.where(mask, values.to(torch.float64), torch.zeros((), dtype=torch.float64))
    sums = torch.zeros(n_groups, dtype=torch.float64, device=values.device)
    cnts = torch.zeros(n_groups, dtype=torch.float64, device=values.device)
    if n_groups == 0:
        return sums, cnts
    g = torch.where(mask, group, torch.zeros_like(group))
    sums.index_add_(0, g.reshape(-1), v.reshape(-1))
    cnts.index_add_(0, g.reshape(-1), mask.reshape(-1).to(torch.float64))
    return sums, cnts


def _check_token_entropy(token_entropy: torch.Tensor, mask: torch.Tensor) -> None:
    from empg.algos.validation import check_finite

    check_float("token_entropy", token_entropy)
    check_finite("token_entropy", token_entropy, where=mask)
    if bool((token_entropy[mask] < 0).any()):
        raise InputError("token_entropy must be >= 0 on unmasked tokens (Shannon entropy)")


def step_entropy_from_rows(
    token_entropy: torch.Tensor, response_mask: torch.Tensor
) -> torch.Tensor:
    """Row layout: mean entropy over each row's response tokens.

    Args:
        token_entropy: ``(N, L)`` float, per-token entropy (nats).
        response_mask: ``(N, L)`` 0/1, 1 on the step's generated tokens.

    Returns:
        ``(N,)`` float32 step entropies. Every row must have at least one response token.
    """
    token_entropy = as_tensor("token_entropy", token_entropy)
    response_mask = as_tensor("response_mask", response_mask)
    check_ndim("token_entropy", token_entropy, 2, "(N, L)")
    check_same_shape("response_mask", response_mask, "token_entropy", token_entropy)
    check_nonempty("token_entropy", token_entropy)
    m = check_mask("response_mask", response_mask)
    _check_token_entropy(token_entropy, m)
    cnt = m.sum(dim=1)
    if bool((cnt == 0).any()):
        rows = (cnt == 0).nonzero().reshape(-1)[:5].tolist()
        raise InputError(
            f"response_mask has rows with no response tokens (rows {rows}); every step row "
            "needs at least one generated token"
        )
    v = torch.where(m, token_entropy.to(torch.float64), torch.zeros((), dtype=torch.float64))
    return (v.sum(dim=1) / cnt).to(torch.float32)


def step_entropy_from_sequences(
    token_entropy: torch.Tensor, response_mask: torch.Tensor
) -> tuple[torch.Tensor, StepSegments]:
    """Sequence layout: mean entropy of every maximal run of 1s in ``response_mask``.

    Args:
        token_entropy: ``(B, L)`` float per-token entropy.
        response_mask: ``(B, L)`` 0/1.

    Returns:
        ``(step_entropy (S,) float32, segments)`` with steps ordered by (row, position).
    """
    token_entropy = as_tensor("token_entropy", token_entropy)
    response_mask = as_tensor("response_mask", response_mask)
    check_ndim("token_entropy", token_entropy, 2, "(B, L)")
    check_same_shape("response_mask", response_mask, "token_entropy", token_entropy)
    seg = segment_steps(response_mask)
    m = seg.token_step >= 0
    _check_token_entropy(token_entropy, m)
    sums, cnts = _masked_mean_by_group(token_entropy, m, seg.token_step, seg.num_steps)
    return (sums / cnts.clamp_min(1)).to(torch.float32), seg


@dataclass(frozen=True)
class StepIndex:
    """Where each step row's successor ``(traj_id, step_index + 1)`` is, found in O(S).

    Attributes:
        next_pos: ``(S,)`` long, row of the next step of the same trajectory, or -1.
    """

    next_pos: torch.Tensor


def index_steps(traj_id: torch.Tensor, step_index: torch.Tensor) -> StepIndex:
    """Locate every step's successor and reject duplicate ``(traj_id, step_index)`` pairs.

    Steps get the integer key ``(traj - min traj) * (max step + 2) + step``: consecutive steps
    of a trajectory have consecutive keys and trajectories are separated by at least one unused
    key. When the key range is small (dense trajectory ids, the usual case) a direct-address
    table finds successors and duplicates in O(S); otherwise one stable sort does, O(S log S).
    """
    t, st = traj_id.long(), step_index.long()
    n = t.numel()
    span = int(st.max()) + 2
    t_lo, t_hi = int(t.min()), int(t.max())
    n_keys = (t_hi - t_lo + 1) * span  # Python int: no overflow
    if n_keys <= 8 * n + 4096:
        key = (t - t_lo) * span + st
        counts = torch.bincount(key, minlength=n_keys)
        if bool((counts > 1).any()):
            _raise_duplicate(t, st, counts[key] > 1)
        table = torch.full((n_keys + 1,), -1, dtype=torch.long, device=t.device)
        table[key] = torch.arange(n, device=t.device)
        return StepIndex(table[key + 1])
    if n_keys < (1 << 62):
        dense = t - t_lo
    else:  # huge sparse trajectory ids: compress them first
        dense = torch.unique(t, return_inverse=True)[1]
        if (int(dense.max()) + 1) > (1 << 62) // span:
            raise InputError(f"step_index values are too large to index (max {span - 2})")
    sorted_key, order = torch.sort(dense * span + st, stable=True)
    same = sorted_key[1:] == sorted_key[:-1]
    if bool(same.any()):
        dup = torch.zeros(n, dtype=torch.bool, device=t.device)
        dup[order[1:][same]] = True
        _raise_duplicate(t, st, dup)
    nxt = torch.full_like(order, -1)
    has = sorted_key[1:] == sorted_key[:-1] + 1  # sorted row j has its successor at j + 1
    nxt[order[:-1][has]] = order[1:][has]
    return StepIndex(nxt)


def _raise_duplicate(t: torch.Tensor, st: torch.Tensor, dup: torch.Tensor) -> None:
    j = int(dup.nonzero()[0, 0])
    n = int(((t == t[j]) & (st == st[j])).sum())
    raise InputError(
        f"duplicate (traj_id, step_index) rows: ({int(t[j])}, {int(st[j])}) appears {n} "
        "times; each step must appear once (drop batch-padding duplicates before calling)"
    )


def check_step_ids(traj_id: torch.Tensor, step_index: torch.Tensor, n: int) -> StepIndex:
    """Validate ``(S,)`` integer ids (matching length, ``step_index >= 0``, no duplicate pair)
    and return their :class:`StepIndex`."""
    for name, x in (("traj_id", traj_id), ("step_index", step_index)):
        check_ndim(name, x, 1, "(S,)")
        check_integer(name, x)
        if x.numel() != n:
            raise InputError(f"{name} has {x.numel()} entries, expected {n} (one per step)")
    if n == 0:
        return StepIndex(torch.zeros(0, dtype=torch.long, device=traj_id.device))
    if int(step_index.min()) < 0:
        raise InputError(f"step_index must be >= 0, got minimum {int(step_index.min())}")
    return index_steps(traj_id, step_index)
