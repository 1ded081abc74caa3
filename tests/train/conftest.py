"""A tiny policy folder (tokenizer trained here + random Qwen2) for trainer tests."""

from __future__ import annotations

import pytest
from train_helpers import household_texts

from tiny_hf import tiny_qwen2, train_bpe


@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory):
    tokenizer = train_bpe(household_texts(), 300)
    model = tiny_qwen2(
        len(tokenizer),
        hidden=32,
        pad_id=tokenizer.pad_token_id,
        eos_id=tokenizer.eos_token_id,
    )
    path = tmp_path_factory.mktemp("policy")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
