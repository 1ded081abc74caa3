"""Helpers shared by the agent tests (a module of its own: test files cannot import conftest)."""

from __future__ import annotations

import torch

from empg.agent import PromptConfig

#: prompt settings the format model is trained with (short prompts keep training cheap)
FORMAT_PROMPT = PromptConfig(compact=True, show_admissible=False, max_observation_chars=160)


def tiny_qwen2(vocab_size: int, seed: int = 0, hidden: int = 48, layers: int = 2):
    """A randomly initialised Qwen2 causal LM in eval mode (float32)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(cfg).eval()
