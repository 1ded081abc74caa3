"""Shared fixtures: one small tokenizer per test session (trained here, a few seconds)."""

from __future__ import annotations

import pytest
import torch

SMALL_TOKENIZER = dict(episodes_per_env=20, vocab_size=1024)


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    torch.set_num_threads(1)  # the machine is shared; more threads thrash


@pytest.fixture(scope="session")
def small_tokenizer():
    from empg.models.tokenizer import TokenizerConfig, train_tokenizer

    return train_tokenizer(TokenizerConfig(**SMALL_TOKENIZER))
