"""From one verl training batch to EMPG token advantages (pure torch; no verl import).

verl's v1 trainer stores one row per agent-loop output under the key ``{uid}_{session}_{i}``
(``uid``: the prompt, shared by its ``rollout.n`` samples; ``session``: one sample's episode;
``i``: the output's index within the episode). A trajectory is ``(uid, session)``. Its steps
are the maximal runs of 1s in the response masks of its rows, taken in order of ``i`` and, in a
row, of position. That single rule covers both trajectory layouts EMPG meets in practice:

* one sequence per trajectory (verl's multi-turn agent loop): a single row ``i = 0`` whose
  response interleaves model turns (mask 1) and environment tokens (mask 0);
* one row per step (verl-agent style, history-window prompts): rows ``i = 0, 1, ...``, each
  holding one turn.

Rows that must not count: verl's synthetic batch padding (tag ``is_padding``, an all-zero
response mask) and repeated keys (a row listed twice) are left out of every batch statistic;
a repeated row receives the advantages of its first occurrence.

The math is the core's: :func:`empg.step_entropy_from_sequences` for step entropies and
:func:`empg.modulate_advantages` for the modulation, one call over all steps of the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from empg.algos.modulation import modulate_advantages
from empg.algos.steps import step_entropy_from_sequences
from empg.algos.validation import as_tensor, check_float, check_mask, check_ndim, check_same_shape
from empg.errors import ConfigError, InputError
from empg.integrations.verl.config import MULTI_ROW_ESTIMATORS, VerlEMPGConfig

# relative tolerance for "the base advantage is constant over a row's response tokens"
_CONST_RTOL = 1e-5


def parse_row_key(key: str) -> tuple[str, int]:
    """``"{uid}_{session}_{i}"`` -> ``("{uid}_{session}", i)`` (split from the right, as verl
    does, so ``uid`` may itself contain underscores)."""
    parts = str(key).rsplit("_", 2)
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise InputError(
            f"row key {key!r} is not of the form '{{uid}}_{{session}}_{{index}}' that verl's "
            "v1 trainer uses; EMPG needs it to find each row's trajectory"
        )
    try:
        index = int(parts[2])
    except ValueError:
        raise InputError(
            f"row key {key!r}: the output index {parts[2]!r} is not an integer"
        ) from None
    return f"{parts[0]}_{parts[1]}", index


@dataclass(frozen=True)
class EMPGBatchResult:
    """Output of :func:`verl_empg_advantages`.

    Attributes:
        advantages: ``(B, L)`` float32 modulated token advantages (0 on masked tokens; rows
            left out are returned as given).
        metrics: scalar statistics for verl's logger (``empg/...``).
    """

    advantages: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


def _row_advantage(adv: torch.Tensor, mask: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
    """``(R,)`` float64: the one advantage of each row; raises if a row's tokens disagree."""
    a = adv.to(torch.float64)
    big = torch.finfo(torch.float64).max
    hi = torch.where(mask, a, torch.full_like(a, -big)).amax(dim=1)
    lo = torch.where(mask, a, torch.full_like(a, big)).amin(dim=1)
    bad = (hi - lo) > _CONST_RTOL * torch.clamp(hi.abs(), min=1.0)
    if bool(bad.any()):
        j = int(bad.nonzero()[0, 0])
        raise InputError(
            f"the base advantages of row {keys[j]!r} vary over its response tokens "
            f"(from {lo[j].item():.6g} to {hi[j].item():.6g}); EMPG needs one outcome "
            "advantage per trajectory: use an outcome estimator such as grpo, not a per-token one"
        )
    return hi


