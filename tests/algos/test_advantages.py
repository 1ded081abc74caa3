"""Outcome advantages: golden values, plain-loop references, registry errors, edge cases."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

import empg
from empg.errors import InputError, NonFiniteError, UnknownNameError


def loop_advantages(name: str, rewards: list[float], groups: list[int], eps: float) -> list[float]:
    out = []
    for r, gid in zip(rewards, groups, strict=True):
        members = [x for x, g in zip(rewards, groups, strict=True) if g == gid]
        n = len(members)
        if n == 1:  # no baseline (verl's convention)
            out.append(r / (1 + eps) if name == "grpo" else r)
            continue
        if max(members) == min(members):
            out.append(0.0)
            continue
        mean = sum(members) / n
        if name == "grpo":
            out.append((r - mean) / (statistics.stdev(members) + eps))
        elif name == "dr_grpo":
            out.append(r - mean)
        else:  # rloo: reward minus the mean of the OTHER members
            others = members.copy()
            others.remove(r)
            out.append(r - sum(others) / (n - 1))
    return out


def test_grpo_golden():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.5])
    groups = torch.tensor([7, 7, 7, 7, 3, 3, 9])
    adv = empg.compute_outcome_advantages("grpo", rewards, groups, eps=1e-6)
    std = math.sqrt((4 * 0.25) / 3)  # Bessel: sum of squared deviations / (n - 1)
    expected = [0.5 / (std + 1e-6), -0.5 / (std + 1e-6)] * 1
    expected = [expected[0], expected[1], expected[1], expected[0], 0.0, 0.0, 0.5 / (1 + 1e-6)]
    assert adv.dtype == torch.float32
    assert adv.tolist() == pytest.approx(expected, abs=1e-6)


def test_dr_grpo_and_rloo_golden():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0])
    groups = torch.tensor([0, 0, 0, 0])
    assert empg.compute_outcome_advantages("dr_grpo", rewards, groups).tolist() == pytest.approx(
        [0.75, -0.25, -0.25, -0.25]
    )
    # rloo: 1 - 0/3 = 1; 0 - 1/3
    assert empg.compute_outcome_advantages("rloo", rewards, groups).tolist() == pytest.approx(
        [1.0, -1 / 3, -1 / 3, -1 / 3]
    )


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo"])
@pytest.mark.parametrize("seed", range(15))
def test_matches_loop(name, seed):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 40, (1,), generator=g))
    groups = torch.randint(0, max(1, n // 3), (n,), generator=g) * 5 - 7  # arbitrary ids
    if seed % 3 == 0:
        rewards = torch.randint(0, 2, (n,), generator=g).double()  # binary, many equal groups
    else:
        rewards = torch.randn(n, generator=g, dtype=torch.float64)
    adv = empg.compute_outcome_advantages(name, rewards, groups, eps=1e-6)
    ref = loop_advantages(name, rewards.tolist(), groups.tolist(), 1e-6)
    assert adv.tolist() == pytest.approx(ref, abs=1e-5, rel=1e-5)


def test_zero_variance_group_is_exactly_zero():
    # 0.1 summed three times and divided by 3 is not exactly 0.1 in floating point
    adv = empg.compute_outcome_advantages(
        "grpo", torch.tensor([0.1, 0.1, 0.1]), torch.zeros(3, dtype=torch.long)
    )
    assert adv.tolist() == [0.0, 0.0, 0.0]


def test_permutation_equivariance():
    g = torch.Generator().manual_seed(0)
    rewards = torch.rand(30, generator=g)
    groups = torch.randint(0, 6, (30,), generator=g)
    perm = torch.randperm(30, generator=g)
    for name in empg.ADVANTAGE_ESTIMATORS.names():
        a = empg.compute_outcome_advantages(name, rewards, groups)
        b = empg.compute_outcome_advantages(name, rewards[perm], groups[perm])
        torch.testing.assert_close(a[perm], b)


def test_registry_did_you_mean():
    with pytest.raises(UnknownNameError) as exc:
        empg.compute_outcome_advantages("grop", torch.ones(2), torch.zeros(2, dtype=torch.long))
    msg = str(exc.value)
    assert "Did you mean 'grpo'?" in msg and "dr_grpo, grpo, rloo" in msg
    assert isinstance(exc.value, KeyError)


def test_register_custom_estimator():
    @empg.register_advantage_estimator("test_raw_reward")
    def raw(rewards, group_id, *, eps=1e-6):
        return rewards.float()

    assert empg.compute_outcome_advantages(
        "test_raw_reward", torch.tensor([2.0]), torch.tensor([0])
    ).tolist() == [2.0]
    with pytest.raises(ValueError, match="already registered"):
        empg.register_advantage_estimator("grpo")(raw)


def test_bad_inputs():
    z = torch.zeros(3, dtype=torch.long)
    with pytest.raises(InputError, match="group_id has 3 entries but rewards has 2"):
        empg.grpo_advantages(torch.ones(2), z)
    with pytest.raises(NonFiniteError, match="rewards"):
        empg.grpo_advantages(torch.tensor([1.0, float("nan"), 0.0]), z)
    with pytest.raises(InputError, match="empty"):
        empg.grpo_advantages(torch.ones(0), torch.zeros(0, dtype=torch.long))
    with pytest.raises(InputError, match="group_id must be an integer"):
        empg.grpo_advantages(torch.ones(3), z.float())
    with pytest.raises(InputError, match="rewards must be a floating-point"):
        empg.grpo_advantages(torch.ones(3, dtype=torch.long), z)
    with pytest.raises(InputError, match="eps must be >= 0"):
        empg.grpo_advantages(torch.ones(3), z, eps=-1.0)


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo"])
def test_step_table_counts_each_trajectory_once(name):
    # trajectories 10 (3 steps, R=1), 11 (1 step, R=0), 12 (2 steps, R=0) in group 0
    traj = torch.tensor([12, 10, 11, 10, 12, 10])
    rewards = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    groups = torch.zeros(6, dtype=torch.long)
    got = empg.step_outcome_advantages(name, rewards, groups, traj)
    per_traj = empg.compute_outcome_advantages(
        name, torch.tensor([1.0, 0.0, 0.0]), torch.zeros(3, dtype=torch.long)
    )
    expected = per_traj[torch.tensor([2, 0, 1, 0, 2, 0])]
    torch.testing.assert_close(got, expected)


def test_step_table_inconsistent_rows():
    traj = torch.tensor([0, 0, 1])
    with pytest.raises(InputError, match="rewards differs between steps of trajectory 0"):
        empg.step_outcome_advantages(
            "grpo", torch.tensor([1.0, 0.0, 0.0]), torch.zeros(3, dtype=torch.long), traj
        )
    with pytest.raises(InputError, match="group_id differs"):
        empg.step_outcome_advantages("grpo", torch.ones(3), torch.tensor([0, 1, 1]), traj)
    # a NaN reward is named as such (NaN != NaN would otherwise read as disagreeing steps)
    with pytest.raises(NonFiniteError, match="rewards holds 2 NaN"):
        empg.step_outcome_advantages(
            "grpo", torch.tensor([float("nan"), float("nan"), 0.0]), torch.zeros(3).long(), traj
        )
