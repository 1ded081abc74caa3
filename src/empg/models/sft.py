"""Supervised warm start: teach the tiny model the ReAct format and some of the expert's policy.

::

    examples = expert_examples(SFTConfig(episodes=200))        # (prompt, target) strings
    stats = train_sft(model, tokenizer, SFTConfig(steps=150))   # in place; returns the losses

Each expert step becomes one example: ``prompt = render_prompt(build_messages(...))`` with the
compact prompt of :func:`default_prompt_config` (no system message, no admissible actions, the
room overview and the agent's earlier actions), and ``target =
format_response(expert_thought, expert_action) + eos``. The loss is the mean cross-entropy over
target tokens only. The budget (``steps``, ``episodes``, ``random_action_prob``) is deliberately
small: RL needs a policy that succeeds sometimes but far from always (docs/models.md has the
measured table that picked the defaults).
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from empg.agent.parsing import format_response
from empg.agent.prompts import PromptConfig, Turn, build_messages, render_prompt
from empg.errors import ConfigError

IGNORE_INDEX = -100


def default_prompt_config() -> PromptConfig:
    """The short prompt the tiny policy is trained and evaluated with: no system message, no
    admissible actions, no (observation, action) pairs but the first observation (household's
    room overview) and the agent's last 16 actions, which is what the expert's next step
    depends on (docs/models.md has the measurements behind this choice)."""
    return PromptConfig(
        compact=True, show_admissible=False, history=0, first_observation=True, past_actions=16
    )


@dataclass(frozen=True)
class SFTConfig:
    """Supervised warm-start settings."""

    env: str = "household"
    """environment whose expert makes the data (household, shop, search)"""
    split: str = "train"
    """split the expert episodes come from"""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """extra environment constructor arguments (e.g. household task_types)"""
    episodes: int = 1500
    """expert episodes (seeds first_seed .. first_seed + episodes - 1)"""
    first_seed: int = 0
    """first task seed"""
    horizon: int = 30
    """step cap of a data episode"""
    random_action_prob: float = 0.3
    """share of steps where a random action is executed instead of the expert's: half of them
    admissible, half a near-miss that does nothing (an admissible action with its number
    changed). Those steps are not trained on; the expert's labels after them teach recovery"""
    steps: int = 1200
    """optimiser steps"""
    batch_size: int = 32
    """sequences per optimiser step"""
    lr: float = 3e-3
    """AdamW peak learning rate (linear warm-up, constant, then the optional decay)"""
    warmup_steps: int = 10
    """linear warm-up steps"""
    decay_steps: int = 300
    """the last this many steps (all of them if steps is smaller) decay the learning rate
    linearly to 0 (warm-up, stable, decay; 0: constant to the end, so that a run of N steps is
    the first N steps of a longer one)"""
    weight_decay: float = 0.01
    """AdamW weight decay"""
    max_grad_norm: float = 1.0
    """gradient clipping norm"""
    ema_decay: float = 0.0
    """keep an exponential moving average of the weights (``avg = d * avg + (1 - d) * weights``
    after every optimiser step, starting from the initial weights) and end with it; 0: end with
    the last weights"""
    length_grouping: bool = False
    """draw each batch from examples of similar length (less padding, faster steps; changes the
    batch order, so it is a different run)"""
    prompt_loss_weight: float = 0.0
    """weight of an auxiliary next-token loss on the prompt tokens (0: targets only); the
    environments' text repeats names constantly, which could teach copying from the context.
    Measured at 0.5: about 2x the step cost and no earlier copying (docs/models.md)"""
    grounded_only: bool = False
    """drop the examples whose target names an object or place (``word N``, such as "vase 1")
    that the prompt does not show: after a random exploration step the expert may head for
    something it saw several steps ago, which the prompt no longer carries, and imitating
    such a label teaches the policy to name things that are not in view. It also drops labels
    that rest on the expert's own knowledge, such as household's walk to a lamp it never saw.
    One build with it (and ``recall_observation``) was not better than the default
    (docs/models.md), so it is off"""
    max_length: int = 384
    """longest training sequence; longer prompts lose their start"""
    seed: int = 0
    """seed of batch order (and of random actions in the data)"""
    log_every: int = 0
    """print the loss every this many steps (0: silent)"""
    prompt: PromptConfig = field(default_factory=default_prompt_config)
    """prompt layout (the policy must be used with the same layout)"""

    def __post_init__(self) -> None:
        for name in ("episodes", "horizon", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"SFTConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.steps < 0 or self.warmup_steps < 0 or self.first_seed < 0:
            raise ConfigError("SFTConfig.steps, warmup_steps and first_seed must be >= 0")
        if self.decay_steps < 0:
            raise ConfigError(f"SFTConfig.decay_steps must be >= 0, got {self.decay_steps}")
        if not 0.0 <= self.random_action_prob < 1.0:
            raise ConfigError(
                f"SFTConfig.random_action_prob must be in [0, 1), got {self.random_action_prob}"
            )
        if not (self.prompt_loss_weight >= 0 and math.isfinite(self.prompt_loss_weight)):
            raise ConfigError(
                f"SFTConfig.prompt_loss_weight must be a finite number >= 0, got "
                f"{self.prompt_loss_weight}"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"SFTConfig.ema_decay must be in [0, 1), got {self.ema_decay}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"SFTConfig.lr must be a positive finite number, got {self.lr}")


@dataclass(frozen=True)
class Example:
    """One supervised step: the prompt text and the response the expert would write."""

    prompt: str
    target: str
    seed: int
    step: int


@dataclass
class SFTStats:
    """What :func:`train_sft` measured."""

    losses: list[float]
    """mean target-token loss of every optimiser step"""
    examples: int
    """number of (prompt, target) examples"""
    prompt_tokens: list[int]
    """token length of every example's prompt"""
    seconds: float
    """wall time of the optimisation"""


def _exploratory_action(rng: random.Random, admissible: list[str]) -> str:
    """A random admissible action, or (half the time) a near-miss such as 'go to drawer 5'."""
    action = rng.choice(admissible)
    if rng.random() < 0.5:
        digits = re.search(r"(\d+)$", action)
        bumped = str(int(digits.group(1)) + rng.randint(3, 6)) if digits else "9"
        action = (action[: digits.start()] if digits else action + " ") + bumped
    return action


_NAMED = re.compile(r"[A-Za-z]+ \d+")


def names_shown(prompt: str, target: str) -> bool:
    """Whether every ``word N`` name in ``target`` (such as "vase 1") occurs in ``prompt`` as a
    whole name ("vase 1" is not shown by "vase 12")."""
    for name in set(_NAMED.findall(target)):
        if not re.search(rf"(?<![A-Za-z]){re.escape(name)}(?!\d)", prompt):
            return False
    return True


def expert_examples(cfg: SFTConfig, tokenizer: Any = None) -> list[Example]:
    """(prompt, target) examples from expert episodes; ``tokenizer`` picks the prompt template."""
    from empg.envs import make

    env = make(cfg.env, split=cfg.split, **cfg.env_kwargs)
    out: list[Example] = []
    try:
        for seed in range(cfg.first_seed, cfg.first_seed + cfg.episodes):
            rng = random.Random(f"empg.sft/{cfg.env}/{cfg.split}/{cfg.seed}/{seed}")
            obs, info = env.reset(seed=seed)
            history: list[Turn] = []
            for t in range(cfg.horizon):
                action = env.expert_action()
                admissible = list(info.get("admissible_actions") or [])
                explore = bool(admissible) and rng.random() < cfg.random_action_prob
                if explore:
                    action = _exploratory_action(rng, admissible)
                else:
                    msgs = build_messages(
                        cfg.env, info.get("task", ""), obs, history, admissible, cfg.prompt
                    )
                    target = format_response(env.expert_thought(), action)
                    prompt = render_prompt(msgs, tokenizer)
                    if not cfg.grounded_only or names_shown(prompt, target):
                        out.append(Example(prompt, target, seed, t))
                res = env.step(action)
                history.append(Turn(obs, action))
                obs, info = res.observation, res.info
                if res.terminated or res.truncated:
                    break
    finally:
        env.close()
    return out


def encode_examples(
    examples: list[Example], tokenizer: Any, max_length: int
) -> list[tuple[list[int], int]]:
    """Ids of prompt + target + eos and where the target starts (prompts are cut from the left)."""
    eos = tokenizer.eos_token_id
    prompts = tokenizer([e.prompt for e in examples], add_special_tokens=False)["input_ids"]
    targets = tokenizer([e.target for e in examples], add_special_tokens=False)["input_ids"]
    out = []
    for p, t in zip(prompts, targets, strict=True):
        t = [*t, eos]
        if len(t) >= max_length:
            raise ConfigError(
                f"a target of {len(t)} tokens does not fit max_length={max_length}; raise it"
            )
        p = p[-(max_length - len(t)) :]
        out.append(([*p, *t], len(p)))
    return out


def collate(batch: list[tuple[list[int], int]], pad_id: int) -> dict[str, Any]:
    """Left-padded (B, T) input_ids, attention_mask, position_ids and labels (-100 off target)."""
    import torch

    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (ids, start) in enumerate(batch):
        off = width - len(ids)
        input_ids[i, off:] = torch.tensor(ids)
        mask[i, off:] = 1
        labels[i, off + start :] = torch.tensor(ids[start:])
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return {
        "input_ids": input_ids,
        "attention_mask": mask,
        "position_ids": position_ids,
        "labels": labels,
    }


def target_loss(model: Any, batch: dict[str, Any], prompt_weight: float = 0.0) -> Any:
    """Mean cross-entropy over target tokens; logits only for the tail that holds targets.

    With ``prompt_weight > 0``, adds ``prompt_weight`` times the mean next-token cross-entropy
    over the prompt tokens (every real token after a row's first, up to the target).
    """
    import torch

    labels = batch["labels"]  # (B, T)
    if prompt_weight > 0:
        logits = (
            model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                position_ids=batch["position_ids"],
            )
            .logits[:, :-1]
            .float()
        )  # (B, T-1, V): position t predicts token t+1
        nxt = labels[:, 1:]
        lm = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), nxt.reshape(-1), ignore_index=IGNORE_INDEX
        )
        real = batch["attention_mask"].bool()
        prompt_next = real[:, 1:] & real[:, :-1] & (nxt == IGNORE_INDEX)  # (B, T-1)
        if not prompt_next.any():
            return lm
        per_tok = torch.nn.functional.cross_entropy(
            logits[prompt_next], batch["input_ids"][:, 1:][prompt_next]
        )
        return lm + prompt_weight * per_tok
    has_target = (labels != IGNORE_INDEX).any(0).nonzero()
    keep = labels.shape[1] - int(has_target[0]) + 1  # positions predicting target tokens
    logits = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        logits_to_keep=keep,
    ).logits  # (B, keep, V)
    shifted = labels[:, -keep + 1 :]  # (B, keep - 1): the token each kept position predicts
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]),
        shifted.reshape(-1),
        ignore_index=IGNORE_INDEX,
    )


