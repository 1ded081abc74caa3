"""Token log-prob / entropy: references, chunking, gradients, dtypes, Proposition 1, errors."""

from __future__ import annotations

import math

import pytest
import torch

import empg
from empg.errors import InputError, NonFiniteError, ShapeError


def ref_lp_ent(logits: torch.Tensor, labels: torch.Tensor, t: float = 1.0):
    """float64 reference through plain log_softmax."""
    lsm = torch.log_softmax(logits.to(torch.float64) / t, dim=-1)
    return lsm.gather(-1, labels.unsqueeze(-1)).squeeze(-1), -(lsm.exp() * lsm).sum(-1)


@pytest.mark.parametrize("seed", range(5))
def test_matches_torch_categorical(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 7, 13, generator=g, dtype=torch.float64) * 3
    labels = torch.randint(0, 13, (3, 7), generator=g)
    lp, ent = empg.token_logprobs_and_entropy(logits, labels, chunk_size=4)
    dist = torch.distributions.Categorical(logits=logits)
    assert lp.dtype == ent.dtype == torch.float32
    torch.testing.assert_close(lp, dist.log_prob(labels).float(), atol=2e-6, rtol=1e-6)
    torch.testing.assert_close(ent, dist.entropy().float(), atol=2e-6, rtol=1e-6)


def test_uniform_and_one_hot_golden():
    v = 10
    logits = torch.zeros(2, v)
    logits[1, 3] = 1e4  # effectively one-hot
    lp, ent = empg.token_logprobs_and_entropy(logits, torch.tensor([5, 3]))
    assert lp[0].item() == pytest.approx(-math.log(v), abs=1e-6)
    assert ent[0].item() == pytest.approx(math.log(v), abs=1e-6)
    assert lp[1].item() == pytest.approx(0.0, abs=1e-6)
    assert ent[1].item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("t", [0.3, 1.0, 2.5])
def test_temperature(t):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(11, 17, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 17, (11,), generator=g)
    lp, ent = empg.token_logprobs_and_entropy(logits, labels, temperature=t, chunk_size=3)
    rlp, rent = ref_lp_ent(logits, labels, t)
    torch.testing.assert_close(lp.double(), rlp, atol=2e-6, rtol=0)
    torch.testing.assert_close(ent.double(), rent, atol=2e-6, rtol=0)


@pytest.mark.parametrize("chunk", [1, 2, 5, 64, None])
@pytest.mark.parametrize("seed", range(3))
def test_chunked_equals_unchunked_values_and_grads(chunk, seed):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(4, 9, 31, generator=g) * 2).requires_grad_()
    labels = torch.randint(0, 31, (4, 9), generator=g)
    w_lp, w_ent = torch.randn(4, 9, generator=g), torch.randn(4, 9, generator=g)
    lp, ent = empg.token_logprobs_and_entropy(logits, labels, temperature=0.7, chunk_size=chunk)
    grad = torch.autograd.grad((lp * w_lp + ent * w_ent).sum(), logits)[0]
    x = logits.detach().double().requires_grad_()
    rlp, rent = ref_lp_ent(x, labels, 0.7)
    rgrad = torch.autograd.grad((rlp * w_lp.double() + rent * w_ent.double()).sum(), x)[0]
    torch.testing.assert_close(lp.double(), rlp, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent.double(), rent, atol=1e-5, rtol=0)
    torch.testing.assert_close(grad.double(), rgrad, atol=1e-5, rtol=1e-4)


