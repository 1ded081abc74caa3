"""A tiny policy folder (tokenizer trained here + random Qwen2) for trainer tests."""

from __future__ import annotations

import pytest

from empg.agent import format_response, render_prompt
from empg.envs import make
from tiny_hf import tiny_qwen2, train_bpe


def _corpus() -> list[str]:
    env = make("household", split="train")
    texts = []
    for seed in range(6):
        obs, info = env.reset(seed=seed)
        texts.append(render_prompt([{"role": "user", "content": f"Task: {info['task']}\n{obs}"}]))
        for _ in range(4):
            act = env.expert_action()
            texts.append(format_response(env.expert_thought() or "next", act))
            res = env.step(act)
            texts.append(res.observation)
            if res.terminated or res.truncated:
                break
    return texts


@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory):
    tokenizer = train_bpe(_corpus(), 300)
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