def length_grouped_batches(
    lengths: list[int], batch_size: int, generator: Any, window: int = 16
) -> list[list[int]]:
    """One epoch of batches in a seeded random order, each drawn from examples of similar
    length (within windows of ``window`` batches of a random permutation), so little of a
    left-padded batch is padding. Every example appears exactly once."""
    import torch

    perm = torch.randperm(len(lengths), generator=generator).tolist()
    span = batch_size * window
    batches = []
    for a in range(0, len(perm), span):
        chunk = sorted(perm[a : a + span], key=lambda i: lengths[i])
        batches += [chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size)]
    shuffle = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffle]


def lr_at(step: int, cfg: SFTConfig) -> float:
    """Learning rate of 0-based ``step``: linear warm-up, constant, then a linear decay over
    the last ``decay_steps`` steps that ends one step short of 0 (the last step still learns).
    Without decay, a run of N steps IS the first N steps of a longer run."""
    lr = cfg.lr
    if step < cfg.warmup_steps:
        lr = cfg.lr * (step + 1) / cfg.warmup_steps
    decay = min(cfg.decay_steps, cfg.steps)
    left = cfg.steps - step  # steps left including this one
    if decay and left <= decay:
        lr = min(lr, cfg.lr * left / (decay + 1))
    return lr


