"""KV caches with room reserved for the response: the same numbers as transformers' torch.cat."""

from __future__ import annotations

import pytest
import torch
from test_generation import prompts

from empg.agent.generation import GenerationConfig, HFBackend, PrefixCache

transformers = pytest.importorskip("transformers")
from transformers import DynamicCache  # noqa: E402
from transformers.cache_utils import DynamicLayer  # noqa: E402

from empg.agent.kv_room import RoomyLayer, reserve_kv_room  # noqa: E402


def _two_turns(backend, tokenizer, cfg):
    """Two calls with a prefix cache (turn 2 reuses turn 1's prompts), 16 rows each."""
    first = prompts(tokenizer) * 4
    extra = tokenizer.encode(" Nothing happens. You arrive at drawer 1.")
    second = [p + extra for p in first]
    cache = PrefixCache()
    keys = list(range(len(first)))
    return [
        *backend.generate(first, cfg, prefix_cache=cache, keys=keys),
        *backend.generate(second, cfg, prefix_cache=cache, keys=keys),
    ]


@pytest.mark.parametrize("temperature", [0.8, 1.3])
def test_reserved_room_gives_the_bits_of_torch_cat(model, tokenizer, temperature, monkeypatch):
    """Rows finishing at different steps (the batch shrinks) and reused prompt prefixes:
    tokens, log-probs and entropies equal the plain DynamicCache's to the bit."""
    writes = []
    update = RoomyLayer.update
    monkeypatch.setattr(RoomyLayer, "update", lambda s, *a: writes.append(1) or update(s, *a))
    cfg = GenerationConfig(max_new_tokens=20, temperature=temperature, stop_strings=("e",), seed=4)
    roomy, plain = HFBackend(model, tokenizer), HFBackend(model, tokenizer)
    plain.reserve_kv = False
    a = _two_turns(roomy, tokenizer, cfg)
    assert writes  # the roomy layers did the decoding
    writes.clear()
    b = _two_turns(plain, tokenizer, cfg)
    assert not writes
    assert len({len(o) for o in a}) > 1  # rows did finish at different steps
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.token_ids, y.token_ids)
        assert torch.equal(x.logprobs, y.logprobs)
        assert torch.equal(x.entropies, y.entropies)


def _filled(batch=3, heads=2, length=5, dim=4, layers=2):
    g = torch.Generator().manual_seed(0)
    data = [
        (
            torch.randn(batch, heads, length, dim, generator=g),
            torch.randn(batch, heads, length, dim, generator=g),
        )
        for _ in range(layers)
    ]
    return DynamicCache(ddp_cache_data=data), data


def test_a_roomy_layer_grows_crops_and_selects_rows_like_a_dynamic_layer():
    cache, data = _filled()
    assert reserve_kv_room(cache, 1)
    assert all(type(x) is RoomyLayer for x in cache.layers)
    ref = [list(kv) for kv in data]
    g = torch.Generator().manual_seed(1)
    for _ in range(3):  # 2 tokens a step: the first outgrows the 1 position reserved
        for li in range(len(data)):
            k, v = torch.randn(3, 2, 2, 4, generator=g), torch.randn(3, 2, 2, 4, generator=g)
            keys, values = cache.update(k, v, li)
            ref[li] = [torch.cat([ref[li][0], k], -2), torch.cat([ref[li][1], v], -2)]
            assert torch.equal(keys, ref[li][0]) and torch.equal(values, ref[li][1])
    assert cache.get_seq_length() == 11
    sel = torch.tensor([2, 0])
    cache.batch_select_indices(sel)
    cache.crop(-3)
    for layer, (k, v) in zip(cache.layers, ref, strict=True):
        assert torch.equal(layer.keys, k[sel][:, :, :8]) and torch.equal(
            layer.values, v[sel][:, :, :8]
        )
    assert cache.get_seq_length() == 8


def test_other_caches_are_left_alone():
    assert not reserve_kv_room(DynamicCache(), 4)  # nothing prefilled

    class Sliding(DynamicLayer):
        is_sliding = True

    cache, _ = _filled()
    other = Sliding()
    other.update(torch.zeros(3, 2, 5, 4), torch.zeros(3, 2, 5, 4))
    cache.layers[1] = other
    assert not reserve_kv_room(cache, 4)
    assert type(cache.layers[0]) is DynamicLayer and cache.layers[1] is other
