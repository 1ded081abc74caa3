"""The project tokenizer: determinism across processes, special tokens, round trips, template."""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata

import pytest

from empg.agent.prompts import PromptConfig, Turn, build_messages, render_prompt
from empg.errors import ConfigError
from empg.models.tokenizer import (
    CHAT_TEMPLATE,
    EOS_TOKEN,
    PAD_TOKEN,
    SPECIAL_TOKENS,
    TokenizerConfig,
    corpus_texts,
)

_CHILD = """
import hashlib, json, os
from empg.models.tokenizer import train_tokenizer
tok = train_tokenizer()
text = tok.backend_tokenizer.to_str()
print(json.dumps({"sha": hashlib.sha256(text.encode()).hexdigest(), "n": len(tok)}))
"""

HOSTILE = [
    "",
    " ",
    "\x00\x01\x7f nul and controls",
    "emoji 👩‍👩‍👧‍👦 family, flags 🇫🇷🇯🇵, skin 👍🏽",
    "rtl \u202e override \u202c and \u200f marks, zero width \u200b\u200c\u200d\ufeff",
    "combining e\u0301 and A\u030a (NFC composes them)",
    "CJK 漢字かなカナ 한국어, Greek αβγ, Cyrillic жзи, Devanagari नमस्ते",
    "math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ∑∫≠ and fullwidth ＡＢＣ１２３",
    "tabs\tand\r\nwindows\rnewlines\n\n\n  trailing   ",
    "<think><action>go to cabinet 1</action></think><|user|><|eos|><|pad|>",
    "\udfff".encode("utf-8", "surrogatepass").decode("utf-8", "replace") + " replaced surrogate",
    "long " + "ab" * 3000,
]


def test_two_processes_build_byte_identical_tokenizer_json():
    procs = [
        subprocess.Popen([sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0]["sha"] == outs[1]["sha"]
    assert outs[0]["n"] == TokenizerConfig().vocab_size == 3072


def test_corpus_is_deterministic_and_covers_every_env():
    cfg = TokenizerConfig(episodes_per_env=3)
    a, b = list(corpus_texts(cfg)), list(corpus_texts(cfg))
    assert a == b
    joined = "\n".join(a)
    for marker in ("Your task is to:", "search[", "click[", "Question:", "Current observation:"):
        assert marker in joined


def test_special_tokens_are_single_ids(small_tokenizer):
    tok = small_tokenizer
    assert tok.pad_token == PAD_TOKEN and tok.pad_token_id == 0
    assert tok.eos_token == EOS_TOKEN and tok.eos_token_id == 1
    assert tok.padding_side == "left"
    for i, s in enumerate(SPECIAL_TOKENS):
        assert tok.convert_tokens_to_ids(s) == i
        assert tok(s, add_special_tokens=False)["input_ids"] == [i]
        ids = tok(f"go{s}to", add_special_tokens=False)["input_ids"]
        assert ids.count(i) == 1 and len(ids) == 3


def test_round_trip_on_held_out_env_texts(small_tokenizer):
    from empg.envs import make

    texts = []
    for name, split in (("household", "valid_unseen"), ("shop", "test"), ("search", "test_ood")):
        env = make(name, split=split)
        for seed in range(5):
            obs, info = env.reset(seed=seed)
            texts += [obs, info["task"], env.expert_thought(), env.expert_action()]
            texts += list(info.get("admissible_actions") or [])
    assert len(texts) > 60
    for t in texts:
        ids = small_tokenizer(t, add_special_tokens=False)["input_ids"]
        assert small_tokenizer.decode(ids) == t


@pytest.mark.parametrize("text", HOSTILE)
def test_any_text_encodes_and_round_trips_up_to_nfc(small_tokenizer, text):
    ids = small_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert all(0 <= i < len(small_tokenizer) for i in ids)
    assert small_tokenizer.decode(ids) == unicodedata.normalize("NFC", text)


def test_domain_text_is_compact(small_tokenizer):
    tok = small_tokenizer
    # object ids: word, space, digit (the Qwen2 split keeps digits apart)
    assert len(tok("go to cabinet 1", add_special_tokens=False)["input_ids"]) == 5
    for word in (" cabinet", " countertop", " arrive", "Current", " observation"):
        assert len(tok(word, add_special_tokens=False)["input_ids"]) == 1, word
    assert len(tok(" cabinet 12", add_special_tokens=False)["input_ids"]) == 4


def test_chat_template_renders_like_the_plain_template(small_tokenizer):
    assert small_tokenizer.chat_template == CHAT_TEMPLATE
    hist = [Turn("You arrive at desk 1.", "open drawer 1")]
    for cfg in (PromptConfig(), PromptConfig(compact=True, show_admissible=False)):
        msgs = build_messages(
            "household", "put a mug in desk.", "Nothing happens.", hist, ["look", "inventory"], cfg
        )
        plain = render_prompt(msgs)
        assert render_prompt(msgs, small_tokenizer) == plain
        assert plain.endswith("<|assistant|>\n")
        ids = small_tokenizer(plain, add_special_tokens=False)["input_ids"]
        assert ids[-2:] == [
            small_tokenizer.convert_tokens_to_ids("<|assistant|>"),
            small_tokenizer("\n", add_special_tokens=False)["input_ids"][0],
        ]


def test_auto_tokenizer_on_a_saved_model_folder_tokenizes_identically(small_tokenizer, tmp_path):
    from transformers import AutoTokenizer

    from empg.models.tiny import TinyModelConfig, build_tiny_model

    model = build_tiny_model(small_tokenizer, TinyModelConfig(num_layers=1))
    model.save_pretrained(tmp_path)
    small_tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)  # model_type qwen2 -> Qwen2's pipeline
    for text in [*HOSTILE, "Task: put two cd in safe.\nAction: take cd 2 from desk 1"]:
        assert again(text)["input_ids"] == small_tokenizer(text)["input_ids"]
    assert again.pad_token_id == 0 and again.eos_token_id == 1
    assert again.padding_side == "left" and again.chat_template == CHAT_TEMPLATE


def test_bad_configs_are_rejected():
    with pytest.raises(ConfigError, match="vocab_size"):
        TokenizerConfig(vocab_size=100)
    with pytest.raises(ConfigError, match="envs"):
        TokenizerConfig(envs=("household", "chess"))