def update_average(avg: Any, params: Any, decay: float) -> None:
    """One EMA step in place: ``a = decay * a + (1 - decay) * p`` for each pair (no grad)."""
    import torch

    with torch.no_grad():
        for a, p in zip(avg, params, strict=True):
            a.lerp_(p, 1 - decay)


def train_sft(
    model: Any,
    tokenizer: Any,
    cfg: SFTConfig,
    examples: list[Example] | None = None,
    on_step: Callable[[int, Any], None] | None = None,
) -> SFTStats:
    """Fine-tune ``model`` in place on expert examples; deterministic given ``cfg.seed``.

    ``on_step(step, model)`` is called after every optimiser step (1-based ``step``), e.g. to
    evaluate checkpoints; the model is in train mode again when it returns. With
    ``cfg.ema_decay``, it sees the current weights, and the model ends with their average.
    """
    import torch

    examples = expert_examples(cfg, tokenizer) if examples is None else examples
    if not examples:
        raise ConfigError(f"no SFT examples from {cfg.env!r}/{cfg.split!r}; check episodes")
    encoded = encode_examples(examples, tokenizer, cfg.max_length)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    params = list(model.parameters())
    avg = [p.detach().clone() for p in params] if cfg.ema_decay else None
    model.train()
    losses: list[float] = []
    batches: list[list[int]] = []
    order: list[int] = []
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        if cfg.length_grouping:
            if not batches:  # a new epoch in a seeded order
                batches = length_grouped_batches(
                    [len(ids) for ids, _ in encoded], cfg.batch_size, gen
                )
            idx = batches.pop(0)
        else:
            if len(order) < cfg.batch_size:  # a new epoch in a seeded order
                order += torch.randperm(len(encoded), generator=gen).tolist()
            idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
        batch = collate([encoded[i] for i in idx], tokenizer.pad_token_id)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        loss = target_loss(model, batch, cfg.prompt_loss_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        if avg is not None:
            update_average(avg, params, cfg.ema_decay)
        losses.append(float(loss.detach()))
        if cfg.log_every and (step + 1) % cfg.log_every == 0:
            print(f"sft step {step + 1}/{cfg.steps} loss {losses[-1]:.4f}", flush=True)
        if on_step is not None:
            on_step(step + 1, model)
            model.train()
    if avg is not None:
        with torch.no_grad():
            for a, p in zip(avg, params, strict=True):
                p.copy_(a)
    model.eval()
    return SFTStats(
        losses=losses,
        examples=len(encoded),
        prompt_tokens=[start for _, start in encoded],
        seconds=time.perf_counter() - t0,
    )
