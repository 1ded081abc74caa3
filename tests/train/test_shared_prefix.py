"""Shared prompt prefixes in recomputation and update: the same log-probs, entropies and
gradients as running every row in full, with the prefix run once per micro-batch."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from train_helpers import assert_shared_prefix_matches_full_rows

from empg.train.config import AlgoConfig, OptimConfig, load_config
from empg.train.policy import (
    MICRO_BATCH_OVERHEAD,
    MIN_SHARED_PREFIX,
    common_prefix_len,
    micro_batches,
    pack_rows,
    response_logprobs_and_entropy,
)
from empg.train.trainer import load_model
from empg.train.update import UpdateBatch, ppo_update, recompute_logprobs


def _model(policy_dir):
    model, _ = load_model(load_config(None, [f"model.path={policy_dir}"]))
    return model.float()


def _rows(vocab: int, seed: int = 0):
    """Two tasks: each has a 30-token prefix shared by its rows; one row's prompt is exactly
    the shared prefix plus one token (the cap at prompt length - 1 matters there)."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda n: torch.randint(3, vocab, (n,), generator=g).tolist()
    prompts, responses = [], []
    for _task in range(2):
        head = rand(30)
        for extra in (1, 7, 12, 4, 20):
            prompts.append(head + rand(extra))
            responses.append(rand(int(torch.randint(1, 8, (1,), generator=g))))
    prompts.append(rand(9))  # a row of its own
    responses.append(rand(3))
    return prompts, responses


def test_pack_rows_splits_the_longest_common_prefix():
    a = list(range(10, 50))
    prompts = [[*a, 1, 2], [*a, 3], [*a[:25], 4, 5]]
    rows = pack_rows(prompts, [[7], [8, 9], [6]], 0, share_prefix=True)
    assert rows.prefix_ids.tolist() == a[:25]
    assert rows.input_ids[1, :3].tolist() == a[25:28]
    # capped so that every row keeps at least one prompt token
    rows = pack_rows([a, [*a, 1]], [[7], [8]], 0, share_prefix=True)
    assert rows.prefix_ids.tolist() == a[:-1]
    assert rows.input_ids[0, :2].tolist() == [a[-1], 7]
    # too short, a single row, or switched off: no prefix
    short = [[*a[: MIN_SHARED_PREFIX - 1], 1], [*a[: MIN_SHARED_PREFIX - 1], 2]]
    assert pack_rows(short, [[7], [8]], 0, share_prefix=True).prefix_ids is None
    assert pack_rows([a], [[7]], 0, share_prefix=True).prefix_ids is None
    assert pack_rows(prompts, [[7], [8, 9], [6]], 0).prefix_ids is None
    with pytest.raises(ValueError, match="empty prompt"):
        pack_rows([a, []], [[7], [8]], 0, share_prefix=True)


def _plan_cost(batches, prompts, responses) -> float:
    """Tokens a plan runs (plain loop): each batch's shared prefix once, the rest padded."""
    cost = 0.0
    for b in batches:
        shared = 0
        if len(b) > 1:
            shared = min(len(prompts[i]) for i in b) - 1
            for i in b[1:]:
                shared = min(shared, common_prefix_len(prompts[b[0]], prompts[i]))
            shared = shared if shared >= MIN_SHARED_PREFIX else 0
        width = max(len(prompts[i]) + len(responses[i]) for i in b) - shared
        cost += MICRO_BATCH_OVERHEAD + shared + len(b) * width
    return cost


