"""Helpers shared by the agent tests (a module of its own: test files cannot import conftest)."""

from __future__ import annotations

import tiny_hf
from empg.agent import PromptConfig

#: prompt settings the format model is trained with (short prompts keep training cheap)
FORMAT_PROMPT = PromptConfig(compact=True, show_admissible=False, max_observation_chars=160)


def tiny_qwen2(vocab_size: int, seed: int = 0, hidden: int = 48, layers: int = 2):
    """A randomly initialised Qwen2 causal LM in eval mode (float32)."""
    return tiny_hf.tiny_qwen2(
        vocab_size, hidden=hidden, layers=layers, seed=seed, max_positions=4096
    ).eval()
