"""EMPG modulation: hand-computed golden values, a plain-loop reference, invariances, properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import empg
from empg.errors import InputError, NonFiniteError, ShapeError
from reference import loop_empg


def run(rows, **kw):
    t = torch.tensor([r[0] for r in rows])
    s = torch.tensor([r[1] for r in rows])
    h = torch.tensor([r[2] for r in rows], dtype=torch.float64)
    a = torch.tensor([r[3] for r in rows], dtype=torch.float64)
    return empg.modulate_advantages(h, a, t, s, **kw)


# ---------------------------------------------------------------------------------------------


def test_golden_hand_computed():
    # traj 0 (A = +1): steps 0, 1, 2 with H = 0.5, 1.5, 1.0; traj 1 (A = -1): H = 2.5, 0.5
    # rows given out of order on purpose
    rows = [
        (1, 1, 0.5, -1.0),
        (0, 2, 1.0, 1.0),
        (0, 0, 0.5, 1.0),
        (1, 0, 2.5, -1.0),
        (0, 1, 1.5, 1.0),
    ]
    got = run(rows).tolist()
    d = 2.0 + 1e-8  # max - min + eps
    hn = {"00": 0.0, "01": 1.0 / d, "02": 0.5 / d, "10": 2.0 / d, "11": 0.0}
    w = {key: math.exp(-v) for key, v in hn.items()}  # k = 1
    mw = sum(w.values()) / 5
    g = {key: v / mw for key, v in w.items()}
    f = {
        "00": math.exp(-hn["01"]),
        "01": math.exp(-hn["02"]),
        "02": 0.0,
        "10": math.exp(-hn["11"]),
        "11": 0.0,
    }
    raw = {
        "00": g["00"] * 1 + 0.1 * f["00"],
        "01": g["01"] * 1 + 0.1 * f["01"],
        "02": g["02"] * 1 + 0.1 * f["02"],
        "10": g["10"] * -1 + 0.1 * f["10"],
        "11": g["11"] * -1 + 0.1 * f["11"],
    }
    mean = sum(raw.values()) / 5
    expected = [raw[key] - mean for key in ("11", "02", "00", "10", "01")]
    assert got == pytest.approx(expected, abs=1e-6)
    # the same numbers worked by hand (4 decimals): Hn = 0, .5, .25, 1, 0; w = e^-Hn =
    # 1, .6065, .7788, .3679, 1 (mean .7506); g = 1.3322, .8080, 1.0375, .4901, 1.3322;
    # raw = 1.3322+.0607, .8080+.0779, 1.0375, -.4901+.1, -1.3322 (mean .3188)
    assert got == pytest.approx([-1.650988, 0.718718, 1.074051, -0.708881, 0.567101], abs=2e-6)
    # sign logic: the confident step of the failed trajectory is punished hardest
    assert got[0] == min(got)


@pytest.mark.parametrize("final_norm", ["mean", "mean_std", "none"])
@pytest.mark.parametrize("seed", range(25))
def test_matches_loop_reference(seed, final_norm):
    g = torch.Generator().manual_seed(seed)
    n_traj = int(torch.randint(1, 8, (1,), generator=g))
    rows = []
    for traj in range(n_traj):
        length = int(torch.randint(1, 9, (1,), generator=g))
        steps = torch.randperm(length + 3, generator=g)[:length].tolist()  # gaps in step indices
        adv = float(torch.randn(1, generator=g))
        for s in steps:
            rows.append((traj * 11 + 5, s, float(torch.rand(1, generator=g)) * 3, adv))
    perm = torch.randperm(len(rows), generator=g).tolist()
    rows = [rows[i] for i in perm]
    kw = {
        "k": float(torch.rand(1, generator=g)) * 3,
        "k_future": float(torch.rand(1, generator=g)) * 3,
        "zeta": float(torch.rand(1, generator=g)) * 0.5,
        "scale": bool(seed % 4 != 1),
        "bonus": bool(seed % 4 != 2),
        "final_norm": final_norm,
    }
    got = run(rows, **kw).tolist()
    assert got == pytest.approx(loop_empg(rows, **kw), abs=1e-5, rel=1e-5)


def test_g_has_batch_mean_one():
    g = torch.Generator().manual_seed(0)
    h = torch.rand(50, generator=g) * 4
    ones = torch.ones(50)
    t, s = torch.arange(50), torch.zeros(50, dtype=torch.long)
    gvals = empg.modulate_advantages(h, ones, t, s, bonus=False, final_norm="none")
    assert gvals.double().mean().item() == pytest.approx(1.0, abs=1e-6)
    # confident (low-entropy) steps get g > 1, uncertain ones g < 1; monotone decreasing in H
    order = torch.argsort(h)
    assert bool((gvals[order].diff() <= 1e-7).all())
    assert gvals[h.argmin()] > 1 > gvals[h.argmax()]


def test_identity_when_scale_off_and_zeta_zero():
    a = torch.tensor([1.0, -2.0, 0.5, 3.0])
    h = torch.tensor([0.1, 0.2, 0.3, 0.4])
    t, s = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])
    kw = {"scale": False, "zeta": 0.0}
    torch.testing.assert_close(empg.modulate_advantages(h, a, t, s, final_norm="none", **kw), a)
    torch.testing.assert_close(empg.modulate_advantages(h, a, t, s, **kw), a - a.mean())
    expected = (a - a.mean()) / (a.std() + 1e-8)
    torch.testing.assert_close(
        empg.modulate_advantages(h, a, t, s, final_norm="mean_std", **kw), expected
    )


def test_all_equal_entropy_gives_hn_zero():
    a = torch.tensor([1.0, 1.0, -1.0])
    h = torch.full((3,), 0.7)
    t, s = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 0])
    out = empg.modulate_advantages(h, a, t, s, zeta=0.25, final_norm="none")
    # g = 1 everywhere; bonus exp(0) = 1 only where a next step exists
    assert out.tolist() == pytest.approx([1.25, 1.0, -1.0])


def test_bonus_only_from_next_step_of_same_trajectory():
    # traj 0 has steps 0 and 2 (step 1 missing): no bonus for step 0; traj 1 step 1 exists
    a = torch.zeros(4)
    h = torch.tensor([0.0, 1.0, 2.0, 0.0])
    t, s = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 2, 0, 1])
    out = empg.modulate_advantages(h, a, t, s, scale=False, zeta=1.0, final_norm="none")
    assert out.tolist() == pytest.approx([0.0, 0.0, 1.0, 0.0])  # exp(-Hn[(1,1)]) = exp(0)
    out = empg.modulate_advantages(
        h, a, t, s, scale=False, zeta=1.0, k_future=2.0, final_norm="none"
    )
    assert out.tolist() == pytest.approx([0.0, 0.0, 1.0, 0.0])  # exp(-k_f * 0) whatever k_f
    h2 = torch.tensor([0.0, 1.0, 2.0, 0.5])
    out = empg.modulate_advantages(
        h2, a, t, s, scale=False, zeta=1.0, k_future=2.0, final_norm="none"
    )
    assert out.tolist() == pytest.approx([0.0, 0.0, math.exp(-2.0 * 0.5 / (2 + 1e-8)), 0.0])


def test_bonus_added_whatever_the_sign():
    h = torch.tensor([0.0, 1.0])
    t, s = torch.tensor([0, 0]), torch.tensor([0, 1])
    for adv in (1.0, -1.0):
        a = torch.full((2,), adv)
        on = empg.modulate_advantages(h, a, t, s, final_norm="none")
        off = empg.modulate_advantages(h, a, t, s, bonus=False, final_norm="none")
        assert (on - off).tolist() == pytest.approx(
            [0.1 * math.exp(-1 / (1 + 1e-8)), 0.0], abs=1e-6
        )


def test_single_step_batch():
    out = empg.modulate_advantages(
        torch.tensor([0.3]), torch.tensor([2.0]), torch.tensor([0]), torch.tensor([0])
    )
    assert out.tolist() == [0.0]
    out = empg.modulate_advantages(
        torch.tensor([0.3]),
        torch.tensor([2.0]),
        torch.tensor([0]),
        torch.tensor([0]),
        final_norm="mean_std",
    )
    assert out.tolist() == [0.0]


# ---- one-sequence layout ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(15))
def test_token_layout_equals_step_table(seed):
    g = torch.Generator().manual_seed(seed)
    b, length = 5, 30
    mask = (torch.rand(b, length, generator=g) < 0.6).long()
    mask[0] = 0  # a row with no steps at all
    ent = torch.rand(b, length, generator=g) * 2
    adv = torch.randn(b, generator=g)
    kw = {"k": 1.5, "k_future": 0.5, "zeta": 0.2, "final_norm": "mean_std"}
    tok = empg.modulate_token_advantages(ent, mask, adv, **kw)
    assert tok.shape == (b, length) and tok.dtype == torch.float32
    assert bool((tok[mask == 0] == 0).all())
    # build the step table by hand with loops
    rows = []
    for r in range(b):
        t, k = 0, 0
        while t < length:
            if mask[r, t]:
                s0 = t
                while t < length and mask[r, t]:
                    t += 1
                rows.append((r, k, float(ent[r, s0:t].double().mean()), float(adv[r]), s0, t))
                k += 1
            else:
                t += 1
    ref = loop_empg([x[:4] for x in rows], **kw)
    for (r, _, _, _, s0, e), v in zip(rows, ref, strict=True):
        assert tok[r, s0:e].tolist() == pytest.approx([v] * (e - s0), abs=1e-5)


def test_token_layout_masked_values_do_not_matter():
    g = torch.Generator().manual_seed(1)
    mask = torch.tensor([[1, 1, 0, 0, 1, 1], [0, 1, 1, 1, 0, 1]])
    ent = torch.rand(2, 6, generator=g)
    adv = torch.tensor([1.0, -1.0])
    base = empg.modulate_token_advantages(ent, mask, adv)
    for fill in (float("nan"), float("inf"), 1e9, -5.0):
        e2 = ent.clone()
        e2[mask == 0] = fill
        torch.testing.assert_close(empg.modulate_token_advantages(e2, mask, adv), base)


def test_token_layout_row_permutation():
    g = torch.Generator().manual_seed(2)
    mask = (torch.rand(6, 12, generator=g) < 0.5).long()
    mask[:, 0] = 1
    ent = torch.rand(6, 12, generator=g)
    adv = torch.randn(6, generator=g)
    perm = torch.randperm(6, generator=g)
    a = empg.modulate_token_advantages(ent, mask, adv)
    b = empg.modulate_token_advantages(ent[perm], mask[perm], adv[perm])
    torch.testing.assert_close(a[perm], b, atol=1e-6, rtol=1e-6)


# ---- errors -------------------------------------------------------------------------------------


def test_bad_inputs():
    h, a = torch.rand(3), torch.rand(3)
    t, s = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 0])
    with pytest.raises(InputError, match="duplicate"):
        empg.modulate_advantages(h, a, t, torch.tensor([0, 0, 0]))
    with pytest.raises(ShapeError, match="step_advantage has shape"):
        empg.modulate_advantages(h, torch.rand(4), t, s)
    with pytest.raises(InputError, match="traj_id has 2 entries"):
        empg.modulate_advantages(h, a, t[:2], s)
    with pytest.raises(NonFiniteError, match="step_entropy"):
        empg.modulate_advantages(torch.tensor([0.1, float("nan"), 0.2]), a, t, s)
    with pytest.raises(NonFiniteError, match="step_advantage"):
        empg.modulate_advantages(h, torch.tensor([0.1, float("inf"), 0.2]), t, s)
    with pytest.raises(InputError, match="empty"):
        empg.modulate_advantages(torch.zeros(0), torch.zeros(0), t[:0], s[:0])
    with pytest.raises(InputError, match="final_norm must be one of"):
        empg.modulate_advantages(h, a, t, s, final_norm="std")
    with pytest.raises(InputError, match="scale must be a bool"):
        empg.modulate_advantages(h, a, t, s, scale=1)
    with pytest.raises(InputError, match="eps must be > 0"):
        empg.modulate_advantages(h, a, t, s, eps=0.0)
    with pytest.raises(InputError, match="traj_id must be an integer"):
        empg.modulate_advantages(h, a, t.float(), s)
    with pytest.raises(InputError, match="step_index must be >= 0"):
        empg.modulate_advantages(h, a, t, torch.tensor([0, -1, 0]))
    with pytest.raises(InputError, match="no 1s"):
        empg.modulate_token_advantages(torch.rand(2, 3), torch.zeros(2, 3), torch.rand(2))
    with pytest.raises(InputError, match="one advantage per row"):
        empg.modulate_token_advantages(torch.rand(2, 3), torch.ones(2, 3), torch.rand(3))


# ---- property-based --------------------------------------------------------------------------

step_rows = st.lists(
    st.tuples(
        st.integers(0, 5),  # traj
        st.integers(0, 6),  # step
        st.floats(0, 10, allow_nan=False),  # entropy
        st.floats(-5, 5, allow_nan=False),  # advantage (per step here; any value is allowed)
    ),
    min_size=1,
    max_size=40,
    unique_by=lambda r: (r[0], r[1]),
)
knobs = st.fixed_dictionaries(
    {
        "k": st.floats(0, 5),
        "k_future": st.floats(0, 5),
        "zeta": st.floats(0, 1),
        "scale": st.booleans(),
        "bonus": st.booleans(),
        "final_norm": st.sampled_from(["mean", "mean_std", "none"]),
    }
)


@settings(max_examples=150, deadline=None)
@given(rows=step_rows, kw=knobs, data=st.data())
def test_property_loop_and_permutation(rows, kw, data):
    got = run(rows, **kw)
    assert got.dtype == torch.float32 and bool(torch.isfinite(got).all())
    assert got.tolist() == pytest.approx(loop_empg(rows, **kw), abs=1e-4, rel=1e-4)
    if kw["final_norm"] != "none":
        assert abs(got.double().mean().item()) < 1e-5 * max(1.0, got.abs().max().item())
    perm = data.draw(st.permutations(range(len(rows))))
    got_p = run([rows[i] for i in perm], **kw)
    torch.testing.assert_close(got_p, got[list(perm)], atol=1e-5, rtol=1e-5)


@settings(max_examples=100, deadline=None)
@given(rows=step_rows, k=st.floats(0.01, 5))
def test_property_g_mean_one_and_bounds(rows, k):
    h = torch.tensor([r[2] for r in rows])
    t, s = torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])
    g = empg.modulate_advantages(
        h, torch.ones(len(rows)), t, s, k=k, bonus=False, final_norm="none"
    )
    assert g.double().mean().item() == pytest.approx(1.0, abs=1e-5)
    # g = exp(-k Hn) / mean, Hn in [0, 1]: the ratio of any two g is at most exp(k)
    assert (g.max() / g.min()).item() <= math.exp(k) * (1 + 1e-5)


@settings(max_examples=60, deadline=None)
@given(rows=step_rows, shift=st.floats(-3, 3), mult=st.floats(0.1, 10))
def test_property_affine_entropy_invariance(rows, shift, mult):
    # min-max normalisation makes EMPG invariant to affine rescaling of entropies (up to eps):
    # the eps=1e-8 in the range is negligible only when the range itself is not tiny
    hs = [r[2] for r in rows]
    spread = max(hs) - min(hs)
    assume(spread == 0 or spread * min(mult, 1.0) > 1e-3)
    base = run(rows)
    moved = run([(t, s, h * mult + shift + 3, a) for t, s, h, a in rows])
    torch.testing.assert_close(moved, base, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("seed", range(10))
def test_sparse_and_dense_ids_agree(seed):
    # dense ids use the O(S) direct-address path, huge sparse ids the sort path
    g = torch.Generator().manual_seed(seed)
    n = 60
    traj = torch.randint(0, 8, (n,), generator=g)
    step = torch.randint(0, 12, (n,), generator=g)
    keep = torch.unique(traj * 100 + step, return_inverse=True)[1]
    first = torch.zeros(int(keep.max()) + 1, dtype=torch.long).scatter_(
        0, keep.flip(0), torch.arange(n).flip(0)
    )
    traj, step = traj[first], step[first]  # unique (traj, step) pairs
    h, a = torch.rand(traj.numel(), generator=g), torch.randn(traj.numel(), generator=g)
    dense = empg.modulate_advantages(h, a, traj, step)
    sparse = empg.modulate_advantages(h, a, traj * 10**12 - 7, step)
    torch.testing.assert_close(dense, sparse)
    nxt = empg.next_step_position(traj * 10**12, step).tolist()
    pairs = {(int(t), int(s)): i for i, (t, s) in enumerate(zip(traj, step, strict=True))}
    expected = [pairs.get((int(t), int(s) + 1), -1) for t, s in zip(traj, step, strict=True)]
    assert nxt == expected
    assert empg.next_step_position(traj, step).tolist() == expected
    with pytest.raises(InputError, match="duplicate"):
        empg.next_step_position(torch.cat([traj, traj[:1]]) * 10**12, torch.cat([step, step[:1]]))