def test_micro_batches_partition_and_minimise_the_tokens_run():
    prompts, responses = _rows(50)
    rows = list(range(len(prompts)))
    plain = micro_batches(rows, prompts, responses, 4)
    by_len = sorted(rows, key=lambda i: len(prompts[i]) + len(responses[i]))
    assert plain == [by_len[a : a + 4] for a in range(0, len(rows), 4)]
    for size in (1, 3, 4, 64):
        shared = micro_batches(rows, prompts, responses, size, share_prefix=True)
        assert sorted(i for b in shared for i in b) == rows
        assert all(1 <= len(b) <= size for b in shared)
        # the plan is the cheapest cut of the prompt-sorted rows into contiguous runs
        order = [i for b in shared for i in b]
        assert order == sorted(rows, key=lambda i: (tuple(prompts[i]), len(responses[i]), i))
        best = min(
            _plan_cost(
                [order[a:b] for a, b in itertools.pairwise([0, *cuts, len(order)])],
                prompts,
                responses,
            )
            for k in range(len(order))
            for cuts in itertools.combinations(range(1, len(order)), k)
            if all(b - a <= size for a, b in itertools.pairwise([0, *cuts, len(order)]))
        )
        assert _plan_cost(shared, prompts, responses) == best
        assert _plan_cost(shared, prompts, responses) <= _plan_cost(
            [order[a : a + size] for a in range(0, len(order), size)], prompts, responses
        )
    # with room for them, each task's rows share one micro-batch and the stray row is alone
    big = micro_batches(rows, prompts, responses, 64, share_prefix=True)
    assert sorted(sorted(b) for b in big) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10]]
    with pytest.raises(ValueError, match="micro-batch size"):
        micro_batches(rows, prompts, responses, 0)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_shared_prefix_forward_and_backward_match_full_rows(tiny_policy_dir, temperature):
    model = _model(tiny_policy_dir).train()
    vocab = model.get_output_embeddings().weight.shape[0]
    prompts, responses = _rows(vocab)
    idx = list(range(5))  # the first task's rows
    sub_p, sub_r = [prompts[i] for i in idx], [responses[i] for i in idx]
    assert_shared_prefix_matches_full_rows(model, sub_p, sub_r, temperature)


def test_shared_prefix_with_restricted_tokens(tiny_policy_dir):
    model = _model(tiny_policy_dir).eval()
    vocab = model.get_output_embeddings().weight.shape[0]
    prompts, responses = _rows(vocab, seed=1)
    prompts, responses = prompts[:5], responses[:5]
    allowed = [
        [None if j % 2 else tuple(sorted({y, 3, 4, 5})) for j, y in enumerate(r)] for r in responses
    ]
    outs = []
    for share in (False, True):
        rows = pack_rows(prompts, responses, 0, allowed=allowed, share_prefix=share)
        with torch.no_grad():
            outs.append(response_logprobs_and_entropy(model, rows, temperature=0.7))
    torch.testing.assert_close(outs[1][0], outs[0][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs[1][1], outs[0][1], atol=1e-5, rtol=1e-5)


def test_recompute_and_update_with_and_without_shared_prefix(tiny_policy_dir):
    base = _model(tiny_policy_dir)
    vocab = base.get_output_embeddings().weight.shape[0]
    prompts, responses = _rows(vocab, seed=2)
    got = {}
    for share in (False, True):
        model = copy.deepcopy(base)
        lp, ent, mask = recompute_logprobs(
            model, prompts, responses, pad_id=0, micro_batch=4, share_prefix=share
        )
        got[share] = (lp, ent, mask)
        adv = torch.linspace(-1.0, 1.0, len(prompts))
        # plain SGD: Adam's first steps are sign-like and would amplify float noise in
        # near-zero gradients into full-size steps
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        batch = UpdateBatch(prompts, responses, lp, mask, adv)
        metrics, _ = ppo_update(
            model,
            opt,
            batch,
            AlgoConfig(),
            OptimConfig(mini_batch_steps=8, micro_batch_steps=3),
            pad_id=0,
            generator=torch.Generator().manual_seed(0),
            share_prefix=share,
        )
        assert metrics["actor/updates"] == 2
        got[share] += (torch.cat([p.detach().flatten() for p in model.parameters()]),)
    for a, b in zip(got[True], got[False], strict=True):
        if a.dtype == torch.bool:
            assert torch.equal(a, b)
        else:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    start = torch.cat([p.detach().flatten() for p in base.parameters()])
    assert float((got[True][3] - start).abs().max()) > 1e-4  # the update moved the weights


def test_caches_of_another_kind_fall_back_to_full_rows(tiny_policy_dir, monkeypatch):
    """A model whose cache layers are not plain DynamicLayers (e.g. sliding-window ones) runs
    the prefix and the rows together instead; the result is the same."""
    import transformers.cache_utils as cache_utils

    model = _model(tiny_policy_dir).eval()
    vocab = model.get_output_embeddings().weight.shape[0]
    prompts, responses = _rows(vocab, seed=3)
    prompts, responses = prompts[:5], responses[:5]
    with torch.no_grad():
        want = response_logprobs_and_entropy(model, pack_rows(prompts, responses, 0))
        monkeypatch.setattr(cache_utils, "DynamicLayer", type("OtherLayer", (), {}))
        rows = pack_rows(prompts, responses, 0, share_prefix=True)
        assert rows.prefix_ids is not None
        got = response_logprobs_and_entropy(model, rows)
    torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1], want[1], atol=1e-5, rtol=1e-5)
