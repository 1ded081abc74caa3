"""A tiny Qwen2-architecture causal LM, sized so a default RL job is fast on a 2-core CPU.

The default (hidden 128, 4 layers, 4 query / 2 key-value heads, FFN 512, tied embeddings, about
1.4M parameters with a 3,072-token vocabulary) is the 1.5M size measured on 2-core CPUs in
November 2026: about 20 s per RL iteration with 128-token prompts. fp32 only: bf16 is much
slower on CPUs without AMX.
It is a plain ``transformers.Qwen2ForCausalLM``: ``save_pretrained`` / ``from_pretrained``
(safetensors) and every Hugging Face tool work with it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from empg.errors import ConfigError


@dataclass(frozen=True)
class TinyModelConfig:
    """Architecture of the tiny policy model."""

    hidden_size: int = 128
    """width of the residual stream"""
    num_layers: int = 4
    """number of decoder layers"""
    num_heads: int = 4
    """attention (query) heads"""
    num_kv_heads: int = 2
    """key/value heads (grouped-query attention); must divide num_heads"""
    intermediate_size: int = 512
    """width of the SwiGLU feed-forward layer"""
    max_positions: int = 1024
    """longest sequence (prompt + response) the rotary embedding is set up for"""
    rope_theta: float = 10000.0
    """rotary embedding base"""
    seed: int = 0
    """seed of the random initialisation (the global torch RNG is left untouched)"""

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads "
                f"({self.num_heads}); pick e.g. num_heads=4 for hidden_size=128"
            )
        if (self.hidden_size // self.num_heads) % 2:
            raise ConfigError(
                f"the head size hidden_size / num_heads = {self.hidden_size // self.num_heads} "
                "must be even (rotary position embeddings rotate pairs of dimensions)"
            )
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(
                f"num_kv_heads ({self.num_kv_heads}) must divide num_heads ({self.num_heads})"
            )


def tiny_qwen2_config(vocab_size: int, cfg: TinyModelConfig, *, pad_id: int, eos_id: int) -> Any:
    """The ``transformers.Qwen2Config`` for ``cfg`` and a vocabulary of ``vocab_size``."""
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_positions,
        rope_theta=cfg.rope_theta,
        tie_word_embeddings=True,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=None,
        use_cache=True,
        torch_dtype="float32",
    )


def build_tiny_model(tokenizer: Any, cfg: TinyModelConfig | None = None) -> Any:
    """A randomly initialised fp32 ``Qwen2ForCausalLM`` for ``tokenizer`` (len(tokenizer) rows).

    The model uses SDPA attention and its generation config stops at the tokenizer's eos.
    """
    import torch
    from transformers import Qwen2ForCausalLM

    cfg = cfg or TinyModelConfig()
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ConfigError("the tokenizer needs a pad and an eos token (see empg.models.tokenizer)")
    hf_cfg = tiny_qwen2_config(
        len(tokenizer), cfg, pad_id=tokenizer.pad_token_id, eos_id=tokenizer.eos_token_id
    )
    hf_cfg._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = Qwen2ForCausalLM(hf_cfg).to(torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = None
    return model


def count_parameters(model: Any) -> int:
    """Number of distinct parameters (tied embedding counted once)."""
    return sum(p.numel() for p in model.parameters())
