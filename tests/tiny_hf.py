"""Tiny Hugging Face pieces built in-process for tests (no hub): a byte-level BPE tokenizer
trained on a few texts and a randomly initialised Qwen2 causal LM."""

from __future__ import annotations

from collections.abc import Iterable

PAD, EOS = "<|pad|>", "<|endoftext|>"


def train_bpe(texts: Iterable[str], vocab_size: int):
    """``PreTrainedTokenizerFast`` (left padding, pad/eos set) trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, padding_side="left"
    )


def tiny_qwen2(
    vocab_size: int,
    *,
    hidden: int = 48,
    layers: int = 2,
    seed: int = 0,
    max_positions: int = 2048,
    pad_id: int | None = None,
    eos_id: int | None = None,
    kv_heads: int = 2,
):
    """A randomly initialised Qwen2 causal LM (float32, FFN 2 x hidden, 4 query heads and
    ``kv_heads`` KV heads, tied)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(cfg)
