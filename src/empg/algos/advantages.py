"""Outcome advantages (one scalar per trajectory) behind a registry.

Every estimator has the signature ``fn(rewards, group_id, *, eps) -> advantages``:
``rewards`` ``(N,)`` float, one outcome reward per trajectory; ``group_id`` ``(N,)`` integer,
trajectories that started from the same task share a group. Result: ``(N,)`` float32.

Conventions (chosen to match verl, documented here once):

* A group of one trajectory has no baseline: mean 0 and std 1, so its advantage is its
  reward divided by ``1 + eps`` for ``grpo`` and its reward for ``dr_grpo`` / ``rloo``.
* A group whose rewards are all equal (zero variance, size >= 2) gets advantage exactly 0,
  whatever floating-point rounding the group mean suffers.
* The std is Bessel-corrected (divides by n - 1), as in TRL and verl.
* Arithmetic is float64 internally, the result float32.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from empg.algos.validation import (
    as_tensor,
    check_finite,
    check_float,
    check_integer,
    check_ndim,
    check_nonempty,
    check_scalar,
)
from empg.errors import InputError
from empg.registry import Registry

AdvantageFn = Callable[..., torch.Tensor]
ADVANTAGE_ESTIMATORS: Registry[AdvantageFn] = Registry("advantage estimator")


def register_advantage_estimator(name: str):
    """Decorator adding ``fn(rewards, group_id, *, eps) -> (N,)`` to the registry."""
    return ADVANTAGE_ESTIMATORS.register(name)


def get_advantage_estimator(name: str) -> AdvantageFn:
    return ADVANTAGE_ESTIMATORS.get(name)


def compute_outcome_advantages(
    name: str, rewards: torch.Tensor, group_id: torch.Tensor, *, eps: float = 1e-6
) -> torch.Tensor:
    """Run the registered estimator ``name`` (``grpo``, ``dr_grpo``, ``rloo``, ...)."""
    return get_advantage_estimator(name)(rewards, group_id, eps=eps)


def _prepare(rewards, group_id, eps):
    rewards = as_tensor("rewards", rewards)
    group_id = as_tensor("group_id", group_id)
    check_ndim("rewards", rewards, 1, "(N,)")
    check_ndim("group_id", group_id, 1, "(N,)")
    check_nonempty("rewards", rewards)
    check_float("rewards", rewards)
    check_integer("group_id", group_id)
    if group_id.numel() != rewards.numel():
        raise InputError(
            f"group_id has {group_id.numel()} entries but rewards has {rewards.numel()}; "
            "expected one group id per trajectory"
        )
    check_finite("rewards", rewards)
    check_scalar("eps", eps, non_negative=True)
    r = rewards.to(torch.float64)
    _, inv, counts = torch.unique(group_id, return_inverse=True, return_counts=True)
    return r, inv, counts


def group_stats(rewards: torch.Tensor, group_id: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per-row group ``(rewards_f64, mean, bessel_std, size, all_equal)``, each ``(N,)``.

    Groups of one have mean 0, std 1 (no baseline), as documented in the module.
    """
    return _group_stats(*_prepare(rewards, group_id, 0.0))


def _group_stats(r: torch.Tensor, inv: torch.Tensor, counts: torch.Tensor):
    n_groups = counts.numel()
    sums = torch.zeros(n_groups, dtype=torch.float64, device=r.device).index_add_(0, inv, r)
    mean_g = sums / counts
    dev = r - mean_g[inv]
    sq = torch.zeros(n_groups, dtype=torch.float64, device=r.device).index_add_(0, inv, dev * dev)
    std_g = torch.sqrt(sq / (counts - 1).clamp_min(1))
    gmax = torch.full((n_groups,), -torch.inf, dtype=torch.float64, device=r.device)
    gmin = torch.full((n_groups,), torch.inf, dtype=torch.float64, device=r.device)
    gmax = gmax.scatter_reduce(0, inv, r, "amax")
    gmin = gmin.scatter_reduce(0, inv, r, "amin")
    single = counts == 1
    mean_g = torch.where(single, torch.zeros_like(mean_g), mean_g)
    std_g = torch.where(single, torch.ones_like(std_g), std_g)
    equal_g = (gmax == gmin) & ~single
    return r, mean_g[inv], std_g[inv], counts[inv], equal_g[inv]


