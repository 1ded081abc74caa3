"""HFBackend: recorded log-probs/entropies match a full forward pass, seeds, stops, padding."""

from __future__ import annotations

import pytest
import torch

import empg
from empg.agent.generation import GenerationConfig, HFBackend, sample_next
from empg.errors import ConfigError, InputError

TEXTS = [
    "You are in the middle of a room.",
    "Your task is to: put a clean apple in fridge. You see a cabinet 1, a cabinet 2, a "
    "countertop 1, a drawer 1, a fridge 1, a microwave 1, a sinkbasin 1 and a toaster 1.",
    "go to",
    "<think>I need the apple.</think><action>take apple 1 from countertop 1</action> Nothing "
    "happens. You arrive at countertop 1. On the countertop 1, you see an apple 1.",
]


@pytest.fixture(scope="module")
def backend(model, tokenizer):
    return HFBackend(model, tokenizer)


def prompts(tokenizer):
    return [tokenizer.encode(t) for t in TEXTS]


def full_forward(model, prompt_ids, outs, temperature):
    """Log-probs/entropies of the generated tokens from ONE forward pass over prompt+response,
    left-padded, computed with the core's token_logprobs_and_entropy."""
    seqs = [list(p) + o.token_ids.tolist() for p, o in zip(prompt_ids, outs, strict=True)]
    width = max(len(s) for s in seqs)
    ids = torch.zeros((len(seqs), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(s)
        mask[i, width - len(s) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    res = []
    for i, o in enumerate(outs):
        t = len(o)
        lg = logits[i, width - t - 1 : width - 1]  # positions that predict the response
        res.append(empg.token_logprobs_and_entropy(lg, o.token_ids, temperature=temperature))
    return res


@pytest.mark.parametrize(("temperature", "top_p"), [(1.0, 1.0), (0.7, 0.9), (0.0, 1.0), (1.3, 0.5)])
def test_recorded_numbers_match_full_forward(backend, model, tokenizer, temperature, top_p):
    p = prompts(tokenizer)
    cfg = GenerationConfig(max_new_tokens=12, temperature=temperature, top_p=top_p, seed=3)
    outs = backend.generate(p, cfg)
    ref = full_forward(model, p, outs, temperature if temperature > 0 else 1.0)
    for o, (lp, ent) in zip(outs, ref, strict=True):
        assert o.logprobs.dtype == torch.float32 and o.entropies.dtype == torch.float32
        assert o.logprobs.shape == o.entropies.shape == o.token_ids.shape
        torch.testing.assert_close(o.logprobs, lp, atol=1e-4, rtol=0)
        torch.testing.assert_close(o.entropies, ent, atol=1e-4, rtol=0)


def test_greedy_tokens_are_argmax_of_full_forward(backend, model, tokenizer):
    p = prompts(tokenizer)
    outs = backend.generate(p, GenerationConfig(max_new_tokens=8, temperature=0, stop_strings=()))
    seqs = [list(a) + o.token_ids.tolist() for a, o in zip(p, outs, strict=True)]
    for s, o in zip(seqs, outs, strict=True):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([s])).logits[0]
        t = len(o)
        assert logits[len(s) - t - 1 : len(s) - 1].argmax(-1).tolist() == o.token_ids.tolist()


def test_left_padding_alone_equals_in_batch(backend, tokenizer):
    cfg = GenerationConfig(max_new_tokens=10, temperature=0, stop_strings=())
    p = prompts(tokenizer)
    short = p[2]  # the shortest prompt, padded most in the batch
    assert len(short) < min(len(x) for i, x in enumerate(p) if i != 2)
    alone = backend.generate([short], cfg)[0]
    batched = backend.generate(p, cfg)[2]
    assert alone.token_ids.tolist() == batched.token_ids.tolist()
    torch.testing.assert_close(alone.logprobs, batched.logprobs, atol=1e-4, rtol=0)


def test_same_seed_same_tokens_different_seed_differs(backend, tokenizer):
    p = prompts(tokenizer)
    cfg = GenerationConfig(max_new_tokens=10, seed=11, stop_strings=())
    a = backend.generate(p, cfg)
    b = backend.generate(p, cfg)
    c = backend.generate(p, GenerationConfig(max_new_tokens=10, seed=12, stop_strings=()))
    assert [o.token_ids.tolist() for o in a] == [o.token_ids.tolist() for o in b]
    assert [o.token_ids.tolist() for o in a] != [o.token_ids.tolist() for o in c]
    # an explicit generator continues its stream: two calls differ, re-seeding repeats them
    g = torch.Generator().manual_seed(5)
    first = backend.generate(p, cfg, generator=g)
    second = backend.generate(p, cfg, generator=g)
    again = backend.generate(p, cfg, generator=torch.Generator().manual_seed(5))
    assert [o.token_ids.tolist() for o in first] != [o.token_ids.tolist() for o in second]
    assert [o.token_ids.tolist() for o in first] == [o.token_ids.tolist() for o in again]


def test_stop_string_ends_at_first_occurrence(backend, tokenizer):
    # a random model emits the letter "e" often: make it a stop string
    p = prompts(tokenizer) * 4
    outs = backend.generate(p, GenerationConfig(max_new_tokens=40, stop_strings=("e",), seed=0))
    reasons = [o.finish_reason for o in outs]
    assert "stop" in reasons
    for o in outs:
        ids = o.token_ids.tolist()
        before = tokenizer.decode(ids[:-1], skip_special_tokens=True)
        assert "e" not in before  # nothing before the last token completed a stop string
        if o.finish_reason == "stop":
            assert "e" in o.text
        elif o.finish_reason == "length":
            assert len(ids) == 40 and "e" not in o.text
        else:
            assert ids[-1] == tokenizer.eos_token_id


def test_multi_token_stop_string(format_model, tokenizer):
    """The format-trained fixture model writes '</action>' (several tokens): rows stop on the
    token that completes it, wherever in the batch they are."""
    from agent_helpers import FORMAT_PROMPT

    from empg.agent import build_messages, render_prompt

    stop = "</action>"
    assert len(tokenizer.encode(stop)) > 1
    obs = "You are in the middle of a room. Looking around you, you see a drawer 1."
    text = render_prompt(
        build_messages("household", "put a cup in drawer.", obs, (), None, FORMAT_PROMPT)
    )
    p = [tokenizer.encode(text)] * 16 + prompts(tokenizer)
    outs = HFBackend(format_model, tokenizer).generate(
        p, GenerationConfig(max_new_tokens=30, stop_strings=(stop,), seed=0)
    )
    assert sum(o.finish_reason == "stop" for o in outs) >= 4
    for o in outs:
        if o.finish_reason == "stop":
            assert stop in o.text
            assert stop not in tokenizer.decode(o.token_ids[:-1].tolist())
        else:
            assert stop not in o.text


def test_early_finishers_leave_the_batch(backend, model, tokenizer):
    """Rows that finish early stop costing compute: count the rows fed to the model."""
    seen: list[int] = []
    hook = model.register_forward_pre_hook(
        lambda mod, args, kw: seen.append(kw["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        p = prompts(tokenizer) * 4
        outs = backend.generate(p, GenerationConfig(max_new_tokens=25, stop_strings=("e",), seed=2))
    finally:
        hook.remove()
    lengths = sorted(len(o) for o in outs)
    assert lengths[0] < lengths[-1]  # some rows did finish early
    # prefill has all 16 rows; decode call j (producing token j+1) runs the rows still going
    expected = [len(p)] + [sum(n > j for n in lengths) for j in range(1, max(lengths))]
    assert seen == expected
    assert sum(seen[1:]) < len(p) * (max(lengths) - 1)


def test_eos_from_generation_config_is_kept_and_ends_the_row(tokenizer):
    """EOS ids come from the tokenizer AND model.generation_config (which may list several)."""
    from agent_helpers import tiny_qwen2

    m = tiny_qwen2(len(tokenizer), seed=4)
    eos = set(range(2, 120))
    m.generation_config.eos_token_id = sorted(eos)
    b = HFBackend(m, tokenizer)
    assert b.eos_ids == eos | {tokenizer.eos_token_id}
    outs = b.generate(prompts(tokenizer) * 3, GenerationConfig(max_new_tokens=20, seed=0))
    assert {o.finish_reason for o in outs} >= {"eos"}
    for o in outs:
        ids = o.token_ids.tolist()
        assert not (set(ids[:-1]) & b.eos_ids)
        assert (ids[-1] in b.eos_ids) == (o.finish_reason == "eos")


def test_top_p_samples_inside_the_nucleus():
    torch.manual_seed(0)
    logits = torch.randn(64, 50) * 3
    cfg = GenerationConfig(temperature=1.0, top_p=0.5)
    tok = sample_next(logits, cfg, torch.Generator().manual_seed(0))
    probs = torch.softmax(logits, -1)
    for i in range(64):
        ahead = probs[i][probs[i] > probs[i, tok[i]]].sum()
        assert float(ahead) < 0.5
    greedy = sample_next(logits, GenerationConfig(temperature=0), None)
    assert greedy.tolist() == logits.argmax(-1).tolist()
    tiny = sample_next(logits, GenerationConfig(top_p=1e-6), torch.Generator().manual_seed(1))
    assert tiny.tolist() == logits.argmax(-1).tolist()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temperature": -1.0}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"stop_strings": "</action>"}, "tuple"),
        ({"stop_strings": ("",)}, "non-empty"),
        ({"stop_strings": None}, r"\(\) for none"),
        ({"seed": -3}, "seed"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        GenerationConfig(**kwargs)


def test_input_errors(backend):
    with pytest.raises(InputError, match="empty prompt"):
        backend.generate([[1, 2], []], GenerationConfig())
    with pytest.raises(InputError, match="GenerationConfig"):
        backend.generate([[1, 2]], {"max_new_tokens": 3})
    assert backend.generate([], GenerationConfig()) == []
    with pytest.raises(InputError, match="encode text first"):
        backend.generate(["go to fridge 1"], GenerationConfig())
    with pytest.raises(InputError, match="integer token ids"):
        backend.generate([[1, 2.5]], GenerationConfig())
    vocab = backend.model.get_input_embeddings().weight.shape[0]
    with pytest.raises(
        InputError, match=rf"prompt 1 holds ids outside .* {vocab}: \[{vocab}, -1\]"
    ):
        backend.generate([[1, 2], [vocab, 3, -1]], GenerationConfig())
    # 0-d tensor ids and tensor rows are token ids too
    ok = backend.generate([torch.tensor([1, 2]), [torch.tensor(3)]], GenerationConfig(seed=0))
    assert len(ok) == 2


def test_react_tags_registered_as_special_tokens_are_kept(tokenizer):
    """Tokenizers may make <think>/<action> special tokens: decoding and stop strings keep them."""
    import copy

    from agent_helpers import tiny_qwen2

    from empg.agent.generation import HFBackend

    tok = copy.deepcopy(tokenizer)
    tok.add_special_tokens(
        {"additional_special_tokens": ["<think>", "</think>", "<action>", "</action>"]}
    )
    backend = HFBackend(tiny_qwen2(len(tok)), tok)
    text = "<think>the mug is here</think><action>take mug 1 from desk 1</action>"
    ids = backend.encode(text)
    assert tok.convert_tokens_to_ids("</action>") in ids  # one special token
    assert backend.decode([*ids, tok.eos_token_id, tok.pad_token_id]) == text
    assert backend._hit_stop(ids, ("</action>",))
    assert not backend._hit_stop(ids[:-1], ("</action>",))


def test_inverse_cdf_sampling_matches_the_weights():
    """sample_next draws each token with its softmax probability; zero-weight (top-p cut)
    tokens never come up."""
    n = 200_000
    logits = torch.log(torch.tensor([0.1, 0.25, 0.05, 0.6])).repeat(n, 1)
    tok = sample_next(logits, GenerationConfig(temperature=1.0), torch.Generator().manual_seed(0))
    freq = torch.bincount(tok, minlength=4).double() / n
    expect = torch.tensor([0.1, 0.25, 0.05, 0.6], dtype=torch.float64)
    sigma = (expect * (1 - expect) / n).sqrt()
    assert ((freq - expect).abs() < 5 * sigma).all(), (freq, expect)
    # top_p=0.8 keeps 0.6 and 0.25 (the mass ahead of 0.1 is 0.85 >= 0.8): renormalised 12/17, 5/17
    tok = sample_next(logits, GenerationConfig(top_p=0.8), torch.Generator().manual_seed(1))
    freq = torch.bincount(tok, minlength=4).double() / n
    assert freq[0] == 0 and freq[2] == 0
    assert abs(float(freq[3]) - 12 / 17) < 5 * (12 / 17 * 5 / 17 / n) ** 0.5
    # one positive weight anywhere in the row (trailing zeros included) is always the draw
    from empg.agent.generation import _inverse_cdf

    w = torch.zeros(1000, 7)
    w[torch.arange(1000), torch.arange(1000) % 7] = 3.0
    drawn = _inverse_cdf(w, torch.Generator().manual_seed(2))
    assert drawn.tolist() == (torch.arange(1000) % 7).tolist()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sampling_on_cuda_with_a_cpu_generator_draws_the_cpu_tokens():
    """The trainer's generators live on the CPU; logits on a GPU must sample, and the same
    tokens as the same logits on the CPU (the uniform draws come from the CPU generator)."""
    logits = torch.randn(64, 500, generator=torch.Generator().manual_seed(0))
    cfg = GenerationConfig(temperature=0.7, top_p=0.9)
    on_cpu = sample_next(logits, cfg, torch.Generator().manual_seed(3))
    on_gpu = sample_next(logits.cuda(), cfg, torch.Generator().manual_seed(3))
    assert on_gpu.device.type == "cuda"
    assert on_gpu.cpu().tolist() == on_cpu.tolist()


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_prefix_cache_equals_full_prefill(backend, tokenizer, temperature):
    """Turn 2 prompts that extend, partly share or repeat turn 1's: with the cache only the
    tokens after the common prefix run, and tokens and numbers equal a full prefill."""
    from empg.agent.generation import PrefixCache

    first = prompts(tokenizer)
    extra = tokenizer.encode(" Nothing happens. You arrive at drawer 1.")
    second = [
        first[0] + extra,  # extends the stored prompt
        first[1][:10] + extra,  # shares only 10 tokens
        list(first[2]),  # the same prompt again (its last token must still run)
        tokenizer.encode("A new episode starts here."),  # a key seen for the first time
    ]
    cfg = GenerationConfig(max_new_tokens=10, temperature=temperature, seed=5)
    cache = PrefixCache()
    backend.generate(first, cfg, prefix_cache=cache, keys=[0, 1, 2, 3])
    assert len(cache) == 4 and cache.reused_tokens == 0
    cached = backend.generate(second, cfg, prefix_cache=cache, keys=[0, 1, 2, 9])
    assert cache.reused_tokens == len(first[0]) + 10 + len(first[2]) - 1
    assert cache.computed_tokens == sum(map(len, first)) + 2 * len(extra) + 1 + len(second[3])
    plain = backend.generate(second, cfg)
    for a, b in zip(cached, plain, strict=True):
        assert a.token_ids.tolist() == b.token_ids.tolist()
        torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=0)
        torch.testing.assert_close(a.entropies, b.entropies, atol=1e-5, rtol=0)
    cache.drop(0)
    assert len(cache) == 4  # keys 1, 2, 3, 9
    cache.clear()
    assert len(cache) == 0 and cache.reused_tokens == 0


def test_prefix_cache_needs_distinct_keys(backend, tokenizer):
    from empg.agent.generation import PrefixCache

    p = prompts(tokenizer)[:2]
    cfg = GenerationConfig(max_new_tokens=2)
    with pytest.raises(InputError, match="one key per prompt"):
        backend.generate(p, cfg, prefix_cache=PrefixCache())
    with pytest.raises(InputError, match="distinct"):
        backend.generate(p, cfg, prefix_cache=PrefixCache(), keys=[1, 1])
