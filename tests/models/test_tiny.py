"""The tiny Qwen2 model: exact size, seeded init, save/load round trip, config checks."""

from __future__ import annotations

import pytest
import torch

from empg.errors import ConfigError
from empg.models.tiny import TinyModelConfig, build_tiny_model, count_parameters

# one decoder layer of the default size: q (128x128 + b), k and v (128x64 + b), o (128x128),
# SwiGLU (3 x 128x512), two RMSNorm weights
LAYER = (128 * 128 + 128) + 2 * (128 * 64 + 64) + 128 * 128 + 3 * 128 * 512 + 2 * 128


def test_default_size_matches_reference_row(small_tokenizer):
    model = build_tiny_model(small_tokenizer)
    vocab = len(small_tokenizer)
    assert count_parameters(model) == vocab * 128 + 4 * LAYER + 128  # tied head, final norm
    c = model.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads) == (128, 4, 4)
    assert (c.num_key_value_heads, c.intermediate_size) == (2, 512)
    assert c._attn_implementation == "sdpa" and c.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert next(model.parameters()).dtype == torch.float32
    assert c.pad_token_id == small_tokenizer.pad_token_id
    assert model.generation_config.eos_token_id == small_tokenizer.eos_token_id


def test_the_documented_parameter_count_is_the_model_built_for_3072_tokens():
    """1,378,432 (docs/models.md) is the default model for the default 3,072-token vocabulary;
    only the vocabulary's size (and two special ids) reach the model, so a stand-in suffices."""

    class Vocabulary3072:
        pad_token_id, eos_token_id = 0, 1

        def __len__(self) -> int:
            return 3072

    assert count_parameters(build_tiny_model(Vocabulary3072())) == 1_378_432


def test_init_is_seeded_and_leaves_global_rng_alone(small_tokenizer):
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = build_tiny_model(small_tokenizer, TinyModelConfig(num_layers=1, seed=5))
    after = torch.rand(3)
    b = build_tiny_model(small_tokenizer, TinyModelConfig(num_layers=1, seed=5))
    c = build_tiny_model(small_tokenizer, TinyModelConfig(num_layers=1, seed=6))
    assert torch.equal(before, after)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["model.embed_tokens.weight"], sc["model.embed_tokens.weight"])


def test_save_load_round_trip_gives_identical_logits(small_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    model = build_tiny_model(small_tokenizer, TinyModelConfig(num_layers=2)).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin"))
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    batch = small_tokenizer(
        ["<|user|>\nTask: put a mug in desk.\n<|assistant|>\n", "go to desk 1"],
        return_tensors="pt",
        padding=True,
        add_special_tokens=False,
    )
    with torch.no_grad():
        x, y = model(**batch).logits, loaded(**batch).logits
    assert x.shape == (2, batch["input_ids"].shape[1], len(small_tokenizer))
    assert torch.equal(x, y)
    assert loaded.config._attn_implementation == "sdpa"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(hidden_size=130), "divisible by num_heads"),
        (dict(hidden_size=60), "head size hidden_size / num_heads = 15 must be even"),
        (dict(num_kv_heads=3), "must divide num_heads"),
        (dict(num_layers=0), "num_layers"),
    ],
)
def test_bad_architecture_is_rejected(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TinyModelConfig(**kwargs)