@register_advantage_estimator("grpo")
def grpo_advantages(rewards: torch.Tensor, group_id: torch.Tensor, *, eps: float = 1e-6):
    """GRPO: ``(R - mean_group) / (std_group + eps)`` with Bessel-corrected std."""
    r, mean, std, _, equal = _group_stats(*_prepare(rewards, group_id, eps))
    adv = (r - mean) / (std + eps)
    return torch.where(equal, torch.zeros_like(adv), adv).to(torch.float32)


@register_advantage_estimator("dr_grpo")
def dr_grpo_advantages(rewards: torch.Tensor, group_id: torch.Tensor, *, eps: float = 1e-6):
    """Dr. GRPO: ``R - mean_group`` (no std division; ``eps`` unused)."""
    r, mean, _, _, equal = _group_stats(*_prepare(rewards, group_id, eps))
    adv = r - mean
    return torch.where(equal, torch.zeros_like(adv), adv).to(torch.float32)


@register_advantage_estimator("rloo")
def rloo_advantages(rewards: torch.Tensor, group_id: torch.Tensor, *, eps: float = 1e-6):
    """RLOO: ``R_i - mean_{j != i} R_j = n / (n - 1) * (R_i - mean_group)``; ``eps`` unused."""
    r, mean, _, size, equal = _group_stats(*_prepare(rewards, group_id, eps))
    n = size.to(torch.float64)
    adv = torch.where(size > 1, (r - mean) * n / (n - 1).clamp_min(1), r)
    return torch.where(equal, torch.zeros_like(adv), adv).to(torch.float32)


def step_outcome_advantages(
    name: str,
    rewards: torch.Tensor,
    group_id: torch.Tensor,
    traj_id: torch.Tensor,
    *,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Outcome advantages for a step table (one row per step, the verl-agent layout).

    Every row carries its trajectory's outcome reward and group; each trajectory counts once in
    the group statistics however many steps it has, and every step gets its trajectory's
    advantage.

    Args:
        name: registered estimator (``grpo``, ``dr_grpo``, ``rloo``, ...).
        rewards: ``(S,)`` float, the trajectory's outcome reward, repeated on each of its steps.
        group_id: ``(S,)`` integer group of the trajectory.
        traj_id: ``(S,)`` integer trajectory id.

    Returns:
        ``(S,)`` float32 per-step advantages. Rows of one trajectory that disagree on reward or
        group raise :class:`~empg.errors.InputError`.
    """
    fn = get_advantage_estimator(name)
    for nm, x in (("rewards", rewards), ("group_id", group_id), ("traj_id", traj_id)):
        check_ndim(nm, as_tensor(nm, x), 1, "(S,)")
    check_integer("traj_id", traj_id)
    if not (rewards.numel() == group_id.numel() == traj_id.numel()):
        raise InputError(
            f"rewards, group_id and traj_id must have one entry per step, got "
            f"{rewards.numel()}, {group_id.numel()}, {traj_id.numel()}"
        )
    check_nonempty("rewards", rewards)
    if rewards.is_floating_point():  # NaN != NaN: name it before the per-step comparison
        check_finite("rewards", rewards)
    _, inv = torch.unique(traj_id, return_inverse=True)  # (S,) dense trajectory index
    first = torch.empty(int(inv.max()) + 1, dtype=torch.long, device=inv.device)
    first[inv] = torch.arange(inv.numel(), device=inv.device)  # some row of each trajectory
    traj_r, traj_g = rewards[first], group_id[first]
    for nm, per_step, per_traj in (("rewards", rewards, traj_r), ("group_id", group_id, traj_g)):
        differ = per_step != per_traj[inv]
        if bool(differ.any()):
            j = int(differ.nonzero()[0, 0])
            raise InputError(
                f"{nm} differs between steps of trajectory {int(traj_id[j])}: "
                f"{per_step[j].item()} vs {per_traj[inv[j]].item()}; every step row of a "
                "trajectory must carry the same outcome reward and group"
            )
    return fn(traj_r, traj_g, eps=eps)[inv]
