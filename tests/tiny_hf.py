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


#: Llama 3's special tokens (no pad token, as in the released tokenizers)
BOS3, EOT3, EOS3 = "<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>"
HEADER3 = ("<|start_header_id|>", "<|end_header_id|>")
#: a chat template of Llama 3's layout: BOS, then per message a role header and an EOT
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def train_llama3_style_bpe(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE tokenizer shaped like Llama 3.1 Instruct's: BOS added by the
    post-processor on ``encode`` (so a template that writes BOS as well doubles it unless
    special tokens are off), EOS ``<|eot_id|>``, no pad token, left padding, the template above."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [BOS3, EOS3, EOT3, *HEADER3]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    bos = tok.token_to_id(BOS3)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS3} $A", pair=f"{BOS3} $A {BOS3} $B", special_tokens=[(BOS3, bos)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS3,
        eos_token=EOT3,
        additional_special_tokens=list(HEADER3),
        padding_side="left",
    )
    fast.chat_template = LLAMA3_CHAT_TEMPLATE
    return fast


def tiny_llama31(
    vocab_size: int,
    *,
    hidden: int = 48,
    layers: int = 2,
    seed: int = 0,
    bos_id: int | None = None,
    eos_ids: list[int] | None = None,
):
    """A randomly initialised Llama causal LM with Llama 3.1's structure at toy size: 4 query
    heads over 2 KV heads, untied input and output embeddings, ``llama3`` RoPE scaling
    (factor 8 from an original 8,192 positions, theta 5e5), ``eos_ids`` in the generation
    config (3.1 Instruct ends a turn on any of several ids)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=131072,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        rope_theta=500000.0,
        tie_word_embeddings=False,
        bos_token_id=bos_id,
        eos_token_id=eos_ids,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(bos_token_id=bos_id, eos_token_id=eos_ids)
    return model
