"""PPO / DAPO policy loss, aggregation modes, KL estimators, DAPO helpers and presets."""

from __future__ import annotations

import math

import pytest
import torch

import empg
from empg.errors import InputError, NonFiniteError, UnknownNameError


def loop_ppo(lp, old, adv, mask, low, high, c, mode):
    """Plain-loop reference of the clipped surrogate and its aggregation."""
    per_seq, all_tok, n_tok = [], [], 0
    for b in range(len(lp)):
        seq = []
        for t in range(len(lp[b])):
            if not mask[b][t]:
                continue
            ratio = math.exp(max(-20.0, min(20.0, lp[b][t] - old[b][t])))
            a = adv[b][t]
            loss = max(-a * ratio, -a * min(max(ratio, 1 - low), 1 + high))
            if c is not None and a < 0:
                loss = min(loss, -a * c)
            seq.append(loss)
        per_seq.append(seq)
        all_tok += seq
        n_tok += len(seq)
    width = len(lp[0])
    if mode == "token-mean":
        return sum(all_tok) / max(1, n_tok)
    if mode == "seq-mean-token-sum-norm":
        return sum(all_tok) / (max(1, sum(1 for x in per_seq if x)) * width)
    vals = [(sum(s) / len(s) if mode == "seq-mean-token-mean" else sum(s)) for s in per_seq if s]
    return sum(vals) / max(1, len(vals))


def test_golden_clip_higher():
    # one sequence, 4 tokens; eps_low 0.2, eps_high 0.28
    lp = torch.log(torch.tensor([[1.5, 0.5, 1.1, 0.7]]))  # ratios (old log-probs 0)
    old = torch.zeros(1, 4)
    adv = torch.tensor([[1.0, -1.0, 2.0, 1.0]])
    out = empg.ppo_policy_loss(
        lp, old, adv, torch.ones(1, 4), clip_ratio_low=0.2, clip_ratio_high=0.28
    )
    # token 0: A>0, ratio 1.5 > 1.28 -> -1.28; token 1: A<0, ratio 0.5 < 0.8 -> max(0.5, 0.8) = 0.8
    # token 2: unclipped -> -2.2; token 3: A>0, ratio 0.7: max(-0.7, -0.8) -> -0.7 (not clipped)
    expected = (-1.28 + 0.8 - 2.2 - 0.7) / 4
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)
    assert out.metrics["clipfrac"].item() == pytest.approx(0.5)  # tokens 0 and 1
    assert out.metrics["clipfrac_high"].item() == pytest.approx(0.25)
    assert out.metrics["clipfrac_low"].item() == pytest.approx(0.25)
    # approx_kl = mean(old - new)
    assert out.metrics["approx_kl"].item() == pytest.approx(-float(lp.mean()), abs=1e-6)


def test_golden_dual_clip():
    lp = torch.log(torch.tensor([[5.0, 5.0]]))
    adv = torch.tensor([[-1.0, 1.0]])
    out = empg.ppo_policy_loss(lp, torch.zeros(1, 2), adv, torch.ones(1, 2), clip_ratio_c=3.0)
    # token 0: max(5, 1.2) = 5 capped by dual clip at 3; token 1: max(-5, -1.2) = -1.2
    assert out.loss.item() == pytest.approx((3.0 - 1.2) / 2, abs=1e-6)
    assert out.metrics["dualclip_frac"].item() == pytest.approx(0.5)


@pytest.mark.parametrize("mode", empg.LOSS_AGG_MODES)
@pytest.mark.parametrize("seed", range(8))
def test_matches_loop(mode, seed):
    g = torch.Generator().manual_seed(seed)
    b, length = 4, 7
    lp = torch.randn(b, length, generator=g, dtype=torch.float64) * 0.3 - 1
    old = lp + torch.randn(b, length, generator=g, dtype=torch.float64) * 0.3
    adv = torch.randn(b, length, generator=g, dtype=torch.float64)
    mask = (torch.rand(b, length, generator=g) < 0.7).long()
    mask[1] = 0  # an empty sequence
    low, high, c = 0.2, 0.28, (3.0 if seed % 2 else None)
    out = empg.ppo_policy_loss(
        lp,
        old,
        adv,
        mask,
        clip_ratio_low=low,
        clip_ratio_high=high,
        clip_ratio_c=c,
        loss_agg_mode=mode,
    )
    ref = loop_ppo(lp.tolist(), old.tolist(), adv.tolist(), mask.tolist(), low, high, c, mode)
    assert out.loss.item() == pytest.approx(ref, abs=1e-10)


