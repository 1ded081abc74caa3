"""Shared settings for trainer tests: a run small enough for seconds on a CPU."""

from __future__ import annotations

from empg.agent import format_response, render_prompt
from empg.envs import make

QUIET = lambda *_: None


def household_texts() -> list[str]:
    """Prompts, expert responses and observations of a few household train episodes: a
    tokenizer trained on them covers the words a rollout meets."""
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


def tiny_overrides(policy_dir, run_dir, **extra) -> list[str]:
    base = {
        "model.path": str(policy_dir),
        "run_dir": str(run_dir),
        "iterations": 2,
        "threads": 1,
        "tensorboard": False,
        "env.max_turns": 3,
        "rollout.tasks_per_batch": 2,
        "rollout.group_size": 3,
        "rollout.max_new_tokens": 6,
        "algo.preset": "grpo",
        "algo.kl_coef": 0.0,
        "optim.lr": 0.01,
        "optim.mini_batch_steps": 8,
        "optim.micro_batch_steps": 4,
        "eval.episodes": 2,
        "eval.splits": "[valid_seen]",
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def assert_shared_prefix_matches_full_rows(model, prompts, responses, temperature) -> None:
    """Log-probs, entropies and the gradients of a weighted sum of both, from rows packed with
    and without their shared prompt prefix: the same up to float order (and not all zero)."""
    import torch

    from empg.train.policy import pack_rows, response_logprobs_and_entropy

    results = []
    for share in (False, True):
        rows = pack_rows(prompts, responses, 0, share_prefix=share)
        assert (rows.prefix_ids is not None) == share
        lp, ent = response_logprobs_and_entropy(model, rows, temperature=temperature)
        w = torch.linspace(-1, 1, lp.numel()).view_as(lp)
        model.zero_grad()
        ((lp * w).sum() + (ent * w).sum()).backward()
        grads = [p.grad.clone() for p in model.parameters()]
        results.append((lp.detach(), ent.detach(), grads))
    (lp0, ent0, g0), (lp1, ent1, g1) = results
    torch.testing.assert_close(lp1, lp0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent1, ent0, atol=1e-5, rtol=1e-5)
    assert float(lp0.abs().sum()) > 0
    for a, b in zip(g1, g0, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def two_row_update_batch(policy_dir):
    """(model, tokenizer, UpdateBatch) of two short rows with advantages +1 / -1, their old
    log-probs recomputed by the policy in ``policy_dir``."""
    import torch

    from empg.train.config import load_config
    from empg.train.trainer import load_model
    from empg.train.update import UpdateBatch, recompute_logprobs

    model, tok = load_model(load_config(None, [f"model.path={policy_dir}"]))
    prompts, responses = [[5, 6, 7], [8, 9]], [[10, 11], [12]]
    lp, _, mask = recompute_logprobs(
        model, prompts, responses, pad_id=tok.pad_token_id, micro_batch=2
    )
    return model, tok, UpdateBatch(prompts, responses, lp, mask, torch.tensor([1.0, -1.0]))
