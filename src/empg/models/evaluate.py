"""A small, plain episode loop for measuring a policy: batched ``model.generate`` per step.

::

    result = evaluate_policy(model, tokenizer, EvalConfig(split="valid_seen", episodes=50))
    result.success_rate, result.mean_steps, result.invalid_rate

All unfinished episodes advance together: build each prompt, generate one response per episode
(greedy at ``temperature=0``, else sampling), parse it, step the environments. This is the
reference loop for warm-start figures, not the RL rollout engine (see :mod:`empg.agent`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from empg.agent.parsing import parse_response
from empg.agent.prompts import PromptConfig, Turn, build_messages, render_prompt
from empg.errors import ConfigError
from empg.models.sft import default_prompt_config


@dataclass(frozen=True)
class EvalConfig:
    """Which episodes to play and how to sample."""

    env: str = "household"
    """environment name"""
    split: str = "valid_seen"
    """held-out split"""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """extra environment constructor arguments (e.g. household task_types)"""
    episodes: int = 50
    """number of episodes (seeds first_seed .. first_seed + episodes - 1)"""
    first_seed: int = 0
    """first task seed"""
    horizon: int = 25
    """step cap per episode (the env's own limit applies too)"""
    temperature: float = 0.0
    """0 = greedy; otherwise sampling temperature (verl-agent validates at 0.4)"""
    max_new_tokens: int = 48
    """response token cap per step (expert responses are at most 33 tokens with eos)"""
    batch_size: int = 64
    """episodes generated for together"""
    seed: int = 0
    """seed of sampling"""
    prompt: PromptConfig = field(default_factory=default_prompt_config)
    """prompt layout (must match the one the policy was trained with)"""

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.horizon < 1 or self.batch_size < 1:
            raise ConfigError("EvalConfig.episodes, horizon and batch_size must be >= 1")
        if self.temperature < 0 or self.max_new_tokens < 1:
            raise ConfigError(
                f"EvalConfig.temperature must be >= 0 and max_new_tokens >= 1, got "
                f"{self.temperature} and {self.max_new_tokens}"
            )


@dataclass
class EvalResult:
    """Outcome of :func:`evaluate_policy`."""

    wins: list[bool]
    """per episode, in seed order"""
    steps: list[int]
    """steps taken per episode"""
    invalid_steps: int
    """responses that did not parse as a valid ReAct answer"""
    seconds: float
    """wall time"""

    @property
    def success_rate(self) -> float:
        return sum(self.wins) / len(self.wins)

    @property
    def mean_steps(self) -> float:
        return sum(self.steps) / len(self.steps)

    @property
    def invalid_rate(self) -> float:
        return self.invalid_steps / max(1, sum(self.steps))


def generate_responses(
    model: Any, tokenizer: Any, prompts: list[str], *, temperature: float, max_new_tokens: int
) -> list[str]:
    """One decoded response per prompt (special tokens kept, eos and padding removed)."""
    import torch

    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    enc = {k: v.to(model.device) for k, v in enc.items()}  # a model on a GPU takes GPU inputs
    sample = temperature > 0
    extra = {"temperature": temperature, "top_k": 0, "top_p": 1.0} if sample else {}
    with torch.no_grad():
        out = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **extra,
        )  # (B, T_prompt + T_new)
    texts = []
    for row in out[:, enc["input_ids"].shape[1] :].tolist():
        if tokenizer.eos_token_id in row:
            row = row[: row.index(tokenizer.eos_token_id)]
        row = [i for i in row if i != tokenizer.pad_token_id]
        texts.append(tokenizer.decode(row, skip_special_tokens=False))
    return texts


def evaluate_policy(model: Any, tokenizer: Any, cfg: EvalConfig | None = None) -> EvalResult:
    """Play ``cfg.episodes`` episodes with ``model``; success = ``info["won"]`` within the cap."""
    import torch

    from empg.envs import make

    cfg = cfg or EvalConfig()
    model.eval()
    t0 = time.perf_counter()
    wins: list[bool] = []
    steps: list[int] = []
    invalid = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.episodes))
        for lo in range(0, len(seeds), cfg.batch_size):
            chunk = seeds[lo : lo + cfg.batch_size]
            w, s, bad = _play_chunk(model, tokenizer, cfg, chunk, make)
            wins += w
            steps += s
            invalid += bad
    return EvalResult(wins, steps, invalid, time.perf_counter() - t0)


def _play_chunk(model, tokenizer, cfg: EvalConfig, seeds: list[int], make) -> tuple:
    envs = []
    state = []  # per episode: [obs, info, history, done]
    wins = [False] * len(seeds)
    invalid = 0
    try:  # environments built before a failing one are closed too
        for seed in seeds:
            envs.append(make(cfg.env, split=cfg.split, **cfg.env_kwargs))
            obs, info = envs[-1].reset(seed=seed)
            state.append([obs, info, [], False])
        for _ in range(cfg.horizon):
            live = [i for i, st in enumerate(state) if not st[3]]
            if not live:
                break
            prompts = []
            for i in live:
                obs, info, hist, _ = state[i]
                msgs = build_messages(
                    cfg.env,
                    info.get("task", ""),
                    obs,
                    hist,
                    info.get("admissible_actions"),
                    cfg.prompt,
                )
                prompts.append(render_prompt(msgs, tokenizer))
            texts = generate_responses(
                model,
                tokenizer,
                prompts,
                temperature=cfg.temperature,
                max_new_tokens=cfg.max_new_tokens,
            )
            for i, text in zip(live, texts, strict=True):
                parsed = parse_response(text)
                invalid += not parsed.valid
                obs, info, hist, _ = state[i]
                res = envs[i].step(parsed.action)
                hist.append(Turn(obs, parsed.action))
                wins[i] = bool(res.info.get("won"))
                state[i] = [res.observation, res.info, hist, res.terminated or res.truncated]
    finally:
        for env in envs:
            env.close()
    return wins, [env.steps_taken for env in envs], invalid


def expert_action_accuracy(
    model: Any,
    tokenizer: Any,
    *,
    env: str = "household",
    split: str = "valid_seen",
    episodes: int = 10,
    prompt: PromptConfig | None = None,
    max_new_tokens: int = 48,
) -> float:
    """Share of expert-trajectory states where the greedy response's action == the expert's."""
    from empg.models.sft import SFTConfig, expert_examples

    cfg = SFTConfig(
        env=env,
        split=split,
        episodes=episodes,
        random_action_prob=0.0,
        prompt=prompt or default_prompt_config(),
    )
    examples = expert_examples(cfg, tokenizer)
    texts = generate_responses(
        model,
        tokenizer,
        [e.prompt for e in examples],
        temperature=0.0,
        max_new_tokens=max_new_tokens,
    )
    hits = 0
    for e, text in zip(examples, texts, strict=True):
        expert = parse_response(e.target).action
        hits += parse_response(text).action == expert
    return hits / len(examples)
