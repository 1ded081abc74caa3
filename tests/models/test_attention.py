"""The grouped-query SDPA attention equals transformers' "sdpa" on padded batches."""

from __future__ import annotations

import copy

import pytest
import torch

from empg.models.attention import NAME, use_gqa_attention
from tiny_hf import tiny_qwen2


def _model(kv_heads: int):
    model = tiny_qwen2(97, hidden=32, kv_heads=kv_heads, max_positions=128)
    model.set_attn_implementation("sdpa")
    return model.eval()


def _batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 97, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[0, :5] = 0  # left padding
    mask[1, :2] = 0
    mask[2, 4:7] = 0  # a gap in the middle, as prefix reuse makes
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    return ids, mask, pos


@pytest.mark.parametrize("kv_heads", [1, 2])
def test_forward_backward_and_cached_decoding_equal_sdpa(kv_heads):
    ref = _model(kv_heads)
    new = copy.deepcopy(ref)
    assert use_gqa_attention(new) and new.config._attn_implementation == NAME
    ids, mask, pos = _batch()
    outs = []
    for m in (ref, new):
        m.zero_grad()
        out = m(input_ids=ids, attention_mask=mask, position_ids=pos)
        loss = (out.logits.log_softmax(-1)[..., 5] * mask).sum()
        loss.backward()
        outs.append((out.logits.detach(), [p.grad.clone() for p in m.parameters()]))
    real = mask.bool()
    torch.testing.assert_close(outs[1][0][real], outs[0][0][real], atol=1e-5, rtol=1e-5)
    for a, b in zip(outs[1][1], outs[0][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    # one cached decoding step (query length 1) after the prefill
    with torch.no_grad():
        steps = []
        for m in (ref, new):
            pre = m(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
            nxt = torch.tensor([[3], [4], [5]])
            m2 = torch.cat([mask, torch.ones(3, 1, dtype=mask.dtype)], 1)
            step = m(
                input_ids=nxt,
                attention_mask=m2,
                position_ids=mask.sum(-1, keepdim=True),
                past_key_values=pre.past_key_values,
                use_cache=True,
            )
            steps.append(step.logits)
    torch.testing.assert_close(steps[1], steps[0], atol=1e-5, rtol=1e-5)


def test_models_without_grouped_heads_or_sdpa_are_left_alone(tmp_path):
    assert not use_gqa_attention(_model(4))  # as many KV heads as query heads
    m = _model(2)
    m.set_attn_implementation("eager")
    assert not use_gqa_attention(m)
    m = _model(2)
    assert use_gqa_attention(m)
    m.save_pretrained(tmp_path)  # the implementation name is not written to the checkpoint
    assert NAME not in (tmp_path / "config.json").read_text()