def test_gradient_unclipped_tokens():
    lp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    old = torch.tensor([[-1.0, -2.0]])
    adv = torch.tensor([[2.0, -1.0]])
    out = empg.ppo_policy_loss(lp, old, adv, torch.ones(1, 2))
    (grad,) = torch.autograd.grad(out.loss, lp)
    # d/dlp of -A * exp(lp - old) at ratio 1, token-mean over 2 tokens
    assert grad[0].tolist() == pytest.approx([-1.0, 0.5])


def test_per_row_advantages_broadcast_explicitly():
    lp = torch.randn(3, 4)
    adv = torch.tensor([1.0, -1.0, 0.5])
    a = empg.ppo_policy_loss(lp, lp.detach() + 0.1, adv, torch.ones(3, 4)).loss
    b = empg.ppo_policy_loss(
        lp, lp.detach() + 0.1, adv[:, None].expand(3, 4), torch.ones(3, 4)
    ).loss
    assert a.item() == b.item()
    with pytest.raises(InputError, match="one entry per row"):
        empg.ppo_policy_loss(lp, lp, torch.ones(4), torch.ones(3, 4))


def test_masked_values_never_matter():
    g = torch.Generator().manual_seed(0)
    lp, old, adv = (torch.randn(3, 5, generator=g) for _ in range(3))
    mask = torch.tensor([[1, 1, 0, 0, 1], [0, 1, 1, 1, 0], [1, 0, 0, 0, 0]])
    base = empg.ppo_policy_loss(lp, old, adv, mask, clip_ratio_c=3.0)
    for fill in (float("nan"), 1e6, -1e6):
        lp2, old2, adv2 = lp.clone(), old.clone(), adv.clone()
        for x in (lp2, old2, adv2):
            x[mask == 0] = fill
        out = empg.ppo_policy_loss(lp2, old2, adv2, mask, clip_ratio_c=3.0)
        assert out.loss.item() == base.loss.item()
        for key, v in base.metrics.items():
            assert out.metrics[key].item() == v.item()


def test_aggregate_golden():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert empg.aggregate_loss(loss, mask, "token-mean").item() == pytest.approx(10 / 4)
    assert empg.aggregate_loss(loss, mask, "seq-mean-token-mean").item() == pytest.approx(
        (2 + 4) / 2
    )
    assert empg.aggregate_loss(loss, mask, "seq-mean-token-sum").item() == pytest.approx(
        (6 + 4) / 2
    )
    assert empg.aggregate_loss(loss, mask, "seq-mean-token-sum-norm").item() == pytest.approx(
        10 / 6
    )
    # Dr. GRPO's constant: B * norm_len, whatever the padding; padding alone changes nothing
    assert empg.aggregate_loss(
        loss, mask, "seq-mean-token-sum-norm", norm_len=8
    ).item() == pytest.approx(10 / 16)
    padded = torch.cat([loss, torch.full((2, 4), 7.0)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(2, 4, dtype=mask.dtype)], dim=1)
    assert empg.aggregate_loss(
        padded, padded_mask, "seq-mean-token-sum-norm", norm_len=8
    ).item() == pytest.approx(10 / 16)
    for mode in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum"):  # ignored there
        assert empg.aggregate_loss(loss, mask, mode, norm_len=8) == empg.aggregate_loss(
            loss, mask, mode
        )
    for bad in (0, -3, 2.5, True):
        with pytest.raises(InputError, match="norm_len"):
            empg.aggregate_loss(loss, mask, "seq-mean-token-sum-norm", norm_len=bad)
    empty = empg.aggregate_loss(loss.requires_grad_(), torch.zeros(2, 3), "token-mean")
    assert empty.item() == 0.0
    empty.backward()  # still connected to the graph
    with pytest.raises(InputError, match="loss_agg_mode must be one of"):
        empg.aggregate_loss(loss, mask, "token_mean")


