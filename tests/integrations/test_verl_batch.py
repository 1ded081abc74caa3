"""verl plug-in glue without verl: row keys -> steps -> the core's EMPG, config refusals.

These run in the shared venv (no verl needed); tests/integrations/test_verl.py runs the same
glue inside verl's real trainer."""

from __future__ import annotations

import math
import random

import pytest
import torch

import empg
from empg.errors import ConfigError, InputError
from empg.integrations.verl import (
    VerlEMPGConfig,
    check_verl_config,
    parse_row_key,
    verl_empg_advantages,
)
from empg.integrations.verl.config import empg_config_from

torch.set_num_threads(1)
CFG = VerlEMPGConfig()


def rand_batch(n_rows: int, width: int, seed: int, min_runs: int = 1, max_runs: int = 3):
    """Masks with 1..3 runs of 1s, entropies in [0, 2), per-row constant advantages."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(n_rows, width, dtype=torch.long)
    for r in range(n_rows):
        pos = 0
        for _ in range(int(torch.randint(min_runs, max_runs + 1, (1,), generator=g))):
            gap = int(torch.randint(0 if pos == 0 else 1, 3, (1,), generator=g))
            ln = int(torch.randint(1, 4, (1,), generator=g))
            if pos + gap + ln > width:
                break
            mask[r, pos + gap : pos + gap + ln] = 1
            pos += gap + ln
        if not mask[r].any():
            mask[r, 0] = 1
    ent = torch.rand(n_rows, width, generator=g) * 2
    a = torch.randn(n_rows, generator=g)
    adv = a[:, None] * mask
    return mask, ent, a, adv


def test_parse_row_key_splits_from_the_right():
    assert parse_row_key("abc_3_7") == ("abc_3", 7)
    assert parse_row_key("a_b_c_0_12") == ("a_b_c_0", 12)
    with pytest.raises(InputError, match="uid"):
        parse_row_key("abc_3")
    with pytest.raises(InputError, match="not an integer"):
        parse_row_key("abc_3_x")


def test_golden_two_trajectories_hand_computed():
    # traj u_0 (one row, two turns): H = 1.0, 0.0 ; traj u_1 (one row, one turn): H = 2.0
    mask = torch.tensor([[1, 1, 0, 1], [1, 0, 0, 0]])
    ent = torch.tensor([[0.5, 1.5, 9.0, 0.0], [2.0, 9.0, 9.0, 9.0]])
    adv = torch.tensor([[1.0, 1.0, 0.0, 1.0], [-1.0, 0.0, 0.0, 0.0]])
    got = verl_empg_advantages(["u_0_0", "u_1_0"], mask, ent, adv, CFG).advantages
    d = 2.0 + 1e-8
    hn = [1.0 / d, 0.0, 2.0 / d]  # step entropies 1.0, 0.0, 2.0 (min 0, max 2)
    w = [math.exp(-h) for h in hn]
    wm = sum(w) / 3
    a_mod = [w[0] / wm * 1 + 0.1 * math.exp(-hn[1]), w[1] / wm * 1, w[2] / wm * -1]
    mu = sum(a_mod) / 3
    exp = [[a_mod[0] - mu] * 2 + [0.0, a_mod[1] - mu], [a_mod[2] - mu, 0.0, 0.0, 0.0]]
    torch.testing.assert_close(got, torch.tensor(exp), rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_single_row_trajectories_equal_modulate_token_advantages(seed):
    mask, ent, a, adv = rand_batch(12, 16, seed)
    keys = [f"p{r // 4}_{r % 4}_0" for r in range(12)]
    got = verl_empg_advantages(keys, mask, ent, adv, CFG).advantages
    exp = empg.modulate_token_advantages(ent, mask, a)
    torch.testing.assert_close(got, exp, rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_row_per_step_equals_step_table_core(seed):
    g = random.Random(seed)
    lengths = [g.randint(1, 5) for _ in range(6)]  # steps per trajectory
    rows = [(t, s) for t, n in enumerate(lengths) for s in range(n)]
    mask, ent, _, _ = rand_batch(len(rows), 10, seed, min_runs=1, max_runs=1)
    a_traj = torch.randn(len(lengths), generator=torch.Generator().manual_seed(seed))
    a = a_traj[[t for t, _ in rows]]
    adv = a[:, None] * mask
    exp = empg.modulate_advantages(
        empg.step_entropy_from_rows(ent, mask),
        a,
        torch.tensor([t for t, _ in rows]),
        torch.tensor([s for _, s in rows]),
    )
    perm = list(range(len(rows)))
    g.shuffle(perm)  # verl's batch balancing reorders rows
    keys = [f"uid{rows[p][0] // 2}_{rows[p][0] % 2}_{rows[p][1]}" for p in perm]
    got = verl_empg_advantages(keys, mask[perm], ent[perm], adv[perm], CFG).advantages
    torch.testing.assert_close(got, exp[perm][:, None] * mask[perm], rtol=0, atol=1e-6)


def test_duplicates_and_padding_do_not_count():
    mask, ent, a, adv = rand_batch(8, 12, 5)
    keys = [f"p{r // 4}_{r % 4}_0" for r in range(8)]
    exp = empg.modulate_token_advantages(ent, mask, a)
    dup = [1, 6, 1]  # rows listed twice (row 1 three times)
    pad_mask = torch.zeros(2, 12, dtype=torch.long)
    pad_mask[0, 0] = 1  # a padding row WITH a response token: the tag alone must exclude it
    m2 = torch.cat([mask, mask[dup], pad_mask])
    e2 = torch.cat([ent, ent[dup], torch.full((2, 12), 5.0)])
    a2 = torch.cat([adv, adv[dup], pad_mask * 3.0])
    k2 = [*keys, *(keys[d] for d in dup), "padx_0_0", "padx_1_0"]
    flags = [False] * 11 + [True, True]
    res = verl_empg_advantages(k2, m2, e2, a2, CFG, is_padding=flags)
    torch.testing.assert_close(res.advantages[:8], exp, rtol=0, atol=1e-6)
    torch.testing.assert_close(res.advantages[8:11], exp[dup], rtol=0, atol=1e-6)
    assert torch.equal(res.advantages[11:], a2[11:])  # padding rows returned as given
    assert res.metrics["empg/duplicate_rows"] == 3.0
    assert res.metrics["empg/padding_rows"] == 2.0
    assert res.metrics["empg/steps"] == float(empg.segment_steps(mask).num_steps)


def test_rows_without_response_tokens_are_ignored():
    mask, ent, a, adv = rand_batch(4, 8, 3)
    m2 = torch.cat([mask, torch.zeros(1, 8, dtype=torch.long)])
    got = verl_empg_advantages(
        [f"q_{r}_0" for r in range(5)],
        m2,
        torch.cat([ent, torch.full((1, 8), float("nan"))]),
        torch.cat([adv, torch.zeros(1, 8)]),
        CFG,
    ).advantages
    torch.testing.assert_close(got[:4], empg.modulate_token_advantages(ent, mask, a))
    assert torch.equal(got[4], torch.zeros(8))


def test_a_rejected_step_row_stays_a_gap_in_its_trajectory():
    """One row per turn; sequence-level rejection zeroes turn 1's mask. Turn 0 must not take
    turn 2's entropy as its next step's (the core gives no bonus across a gap)."""
    mask, ent, _, _ = rand_batch(5, 6, 11, min_runs=1, max_runs=1)
    mask[1] = 0  # traj A's turn 1, rejected
    keys = ["A_0_0", "A_0_1", "A_0_2", "B_0_0", "B_0_1"]
    a = torch.tensor([0.7, 0.7, 0.7, -0.4, -0.4])
    got = verl_empg_advantages(keys, mask, ent, a[:, None] * mask, CFG).advantages
    kept = [0, 2, 3, 4]
    exp = empg.modulate_advantages(
        empg.step_entropy_from_rows(ent[kept], mask[kept]),
        a[kept],
        torch.tensor([0, 0, 1, 1]),
        torch.tensor([0, 2, 0, 1]),  # the gap at step 1 kept
    )
    torch.testing.assert_close(got[kept], exp[:, None] * mask[kept], rtol=0, atol=1e-6)
    assert torch.equal(got[1], torch.zeros(6))
    # and it is not what numbering over the kept rows only (0, 1) would give
    closed = empg.modulate_advantages(
        empg.step_entropy_from_rows(ent[kept], mask[kept]),
        a[kept],
        torch.tensor([0, 0, 1, 1]),
        torch.tensor([0, 1, 0, 1]),
    )
    assert not torch.allclose(exp[0], closed[0])


def test_knobs_reach_the_core():
    mask, ent, a, adv = rand_batch(6, 10, 7)
    keys = [f"p_{r}_0" for r in range(6)]
    cfg = VerlEMPGConfig(k=2.0, k_future=0.5, zeta=0.3, bonus=False, final_norm="mean_std")
    got = verl_empg_advantages(keys, mask, ent, adv, cfg).advantages
    exp = empg.modulate_token_advantages(
        ent, mask, a, k=2.0, k_future=0.5, zeta=0.3, bonus=False, final_norm="mean_std"
    )
    torch.testing.assert_close(got, exp, rtol=0, atol=1e-6)
    off = verl_empg_advantages(keys, mask, ent, adv, VerlEMPGConfig(enable=False)).advantages
    assert torch.equal(off, adv)


def test_per_token_advantages_are_refused():
    mask, ent, _, adv = rand_batch(3, 8, 1)
    adv = adv.clone()
    r, c = mask.nonzero()[0].tolist()
    adv[r, c] += 0.5
    with pytest.raises(InputError, match="vary over its response tokens"):
        verl_empg_advantages([f"p_{i}_0" for i in range(3)], mask, ent, adv, CFG)


def test_estimators_verl_does_not_reduce_per_trajectory_are_refused_with_rows_per_step():
    mask, ent, _, adv = rand_batch(4, 8, 2)
    one_row_each = [f"p_{i}_0" for i in range(4)]
    rows_per_step = ["p_0_0", "p_0_1", "p_1_0", "p_1_1"]
    for est in ("grpo", "rloo", None):  # one sequence per trajectory: any outcome estimator
        verl_empg_advantages(one_row_each, mask, ent, adv, CFG, estimator=est)
    verl_empg_advantages(rows_per_step, mask, ent, adv, CFG, estimator="grpo")
    for est in ("rloo", "grpo_vectorized", "grpo_passk"):
        with pytest.raises(ConfigError, match="once per step"):
            verl_empg_advantages(rows_per_step, mask, ent, adv, CFG, estimator=est)


def test_repeated_key_with_different_mask_is_refused():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    with pytest.raises(InputError, match="appears twice"):
        verl_empg_advantages(["p_0_0", "p_0_0"], mask, torch.ones(2, 3), mask * 1.0, CFG)


# --- config --------------------------------------------------------------------------------


def verl_like(**algo):
    return {
        "trainer": {"use_v1": True, "v1": {"trainer_mode": "empg_sync"}},
        "algorithm": {
            "adv_estimator": "grpo",
            "rollout_correction": {"bypass_mode": False},
            **algo,
        },
        "critic": {"enable": None},
    }


def test_config_defaults_and_knobs():
    assert check_verl_config(verl_like()) == VerlEMPGConfig()
    cfg = check_verl_config(verl_like(empg={"k": 2, "zeta": 0.05, "final_norm": "none"}))
    assert (cfg.k, cfg.zeta, cfg.final_norm) == (2.0, 0.05, "none")


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (verl_like(empg={"zetta": 0.1}), "did you mean 'algorithm.empg.zeta'"),
        (verl_like(empg={"k": "big"}), "algorithm.empg.k: expected float"),
        (verl_like(empg={"final_norm": "std"}), "final_norm must be one of"),
        (verl_like(empg={"scale": False, "bonus": False}), "both False"),
        (verl_like(adv_estimator="gae"), "per-token advantages"),
        (verl_like(rollout_correction={"bypass_mode": True}), "bypass_mode=False"),
    ],
)
def test_config_refusals(cfg, match):
    with pytest.raises(ConfigError, match=match):
        check_verl_config(cfg)


def test_config_refuses_wrong_trainer_mode_and_critic():
    c = verl_like()
    c["trainer"]["v1"]["trainer_mode"] = "sync"
    with pytest.raises(ConfigError, match="trainer_mode=empg_sync"):
        check_verl_config(c)
    c = verl_like()
    c["critic"]["enable"] = True
    with pytest.raises(ConfigError, match="critic"):
        check_verl_config(c)
    c = verl_like(empg={"enable": False}, adv_estimator="gae")
    assert check_verl_config(c).enable is False  # EMPG off: nothing to refuse
    assert empg_config_from({}) == VerlEMPGConfig()
