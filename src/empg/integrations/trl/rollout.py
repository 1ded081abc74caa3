"""Multi-turn ``rollout_func`` for TRL's ``GRPOTrainer`` over the project's text environments.

One TRL completion is one whole episode, laid out as ONE sequence::

    prompt_ids     = chat(system, user_0) + generation prompt
    completion_ids = response_0 | between_0 | response_1 | between_1 | ... | response_last [eos]
    env_mask       =   1 ... 1  |  0 ... 0  |   1 ... 1  |  0 ... 0  | ... |   1 ... 1     [0]

``response_t`` is what the model sampled (its log-probs are recorded); ``between_t`` is the
chat-template text that closes the assistant turn and opens the next user turn, whose content
is the project's ReAct user message (:func:`empg.agent.build_messages`: task, current
observation, admissible actions) for the new observation. The model generates every turn
conditioned on exactly the tokens TRL later trains on, so the rollout is on-policy. A final eos
(mask 0) is appended when the last response ended on a stop string, so TRL does not count the
episode as truncated.

Episodes are named by the dataset's prompt column: :func:`episode_prompt` (``"empg-episode
seed=17"``) resets the environment with ``seed=17``. Per-episode results reach TRL's reward
functions as keyword arguments (lists, one entry per completion): ``episode_won``,
``episode_return``, ``num_turns``, ``invalid_actions``. See :func:`success_reward` and
:func:`invalid_action_penalty`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from empg.agent.generation import GenerationConfig, HFBackend
from empg.agent.parsing import parse_response
from empg.agent.prompts import PromptConfig, between_turns_text, build_messages, render_prompt
from empg.errors import ConfigError, InputError

_EPISODE_RE = re.compile(r"^empg-episode seed=(\d{1,12})$")


def episode_prompt(seed: int) -> str:
    """The dataset prompt that names the episode reset with ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed must be an int >= 0, got {seed!r}")
    return f"empg-episode seed={seed}"


def episode_seed(prompt: Any) -> int:
    """Inverse of :func:`episode_prompt` (a chat prompt's last message content is read)."""
    text = prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
        text = prompt[-1].get("content")
    m = _EPISODE_RE.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise InputError(
            f"rollout prompt {str(text)[:80]!r} does not name an episode; build the dataset with "
            "episode_dataset(...) or prompts from episode_prompt(seed)"
        )
    return int(m.group(1))


