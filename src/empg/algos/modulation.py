"""EMPG: entropy-modulated step advantages (arXiv 2509.09265).

For every step ``(i, t)`` of the batch (all steps of all trajectories together)::

    Hn    = (H - min H) / (max H - min H + eps)            # batch min-max over STEPS
    g     = exp(-k Hn) / mean_batch(exp(-k Hn))            # self-calibrating, batch mean 1
    f     = exp(-k_future Hn[i, t+1])                      # 0 if step t+1 of i is not in the batch
    A_mod = g * A_i + zeta * f
    A_mod = A_mod - mean(A_mod)            (final_norm="mean", the authors' pseudocode)
          | (A_mod - mean) / (std + eps)   (final_norm="mean_std", Bessel-corrected std)
          | A_mod                          (final_norm="none")

``scale=False`` sets g = 1 (bonus only) and ``bonus=False`` sets f = 0 (scaling only), the
paper's ablations. Rows may come in any order; the next step is found by (traj_id, step_index+1).
Arithmetic is float64 internally; results are float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from empg.algos.steps import check_step_ids, step_entropy_from_sequences
from empg.algos.validation import (
    as_tensor,
    check_finite,
    check_float,
    check_ndim,
    check_nonempty,
    check_same_shape,
    check_scalar,
)
from empg.errors import ConfigError, InputError

FINAL_NORMS = ("mean", "mean_std", "none")


@dataclass
class EMPGConfig:
    """EMPG's settings as one typed section: the project's trainer (``algo.empg``) and the verl
    plug-in (``algorithm.empg``) both use it; defaults are the authors' pseudocode."""

    enable: bool = True
    """modulate step advantages with EMPG (False: the base estimator alone)"""
    k: float = 1.0
    """scale temperature: g = exp(-k Hn) / mean"""
    k_future: float = 1.0
    """future-clarity temperature: f = exp(-k_future Hn[t+1])"""
    zeta: float = 0.1
    """weight of the future-clarity bonus"""
    scale: bool = True
    """ablation switch: entropy scaling g (False = bonus only)"""
    bonus: bool = True
    """ablation switch: future-clarity bonus f (False = scaling only)"""
    final_norm: str = "mean"
    """final normalisation over the batch's steps: mean, mean_std or none"""
    eps: float = 1e-8
    """added to the entropy range and to the std"""

    def __post_init__(self) -> None:
        # messages start with the field's name; a config section prefixes its path
        # (``algo.empg.final_norm must be ...``, empg.train.schema.from_dict)
        if not isinstance(self.enable, bool):
            raise ConfigError(f"enable must be a bool, got {self.enable!r}")
        try:
            _check_knobs(
                self.k, self.k_future, self.zeta, self.scale, self.bonus, self.final_norm, self.eps
            )
        except InputError as e:
            raise ConfigError(str(e)) from e

    def knobs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`modulate_advantages` / :func:`modulate_token_advantages`."""
        return {
            "k": self.k,
            "k_future": self.k_future,
            "zeta": self.zeta,
            "scale": self.scale,
            "bonus": self.bonus,
            "final_norm": self.final_norm,
            "eps": self.eps,
        }


def _check_knobs(k, k_future, zeta, scale, bonus, final_norm, eps) -> tuple[float, ...]:
    k = check_scalar("k", k)
    k_future = check_scalar("k_future", k_future)
    zeta = check_scalar("zeta", zeta)
    eps = check_scalar("eps", eps, positive=True)
    for name, v in (("scale", scale), ("bonus", bonus)):
        if not isinstance(v, bool):
            raise InputError(f"{name} must be a bool, got {type(v).__name__} {v!r}")
    if final_norm not in FINAL_NORMS:
        raise InputError(f"final_norm must be one of {FINAL_NORMS}, got {final_norm!r}")
    return k, k_future, zeta, eps


def next_step_position(traj_id: torch.Tensor, step_index: torch.Tensor) -> torch.Tensor:
    """``(S,)`` long: position of row ``(traj_id, step_index + 1)``, or -1 if absent."""
    return check_step_ids(traj_id, step_index, traj_id.numel()).next_pos


def modulate_advantages(
    step_entropy: torch.Tensor,
    step_advantage: torch.Tensor,
    traj_id: torch.Tensor,
    step_index: torch.Tensor,
    *,
    k: float = 1.0,
    k_future: float = 1.0,
    zeta: float = 0.1,
    scale: bool = True,
    bonus: bool = True,
    final_norm: str = "mean",
    eps: float = 1e-8,
) -> torch.Tensor:
    """One EMPG-modulated advantage per step.

    Args:
        step_entropy: ``(S,)`` float, mean token entropy of each step (nats).
        step_advantage: ``(S,)`` float, the outcome advantage ``A_i`` of the step's trajectory.
        traj_id: ``(S,)`` integer trajectory id of each step.
        step_index: ``(S,)`` integer, 0-based turn index of the step within its trajectory.
        k, k_future, zeta: the scale and bonus temperatures and the bonus weight.
        scale, bonus: ablation switches (g off / f off).
        final_norm: ``"mean"``, ``"mean_std"`` or ``"none"``.
        eps: added to the min-max range and to the std.

    Returns:
        ``(S,)`` float32 modulated advantages, aligned with the input rows.
    """
    k, k_future, zeta, eps = _check_knobs(k, k_future, zeta, scale, bonus, final_norm, eps)
    step_entropy = as_tensor("step_entropy", step_entropy)
    step_advantage = as_tensor("step_advantage", step_advantage)
    traj_id = as_tensor("traj_id", traj_id)
    step_index = as_tensor("step_index", step_index)
    check_ndim("step_entropy", step_entropy, 1, "(S,)")
    check_nonempty("step_entropy", step_entropy)
    check_same_shape("step_advantage", step_advantage, "step_entropy", step_entropy)
    for name, x in (("step_entropy", step_entropy), ("step_advantage", step_advantage)):
        check_float(name, x)
        check_finite(name, x)
    steps = check_step_ids(traj_id, step_index, step_entropy.numel())

    h = step_entropy.to(torch.float64)
    a = step_advantage.to(torch.float64)
    h_min, h_max = torch.aminmax(h)
    hn = (h - h_min) / (h_max - h_min + eps)  # (S,) in [0, 1)
    if scale:
        w = torch.exp(-k * hn)
        w_mean = w.mean()
        out = w.mul_(a).div_(w_mean)  # g * A with g = w / mean(w)
    else:
        out = a.clone()
    if bonus:
        nxt = steps.next_pos
        has = nxt >= 0
        # f lives on the rows that have a successor; every other row gets no bonus
        f = torch.exp(hn[nxt[has]].mul_(-k_future)).mul_(zeta)
        out[has] += f
    if final_norm != "none":
        out = out - out.mean()
        if final_norm == "mean_std":
            std = out.std(unbiased=True) if out.numel() > 1 else torch.zeros((), dtype=out.dtype)
            out = out / (std + eps)
    return out.to(torch.float32)


def modulate_token_advantages(
    token_entropy: torch.Tensor,
    response_mask: torch.Tensor,
    advantages: torch.Tensor,
    **knobs,
) -> torch.Tensor:
    """EMPG for the one-sequence-per-trajectory layout.

    Each row of ``response_mask`` is one trajectory; each maximal run of 1s is one step.
    Equivalent to building the step table (step entropy = mean over the run, step advantage =
    the row's advantage, traj_id = row, step_index = run number) and calling
    :func:`modulate_advantages` with the same ``knobs``.

    Args:
        token_entropy: ``(B, L)`` float per-token entropy (values on masked tokens ignored).
        response_mask: ``(B, L)`` 0/1.
        advantages: ``(B,)`` float outcome advantage per trajectory.

    Returns:
        ``(B, L)`` float32: every token of step ``(i, t)`` carries its modulated advantage;
        0 on masked tokens.
    """
    advantages = as_tensor("advantages", advantages)
    token_entropy = as_tensor("token_entropy", token_entropy)
    check_ndim("advantages", advantages, 1, "(B,)")
    if token_entropy.dim() == 2 and advantages.numel() != token_entropy.shape[0]:
        raise InputError(
            f"advantages has {advantages.numel()} entries but token_entropy has "
            f"{token_entropy.shape[0]} rows; expected one advantage per row"
        )
    step_h, seg = step_entropy_from_sequences(token_entropy, response_mask)
    if seg.num_steps == 0:
        raise InputError("response_mask holds no 1s: there are no steps to modulate")
    step_adv = advantages[seg.row]
    mod = modulate_advantages(step_h, step_adv, seg.row, seg.step_index, **knobs)  # (S,)
    out = torch.zeros(seg.token_step.shape, dtype=torch.float32, device=mod.device)
    m = seg.token_step >= 0
    out[m] = mod[seg.token_step[m]]
    return out