def test_gradient_through_only_one_output():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 8, generator=g, requires_grad=True)
    labels = torch.randint(0, 8, (6,), generator=g)
    lp, _ = empg.token_logprobs_and_entropy(logits, labels)
    (gl,) = torch.autograd.grad(lp.sum(), logits)
    x = logits.detach().double().requires_grad_()
    (gr,) = torch.autograd.grad(ref_lp_ent(x, labels)[0].sum(), x)
    torch.testing.assert_close(gl.double(), gr, atol=1e-6, rtol=0)
    _, ent = empg.token_logprobs_and_entropy(logits, labels)
    (ge,) = torch.autograd.grad(ent.sum(), logits)
    (gr,) = torch.autograd.grad(ref_lp_ent(x, labels)[1].sum(), x)
    torch.testing.assert_close(ge.double(), gr, atol=1e-6, rtol=0)


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 6, (5,), generator=g)

    def f(z):
        lp, ent = empg.token_logprobs_and_entropy(z, labels, temperature=1.3, chunk_size=2)
        return lp.double(), ent.double()

    # float32 internal arithmetic: loose finite-difference tolerances
    assert torch.autograd.gradcheck(f, (logits,), eps=1e-3, atol=1e-3, rtol=1e-3)


def test_bf16_in_float32_out():
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(16, 257, generator=g) * 4).to(torch.bfloat16).requires_grad_()
    labels = torch.randint(0, 257, (16,), generator=g)
    lp, ent = empg.token_logprobs_and_entropy(logits, labels, chunk_size=5)
    assert lp.dtype == torch.float32 and ent.dtype == torch.float32
    rlp, rent = ref_lp_ent(logits.detach(), labels)  # reference on the same bf16 values
    torch.testing.assert_close(lp.double(), rlp, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent.double(), rent, atol=1e-5, rtol=0)
    (grad,) = torch.autograd.grad(ent.sum(), logits)
    assert grad.dtype == torch.bfloat16 and torch.isfinite(grad.float()).all()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("chunk", [1, 7, None])
def test_lm_head_matches_plain_float32(seed, chunk):
    g = torch.Generator().manual_seed(seed)
    n_tok, hid, vocab = 23, 16, 97
    hidden = torch.randn(n_tok, hid, generator=g).requires_grad_()
    weight = (torch.randn(vocab, hid, generator=g) * 0.3).requires_grad_()
    labels = torch.randint(0, vocab, (n_tok,), generator=g)
    w1, w2 = torch.randn(n_tok, generator=g), torch.randn(n_tok, generator=g)
    lp, ent = empg.lm_head_logprobs_and_entropy(
        hidden, weight, labels, temperature=0.9, chunk_size=chunk
    )
    gh, gw = torch.autograd.grad((lp * w1 + ent * w2).sum(), (hidden, weight))
    lp2, ent2 = empg.token_logprobs_and_entropy(hidden @ weight.T, labels, temperature=0.9)
    gh2, gw2 = torch.autograd.grad((lp2 * w1 + ent2 * w2).sum(), (hidden, weight))
    for a, b in ((lp, lp2), (ent, ent2), (gh, gh2), (gw, gw2)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # and against an independent float64 autograd reference
    h64 = hidden.detach().double().requires_grad_()
    w64 = weight.detach().double().requires_grad_()
    rlp, rent = ref_lp_ent(h64 @ w64.T, labels, 0.9)
    rgh, rgw = torch.autograd.grad((rlp * w1.double() + rent * w2.double()).sum(), (h64, w64))
    torch.testing.assert_close(lp.double(), rlp, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent.double(), rent, atol=1e-5, rtol=0)
    torch.testing.assert_close(gh.double(), rgh, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gw.double(), rgw, atol=1e-5, rtol=1e-4)


def test_lm_head_batched_shape_and_frozen_weight():
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 5, 8, generator=g, requires_grad=True)
    weight = torch.randn(19, 8, generator=g)  # frozen head (e.g. LoRA training)
    labels = torch.randint(0, 19, (2, 5), generator=g)
    lp, ent = empg.lm_head_logprobs_and_entropy(hidden, weight, labels, chunk_size=3)
    assert lp.shape == ent.shape == (2, 5)
    (gh,) = torch.autograd.grad(ent.sum(), hidden)
    _, ent2 = empg.token_logprobs_and_entropy(hidden @ weight.T, labels)
    (gh2,) = torch.autograd.grad(ent2.sum(), hidden)
    torch.testing.assert_close(gh, gh2, atol=1e-5, rtol=1e-5)


def test_empty_input():
    lp, ent = empg.token_logprobs_and_entropy(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long))
    assert lp.shape == ent.shape == (0,)