def verl_empg_advantages(
    keys: Sequence[str],
    response_mask: torch.Tensor,
    token_entropy: torch.Tensor,
    advantages: torch.Tensor,
    config: VerlEMPGConfig,
    *,
    is_padding: Sequence[bool] | None = None,
    estimator: str | None = None,
) -> EMPGBatchResult:
    """EMPG-modulated token advantages for a verl batch.

    Args:
        keys: ``B`` row keys ``{uid}_{session}_{i}``.
        response_mask: ``(B, L)`` 0/1, right-padded response mask.
        token_entropy: ``(B, L)`` float, per-token entropy computed with the old log-probs.
        advantages: ``(B, L)`` float, the base estimator's advantages (constant per row).
        config: the ``algorithm.empg`` knobs.
        is_padding: ``B`` flags (verl's ``is_padding`` tags); flagged rows are left out.
        estimator: verl's ``algorithm.adv_estimator`` that made ``advantages``; when a
            trajectory has several rows, only one verl reduces to a row per trajectory
            (:data:`~empg.integrations.verl.config.MULTI_ROW_ESTIMATORS`) is accepted.

    Returns:
        :class:`EMPGBatchResult` with ``(B, L)`` float32 advantages.
    """
    response_mask = as_tensor("response_mask", response_mask)
    token_entropy = as_tensor("token_entropy", token_entropy)
    advantages = as_tensor("advantages", advantages)
    check_ndim("response_mask", response_mask, 2, "(B, L)")
    check_same_shape("token_entropy", token_entropy, "response_mask", response_mask)
    check_same_shape("advantages", advantages, "response_mask", response_mask)
    check_float("advantages", advantages)
    mask = check_mask("response_mask", response_mask)
    n_rows = mask.shape[0]
    if len(keys) != n_rows:
        raise InputError(f"got {len(keys)} row keys for {n_rows} rows; expected one key per row")
    if is_padding is not None and len(is_padding) != n_rows:
        raise InputError(f"got {len(is_padding)} is_padding flags for {n_rows} rows")

    out = advantages.to(torch.float32).clone()
    if not config.enable:
        return EMPGBatchResult(out)

    # 1. which rows count: first occurrence of each key, not padding, with response tokens
    first_of: dict[str, int] = {}
    dup_src: list[tuple[int, int]] = []  # (duplicate row, its first occurrence)
    kept: list[int] = []
    empty: list[int] = []
    n_pad = 0
    for r, key in enumerate(keys):
        if is_padding is not None and bool(is_padding[r]):
            n_pad += 1
            continue
        if key in first_of:
            src = first_of[key]
            if not torch.equal(mask[r], mask[src]):
                raise InputError(
                    f"row key {key!r} appears twice with different response masks; a repeated "
                    "key must be an exact duplicate (batch padding)"
                )
            dup_src.append((r, src))
            continue
        first_of[key] = r
        if bool(mask[r].any()):
            kept.append(r)
        else:  # e.g. a step row rejected by sequence-level rollout_rs: a gap in its trajectory
            empty.append(r)
    metrics = {"empg/padding_rows": float(n_pad), "empg/duplicate_rows": float(len(dup_src))}
    if not kept:
        return EMPGBatchResult(out, metrics)

    # 2. trajectories and the order of their rows
    parsed = [parse_row_key(keys[r]) for r in kept]
    traj_ids: dict[str, int] = {}
    traj = torch.tensor([traj_ids.setdefault(t, len(traj_ids)) for t, _ in parsed])  # (R,)
    out_index = torch.tensor([i for _, i in parsed])  # (R,)
    if estimator is not None and estimator not in MULTI_ROW_ESTIMATORS:
        rows_per_traj = torch.bincount(traj)
        if bool((rows_per_traj > 1).any()):
            raise ConfigError(
                f"algorithm.adv_estimator={estimator!r} with one row per step: verl computes "
                "its group statistics over rows, so a trajectory would count once per step in "
                f"its group's baseline; use one of {list(MULTI_ROW_ESTIMATORS)} with this "
                "layout, or one sequence per trajectory"
            )
    kept_t = torch.tensor(kept)
    m = mask[kept_t]  # (R, L)
    row_adv = _row_advantage(advantages[kept_t], m, [keys[r] for r in kept])  # (R,)

    # 3. steps: runs of 1s per row (core segmentation), numbered across a trajectory's rows; an
    # empty row of a trajectory with other rows (one row per turn: a rejected turn) keeps its
    # step number, so the turn before it gets no future-clarity bonus from the one after it
    step_h, seg = step_entropy_from_sequences(token_entropy[kept_t], m)  # (S,)
    steps_per_row = torch.bincount(seg.row, minlength=len(kept))  # (R,)
    rows_of: dict[int, list[tuple[int, int, int | None]]] = {}  # traj -> (out index, steps, j)
    for j in range(len(kept)):
        rows_of.setdefault(int(traj[j]), []).append((int(out_index[j]), int(steps_per_row[j]), j))
    for r in empty:
        try:
            t_key, index = parse_row_key(keys[r])
        except InputError:  # not a turn of any trajectory here
            continue
        if t_key in traj_ids:
            rows_of[traj_ids[t_key]].append((index, 1, None))
    offset = torch.zeros(len(kept), dtype=torch.long)  # (R,) steps before the row in its traj
    for rows in rows_of.values():
        done = 0
        for _, n_steps, j in sorted(rows, key=lambda x: x[0]):
            if j is not None:
                offset[j] = done
            done += n_steps
    step_index = offset[seg.row] + seg.step_index  # (S,)

    # 4. the core's EMPG over all steps of the batch at once
    mod = modulate_advantages(
        step_h, row_adv[seg.row], traj[seg.row], step_index, **config.knobs()
    )  # (S,) float32
    tok = seg.token_step  # (R, L), -1 where masked
    rows_out = torch.zeros(m.shape, dtype=torch.float32)
    rows_out[tok >= 0] = mod[tok[tok >= 0]]
    out[kept_t] = rows_out
    for r, src in dup_src:
        out[r] = out[src]

    metrics.update(
        {
            "empg/steps": float(seg.num_steps),
            "empg/trajectories": float(len(traj_ids)),
            "empg/step_entropy_mean": float(step_h.mean()),
            "empg/step_entropy_max": float(step_h.max()),
            "empg/step_entropy_min": float(step_h.min()),
            "empg/outcome_adv_abs_mean": float(row_adv.abs().mean()),
            "empg/adv_mean": float(mod.mean()),
            "empg/adv_abs_mean": float(mod.abs().mean()),
        }
    )
    return EMPGBatchResult(out, metrics)
