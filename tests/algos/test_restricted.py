"""Log-probs and entropies of a distribution restricted to allowed tokens."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import empg
from empg.algos.restricted import pad_allowed, restricted_logprobs_and_entropy
from empg.errors import InputError, ShapeError


def test_hand_computed_values():
    # allowed logits (1, 2) for label 2 of [0, 1, 2]: p = (e^1, e^2) / (e^1 + e^2)
    logits = torch.tensor([[0.0, 1.0, 2.0]])
    sets = pad_allowed([[1, 2]], [2])
    sub = logits.gather(1, sets.ids)
    lp, ent = restricted_logprobs_and_entropy(sub, sets.valid, sets.label_index)
    z = math.exp(1) + math.exp(2)
    p1, p2 = math.exp(1) / z, math.exp(2) / z
    assert lp.item() == pytest.approx(math.log(p2), abs=1e-6)
    assert ent.item() == pytest.approx(-(p1 * math.log(p1) + p2 * math.log(p2)), abs=1e-6)


def _plain(logits_row, allowed, label, temperature):
    """Reference: full-vocabulary softmax with every other token's logit at -inf, by a loop."""
    z = [logits_row[j] / temperature for j in allowed]
    m = max(z)
    s = sum(math.exp(x - m) for x in z)
    logp = {j: x - m - math.log(s) for j, x in zip(allowed, z, strict=True)}
    return logp[label], -sum(math.exp(v) * v for v in logp.values())


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 10_000),
    st.lists(st.integers(1, 7), min_size=1, max_size=6),
    st.sampled_from([0.4, 1.0, 1.7]),
)
def test_matches_a_plain_loop(seed, sizes, temperature):
    g = torch.Generator().manual_seed(seed)
    vocab = 9
    logits = torch.randn(len(sizes), vocab, generator=g, dtype=torch.float64) * 3
    allowed, labels = [], []
    for n in sizes:
        ids = torch.randperm(vocab, generator=g)[:n].tolist()
        allowed.append(ids)
        labels.append(ids[int(torch.randint(n, (1,), generator=g))])
    sets = pad_allowed(allowed, labels)
    lp, ent = restricted_logprobs_and_entropy(
        logits.gather(1, sets.ids), sets.valid, sets.label_index, temperature=temperature
    )
    for c in range(len(sizes)):
        ref_lp, ref_ent = _plain(logits[c].tolist(), allowed[c], labels[c], temperature)
        assert lp[c].item() == pytest.approx(ref_lp, abs=1e-5)
        assert ent[c].item() == pytest.approx(ref_ent, abs=1e-5)


def test_gradient_matches_full_vocabulary_masked_softmax():
    torch.manual_seed(0)
    logits = torch.randn(4, 11, dtype=torch.float64)
    allowed = [[3, 5, 7], [0], [1, 2, 9, 10], [4, 6]]
    labels = [5, 0, 10, 4]
    sets = pad_allowed(allowed, labels)
    w = torch.randn(4, dtype=torch.float64)
    a = logits.clone().requires_grad_(True)
    lp, ent = restricted_logprobs_and_entropy(
        a.gather(1, sets.ids), sets.valid, sets.label_index, temperature=0.7
    )
    ((lp * w).sum() + (ent * w).sum()).backward()
    b = logits.clone().requires_grad_(True)
    keep = torch.zeros(4, 11, dtype=torch.bool)
    for c, ids in enumerate(allowed):
        keep[c, ids] = True
    z = (b / 0.7).masked_fill(~keep, -1e30)  # finite stand-in for -inf in the reference
    logp = torch.log_softmax(z, -1)
    ref_lp = logp.gather(1, torch.tensor(labels)[:, None]).squeeze(1)
    ref_ent = -(logp.exp() * logp.masked_fill(~keep, 0)).sum(-1)
    ((ref_lp * w).sum() + (ref_ent * w).sum()).backward()
    assert lp.dtype == ent.dtype == torch.float32  # computed in float32, like the entropy path
    torch.testing.assert_close(lp, ref_lp.float(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ent, ref_ent.float(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-5)
    assert torch.isfinite(a.grad).all()


def test_forced_token_has_zero_logprob_entropy_and_gradient():
    logits = torch.randn(1, 5, requires_grad=True)
    sets = pad_allowed([[2]], [2])
    lp, ent = restricted_logprobs_and_entropy(
        logits.gather(1, sets.ids), sets.valid, sets.label_index
    )
    assert lp.item() == 0.0 and ent.item() == 0.0
    (lp + ent).sum().backward()
    assert torch.count_nonzero(logits.grad) == 0


def test_padding_columns_are_ignored_whatever_they_hold():
    sets = pad_allowed([[1, 2, 3], [4]], [2, 4])
    sub = torch.tensor([[0.5, 1.0, -2.0], [0.3, float("nan"), float("inf")]])
    lp, ent = restricted_logprobs_and_entropy(sub, sets.valid, sets.label_index)
    assert torch.isfinite(lp).all() and torch.isfinite(ent).all()
    assert lp[1].item() == 0.0


def test_pad_allowed_layout_and_duplicates():
    sets = pad_allowed([[7, 3, 7], [2]], [3, 2])
    assert sets.ids.tolist() == [[7, 3], [2, 2]]
    assert sets.valid.tolist() == [[True, True], [True, False]]
    assert sets.label_index.tolist() == [1, 0]


def test_input_errors():
    with pytest.raises(InputError, match="not in its allowed set"):
        pad_allowed([[1, 2]], [3])
    with pytest.raises(InputError, match="empty"):
        pad_allowed([[]], [3])
    with pytest.raises(ShapeError):
        pad_allowed([[1]], [1, 2])
    with pytest.raises(ShapeError):
        restricted_logprobs_and_entropy(
            torch.zeros(2, 3), torch.ones(2, 2, dtype=torch.bool), torch.zeros(2, dtype=torch.long)
        )
    with pytest.raises(InputError, match="padding"):
        restricted_logprobs_and_entropy(
            torch.zeros(1, 2), torch.tensor([[True, False]]), torch.tensor([1])
        )
    with pytest.raises(InputError):
        restricted_logprobs_and_entropy(
            torch.zeros(1, 2), torch.tensor([[True, True]]), torch.tensor([0]), temperature=0
        )


def test_exported_at_top_level():
    assert empg.restricted_logprobs_and_entropy is restricted_logprobs_and_entropy
    assert empg.pad_allowed is pad_allowed