def test_no_grad_mode_keeps_nothing():
    logits = torch.randn(4, 6, requires_grad=True)
    with torch.no_grad():
        lp, ent = empg.token_logprobs_and_entropy(logits, torch.zeros(4, dtype=torch.long))
    assert not lp.requires_grad and not ent.requires_grad


@pytest.mark.parametrize(
    ("kwargs", "err", "needle"),
    [
        ({"labels": torch.tensor([0, 9])}, InputError, "labels must lie in [0, 5)"),
        ({"labels": torch.tensor([0, -1])}, InputError, "labels must lie"),
        ({"labels": torch.tensor([0, 1, 2])}, ShapeError, "labels has shape (3,)"),
        ({"labels": torch.tensor([0.0, 1.0])}, InputError, "labels must be an integer"),
        ({"temperature": 0.0}, InputError, "temperature must be > 0"),
        ({"temperature": -1.0}, InputError, "temperature must be > 0"),
        ({"temperature": float("nan")}, InputError, "temperature must be finite"),
        ({"chunk_size": 0}, InputError, "chunk_size must be a positive int"),
    ],
)
def test_bad_input(kwargs, err, needle):
    args = {"logits": torch.randn(2, 5), "labels": torch.tensor([0, 1])}
    args.update(kwargs)
    with pytest.raises(err) as exc:
        empg.token_logprobs_and_entropy(args.pop("logits"), args.pop("labels"), **args)
    assert needle in str(exc.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_logits_rejected(bad):
    logits = torch.randn(3, 5)
    logits[1, 2] = bad
    with pytest.raises(NonFiniteError, match="NaN or inf"):
        empg.token_logprobs_and_entropy(logits, torch.tensor([0, 1, 2]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("t", [0.4, 1.0])
def test_masked_entries_are_probability_zero_however_they_are_masked(dtype, t):
    """-inf (logits processors) and the dtype's most negative float (finfo.min, which a
    temperature below 1 or a cast to float32 would overflow) both mean probability 0: the
    numbers and gradients equal those of the unmasked entries alone."""
    g = torch.Generator().manual_seed(1)
    kept = torch.randn(4, 6, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 3, 5, 2])
    want_lp, want_ent = ref_lp_ent(kept.to(dtype), labels, t)  # the same rounded logits
    for fill in (-float("inf"), torch.finfo(dtype).min):
        logits = torch.cat([kept, torch.full((4, 3), fill, dtype=torch.float64)], dim=1)
        logits = logits.to(dtype).requires_grad_()
        lp, ent = empg.token_logprobs_and_entropy(logits, labels, temperature=t)
        torch.testing.assert_close(lp.double(), want_lp, atol=1e-5, rtol=0)
        torch.testing.assert_close(ent.double(), want_ent, atol=1e-5, rtol=0)
        (grad,) = torch.autograd.grad((lp + ent).sum(), logits)
        assert torch.isfinite(grad).all() and (grad[:, 6:] == 0).all()


def test_a_row_with_every_entry_masked_is_refused():
    logits = torch.randn(3, 5)
    logits[2] = -float("inf")
    with pytest.raises(NonFiniteError, match="every entry of token 2's row"):
        empg.token_logprobs_and_entropy(logits, torch.tensor([0, 1, 2]))


def test_lm_head_bad_input():
    h, w = torch.randn(3, 4), torch.randn(7, 4)
    with pytest.raises(ShapeError, match="hidden must have shape"):
        empg.lm_head_logprobs_and_entropy(torch.randn(3, 5), w, torch.zeros(3, dtype=torch.long))
    with pytest.raises(InputError, match="share dtype"):
        empg.lm_head_logprobs_and_entropy(h.double(), w, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ShapeError, match="weight must have shape"):
        empg.lm_head_logprobs_and_entropy(h, w[None], torch.zeros(3, dtype=torch.long))


# ---- Proposition 1: E_a ||d log pi(a) / dz||^2 = 1 - sum pi^2 = 1 - exp(-H_2) ----------------


def _grad_sq_norm(z: torch.Tensor, a: int) -> float:
    """||d log pi(a) / d z||^2 through the library's log-prob (its hand-written backward)."""
    z = z.clone().requires_grad_()
    lp, _ = empg.token_logprobs_and_entropy(z[None], torch.tensor([a]))
    (g,) = torch.autograd.grad(lp.sum(), z)
    return float((g.double() * g.double()).sum())


@pytest.mark.parametrize("seed", range(6))
def test_proposition_1_exact(seed):
    """E_a ||grad log pi(a)||^2 = 1 - sum p^2 = 1 - exp(-H_2) (the paper's Proposition 1), with
    the gradients the library's backward gives."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(9, generator=g, dtype=torch.float64) * (seed + 1) * 0.7
    p = torch.softmax(z, -1)
    expected = sum(float(p[a]) * _grad_sq_norm(z, a) for a in range(9))
    assert expected == pytest.approx(1.0 - float((p * p).sum()), abs=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_proposition_1_monte_carlo(seed):
    """Sampled actions, each gradient from the library's backward: the Monte-Carlo mean of
    ||grad log pi(a)||^2 matches 1 - sum p^2 within five standard errors."""
    g = torch.Generator().manual_seed(100 + seed)
    rows, n = 20, 500
    z = torch.randn(rows, 12, generator=g, dtype=torch.float64) * 2  # 20 random softmaxes
    p = torch.softmax(z, -1)
    a = torch.multinomial(p, n, replacement=True, generator=g)  # (rows, n) sampled actions
    # every sample gets its own copy of its row's logits, so one backward gives every gradient
    zz = z.repeat_interleave(n, 0).clone().requires_grad_()  # (rows * n, 12)
    lp, _ = empg.token_logprobs_and_entropy(zz, a.reshape(-1))
    (grad,) = torch.autograd.grad(lp.sum(), zz)
    sq = (grad.double() ** 2).sum(-1).view(rows, n)
    mc, se = sq.mean(1), sq.std(1) / math.sqrt(n)
    exact = 1 - (p * p).sum(-1)
    assert bool(((mc - exact).abs() <= 5 * se + 1e-12).all())


def test_entropy_stays_float32_under_bf16_autocast():
    """Autocast puts bmm on its bf16 list; the entropy reduction must not be rounded to bf16
    (near-uniform rows would all get the same entropy and EMPG's normalisation would collapse)."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 300, generator=g) * 1e-3  # near-uniform, entropies differ slightly
    labels = torch.randint(0, 300, (16,), generator=g)
    lp, ent = empg.token_logprobs_and_entropy(logits, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lp_a, ent_a = empg.token_logprobs_and_entropy(logits, labels)
    assert ent_a.dtype == torch.float32
    torch.testing.assert_close(ent_a, ent, rtol=0, atol=0)
    torch.testing.assert_close(lp_a, lp, rtol=0, atol=0)
    assert float(ent.std()) > 0


def test_lm_head_gradients_are_right_when_backward_runs_outside_autocast():
    """Forward under bf16 autocast, backward after leaving it (PyTorch's recommended pattern):
    the backward recomputes the logits in the forward's bf16, so its softmax matches the saved
    log-sum-exp and the gradients equal those of a backward inside autocast."""
    g = torch.Generator().manual_seed(2)
    hidden = torch.randn(12, 32, generator=g).requires_grad_()
    weight = (torch.randn(50, 32, generator=g) * 0.5).requires_grad_()
    labels = torch.randint(0, 50, (12,), generator=g)
    grads = []
    for inside in (True, False):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lp, ent = empg.lm_head_logprobs_and_entropy(hidden, weight, labels)
            loss = (lp + 0.5 * ent).sum()
            if inside:
                grads.append(torch.autograd.grad(loss, (hidden, weight)))
        if not inside:
            grads.append(torch.autograd.grad(loss, (hidden, weight)))
    (gh_in, gw_in), (gh_out, gw_out) = grads
    # the same softmax; only the final matmuls' precision may differ (bf16 inside autocast)
    torch.testing.assert_close(gh_out, gh_in, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(gw_out, gw_in, atol=2e-2, rtol=2e-2)