def episode_dataset(seeds: Sequence[int]) -> Any:
    """A ``datasets.Dataset`` with one ``prompt`` row per episode seed."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": episode_prompt(int(s))} for s in seeds])


@dataclass(frozen=True)
class RolloutSettings:
    """How :func:`make_rollout_func` plays episodes."""

    env_name: str
    """registered environment name (household, shop, search, textworld, ...)"""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """constructor arguments of the environment (e.g. split)"""
    max_turns: int = 8
    """model turns per episode at most (the environment's own step limit also applies)"""
    max_new_tokens: int = 64
    """tokens per model turn at most"""
    prompt: PromptConfig = field(default_factory=PromptConfig)
    """prompt settings (history is implicit: earlier turns stay in the sequence)"""
    stop_strings: tuple[str, ...] = ("</action>",)
    """a model turn ends once its text contains one of these (or on eos)"""
    require_think: bool = True
    """a response without <think>...</think> before the action is invalid"""

    def __post_init__(self) -> None:
        if not isinstance(self.env_name, str) or not self.env_name:
            raise ConfigError(f"env_name must be a registered name, got {self.env_name!r}")
        for name in ("max_turns", "max_new_tokens"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {v!r}")
        if not isinstance(self.prompt, PromptConfig):
            raise ConfigError(f"prompt must be a PromptConfig, got {type(self.prompt).__name__}")


@dataclass
class _Episode:
    env: Any
    seed: int
    task: str
    messages: list[dict[str, str]]
    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    turns: int = 0
    invalid: int = 0
    ret: float = 0.0
    won: bool = False
    done: bool = False

    def add(self, ids: Sequence[int], logprobs: Sequence[float] | None, model: bool) -> None:
        ids = [int(i) for i in ids]
        self.completion_ids += ids
        self.logprobs += [float(x) for x in logprobs] if logprobs is not None else [0.0] * len(ids)
        self.env_mask += [1 if model else 0] * len(ids)


def _user_message(s: RolloutSettings, task: str, obs: str, info: dict) -> dict[str, str]:
    adm = info.get("admissible_actions")
    return build_messages(s.env_name, task, obs, (), adm, s.prompt)[-1]


class EpisodeRollout:
    """The callable ``rollout_func(prompts, trainer) -> dict`` (see the module docstring).

    Environments are created once per batch slot and reused across calls.
    """

    def __init__(self, settings: RolloutSettings) -> None:
        from empg.envs import make

        self.settings = settings
        self._make = lambda: make(settings.env_name, **settings.env_kwargs)
        self._envs: list[Any] = []
        self._calls = 0

    def _start(self, slot: int, seed: int, tokenizer: Any) -> _Episode:
        while len(self._envs) <= slot:
            self._envs.append(self._make())
        env = self._envs[slot]
        obs, info = env.reset(seed=seed)
        s = self.settings
        task = str(info.get("task", ""))
        msgs = build_messages(s.env_name, task, obs, (), info.get("admissible_actions"), s.prompt)
        ids = tokenizer.encode(render_prompt(msgs, tokenizer), add_special_tokens=False)
        return _Episode(env, seed, task, msgs, list(ids))

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, list]:
        s = self.settings
        tokenizer = trainer.processing_class
        model = trainer.accelerator.unwrap_model(trainer.model)
        episodes = [self._start(i, episode_seed(p), tokenizer) for i, p in enumerate(prompts)]
        backend = HFBackend(model, tokenizer)
        gcfg = GenerationConfig(
            max_new_tokens=s.max_new_tokens,
            temperature=float(trainer.args.temperature),
            top_p=float(trainer.args.top_p),
            stop_strings=s.stop_strings,
        )
        gen = torch.Generator(device=next(model.parameters()).device)
        gen.manual_seed(
            hash_free_seed(trainer.args.seed, trainer.accelerator.process_index, self._calls)
        )
        self._calls += 1
        was_training = model.training
        model.eval()
        try:
            for _ in range(s.max_turns):
                live = [e for e in episodes if not e.done]
                if not live:
                    break
                outs = backend.generate(
                    [e.prompt_ids + e.completion_ids for e in live], gcfg, generator=gen
                )
                for e, out in zip(live, outs, strict=True):
                    self._advance(e, out, tokenizer, backend)
        finally:
            model.train(was_training)
        return {
            "prompt_ids": [e.prompt_ids for e in episodes],
            "completion_ids": [e.completion_ids for e in episodes],
            "logprobs": [e.logprobs for e in episodes],
            "env_mask": [e.env_mask for e in episodes],
            "episode_won": [float(e.won) for e in episodes],
            "episode_return": [e.ret for e in episodes],
            "num_turns": [e.turns for e in episodes],
            "invalid_actions": [e.invalid for e in episodes],
        }

    def _advance(self, e: _Episode, out: Any, tokenizer: Any, backend: HFBackend) -> None:
        s = self.settings
        e.add(out.token_ids.tolist(), out.logprobs.tolist(), model=True)
        e.turns += 1
        parsed = parse_response(out.text, require_think=s.require_think)
        e.invalid += int(not parsed.valid)
        res = e.env.step(parsed.action)
        e.ret += float(res.reward)
        e.won = bool(res.info.get("won", False))
        ended_eos = out.finish_reason == "eos"
        e.messages.append({"role": "assistant", "content": out.text})
        if res.terminated or res.truncated or e.turns >= s.max_turns:
            e.done = True
            if out.finish_reason == "stop" and tokenizer.eos_token_id is not None:
                e.add([tokenizer.eos_token_id], None, model=False)
            return
        user = _user_message(s, e.task, res.observation, res.info)
        text = between_turns_text(
            tokenizer, e.messages[:-1], user, response_ended_with_eos=ended_eos
        )
        e.add(tokenizer.encode(text, add_special_tokens=False), None, model=False)
        e.messages.append(user)


def hash_free_seed(*parts: int) -> int:
    """A 63-bit seed from integers, the same in every process (no ``hash()``)."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


def make_rollout_func(
    env_name: str, env_kwargs: dict[str, Any] | None = None, **settings: Any
) -> EpisodeRollout:
    """A TRL ``rollout_func`` playing ``env_name`` episodes (keywords: :class:`RolloutSettings`)."""
    return EpisodeRollout(RolloutSettings(env_name, dict(env_kwargs or {}), **settings))


def success_reward(completions: list, episode_won: list[float], **_: Any) -> list[float]:
    """TRL reward function: 1.0 for a won episode, else 0.0."""
    return [float(w) for w in episode_won]


def invalid_action_penalty(penalty: float = 0.1) -> Callable[..., list[float]]:
    """TRL reward function: ``-penalty`` x the number of invalid turns in the episode, the same
    outcome penalty as ``empg train``'s ``rollout.invalid_penalty`` and the verl agent loop's."""

    def invalid_action_reward(
        completions: list, invalid_actions: list[int], **_: Any
    ) -> list[float]:
        return [-penalty * i for i in invalid_actions]

    return invalid_action_reward