def test_kl_estimators_golden():
    lp = torch.tensor([[-1.0, -2.0]])
    ref = torch.tensor([[-1.5, -2.0]])
    m = torch.ones(1, 2)
    assert empg.kl_penalty(lp, ref, m, "k1")[0].tolist() == pytest.approx([0.5, 0.0])
    assert empg.kl_penalty(lp, ref, m, "k2")[0].tolist() == pytest.approx([0.125, 0.0])
    # k3: exp(ref - lp) - (ref - lp) - 1 = e^-0.5 + 0.5 - 1
    k3 = empg.kl_penalty(lp, ref, m, "k3")[0].tolist()
    assert k3 == pytest.approx([math.exp(-0.5) - 0.5, 0.0])
    with pytest.raises(UnknownNameError, match="Did you mean 'k3'"):
        empg.kl_penalty(lp, ref, m, "k4")


def test_k3_nonnegative_unbiased_and_clamped():
    g = torch.Generator().manual_seed(0)
    # sample from p, estimate KL(p || q) with k3: unbiased, non-negative per sample
    p_logits, q_logits = torch.randn(6, generator=g), torch.randn(6, generator=g)
    p, q = torch.softmax(p_logits, 0), torch.softmax(q_logits, 0)
    x = torch.multinomial(p, 200_000, replacement=True, generator=g)
    lp, lq = torch.log(p)[x][None], torch.log(q)[x][None]
    k3 = empg.kl_penalty(lp, lq, torch.ones_like(lp), "k3")
    assert bool((k3 >= 0).all())
    exact = float((p * (p.log() - q.log())).sum())
    assert k3.mean().item() == pytest.approx(exact, abs=0.01)
    huge = empg.kl_penalty(torch.tensor([[-50.0]]), torch.tensor([[0.0]]), torch.ones(1, 1), "k3")
    assert huge.item() == 10.0


def test_dynamic_sampling_mask():
    r = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.5, 0.5])
    gid = torch.tensor([0, 0, 1, 1, 2, 2, 3, 4])
    # group 0 all 1, group 1 mixed, group 2 all 0, groups 3/4 single
    assert empg.dynamic_sampling_mask(r, gid).tolist() == [
        False,
        False,
        True,
        True,
        False,
        False,
        False,
        False,
    ]


def test_overlong_penalty_golden():
    lengths = torch.tensor([0, 80, 81, 90, 100, 150])
    pen = empg.overlong_penalty(lengths, max_length=100, buffer_length=20, penalty_factor=1.0)
    assert pen.tolist() == pytest.approx([0.0, 0.0, -1 / 20, -10 / 20, -1.0, -1.0])
    with pytest.raises(InputError, match="buffer_length"):
        empg.overlong_penalty(lengths, max_length=10, buffer_length=20)


def test_presets():
    dapo = empg.get_preset("dapo")
    assert (dapo.clip_ratio_low, dapo.clip_ratio_high) == (0.2, 0.28)
    assert dapo.loss_agg_mode == "token-mean" and dapo.dynamic_sampling and dapo.overlong_shaping
    assert dapo.kl_coef == 0.0 and dapo.adv_estimator == "grpo"
    assert empg.get_preset("grpo", kl_coef=0.0).kl_coef == 0.0
    with pytest.raises(UnknownNameError, match="Did you mean 'dapo'"):
        empg.get_preset("dapoo")
    with pytest.raises(TypeError):
        empg.get_preset("dapo", not_a_field=1)


def test_bad_inputs():
    lp = torch.zeros(2, 3)
    with pytest.raises(InputError, match="only 0 and 1"):
        empg.ppo_policy_loss(lp, lp, lp, torch.full((2, 3), 2))
    with pytest.raises(NonFiniteError, match="old_logprobs"):
        empg.ppo_policy_loss(lp, torch.full((2, 3), float("nan")), lp, torch.ones(2, 3))
    with pytest.raises(InputError, match="clip_ratio_c must be > 1"):
        empg.ppo_policy_loss(lp, lp, lp, torch.ones(2, 3), clip_ratio_c=0.5)
    with pytest.raises(InputError, match="clip_ratio_low must be >= 0"):
        empg.ppo_policy_loss(lp, lp, lp, torch.ones(2, 3), clip_ratio_low=-0.1)
    with pytest.raises(InputError, match="must match exactly"):
        empg.ppo_policy_loss(lp, torch.zeros(2, 4), lp, torch.ones(2, 3))
