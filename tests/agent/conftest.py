"""Shared fixtures: a byte-level BPE tokenizer trained here on environment text and tiny random
Qwen2 causal LMs built on it (no hub access)."""

from __future__ import annotations

import pytest
import torch
from agent_helpers import FORMAT_PROMPT, tiny_qwen2

from empg.agent import build_messages, format_response, render_prompt
from empg.envs import make
from tiny_hf import EOS, train_bpe

STEPS = 80
#: prompt settings the format model is trained with (short prompts keep training cheap)

torch.set_num_threads(1)  # tiny models: one thread is faster on a shared 2-core box


def _corpus() -> list[str]:
    texts = []
    for name, split in (("household", "train"), ("shop", "train")):
        env = make(name, split=split)
        for seed in range(4):
            obs, info = env.reset(seed=seed)
            msgs = build_messages(name, info["task"], obs, (), info.get("admissible_actions"))
            texts.append(render_prompt(msgs))
            for _ in range(3):
                act = env.expert_action()
                texts.append(format_response(env.expert_thought() or "next", act))
                res = env.step(act)
                texts.append(res.observation)
                if res.terminated or res.truncated:
                    break
        env.close()
    texts.append(format_response("I look around.", "look") * 4)
    return texts


@pytest.fixture(scope="session")
def tokenizer():
    """Byte-level BPE (vocab 400) wrapped in PreTrainedTokenizerFast, left padding."""
    return train_bpe(_corpus(), 400)


@pytest.fixture(scope="session")
def model(tokenizer):
    """Tiny random Qwen2 (hidden 48, 2 layers) over the fixture tokenizer's vocabulary."""
    return tiny_qwen2(len(tokenizer))


@pytest.fixture(scope="session")
def format_model(tokenizer):
    """Tiny Qwen2 briefly trained (here, a few seconds) to answer household prompts with
    ``<think>...</think><action>...</action>`` so rollouts see both valid and invalid answers."""
    torch.manual_seed(1)
    m = tiny_qwen2(len(tokenizer), seed=1).train()
    env = make("household", split="train")
    cfg = FORMAT_PROMPT
    pairs = []
    for seed in range(6):
        obs, info = env.reset(seed=seed)
        for _ in range(2):
            prompt = render_prompt(build_messages("household", info["task"], obs, (), None, cfg))
            act = env.expert_action()
            target = format_response("go", act) + EOS
            pairs.append((tokenizer.encode(prompt), tokenizer.encode(target)))
            res = env.step(act)
            obs = res.observation
    width = max(len(p) + len(t) for p, t in pairs)
    ids = torch.full((len(pairs), width), tokenizer.pad_token_id)
    labels = torch.full((len(pairs), width), -100)
    attn = torch.zeros((len(pairs), width), dtype=torch.long)
    for i, (p, t) in enumerate(pairs):  # right padding for training
        ids[i, : len(p) + len(t)] = torch.tensor(p + t)
        labels[i, len(p) : len(p) + len(t)] = torch.tensor(t)
        attn[i, : len(p) + len(t)] = 1
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    for _ in range(STEPS):
        m(input_ids=ids, attention_mask=attn, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    return m.eval()
