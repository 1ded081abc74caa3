"""``empg_household_agent``: a verl (0.9.x) agent loop that plays ONE episode of a project
text environment (household, shop, search, alfworld, textworld) with a ReAct policy.

Every turn: the project's prompt (:func:`empg.agent.build_messages` + the tokenizer's chat
template via :func:`empg.agent.render_prompt`), one call to verl's LLM server
(``server_manager.generate`` -> token ids and log-probs), :func:`empg.agent.parse_response`
(an invalid response sends the environment's invalid action, ``INVALID_ACTION``, and costs
``invalid_action_penalty``), and one environment step (:func:`empg.envs.make`, run in a thread).
Model output is only matched with regular expressions, never evaluated.

Two layouts (``empg_env.layout``); the EMPG trainer (``empg_sync``) reads both, its steps
being the runs of 1s in the response masks of a trajectory's rows:

* ``sequence`` (default): ONE :class:`AgentLoopOutput` per episode. The prompt is the first
  ReAct prompt; the response holds every model turn (mask 1, with its log-probs) and, between
  turns, the environment's next user message (the ReAct step prompt for the new observation,
  without history since the conversation holds it; mask 0, log-prob 0), merged by verl's
  continuous-token builder. Each turn is generated from the whole conversation so far, i.e.
  from exactly the context verl trains on. The whole episode must fit
  ``data.max_response_length``; a turn that would not fit ends the episode.
* ``step``: one output per turn (verl's v1 trainer stores them as rows ``{uid}_{session}_{i}``),
  each with its own history-window prompt (task + last ``history`` steps), as in verl-agent.
  ``max_response_length`` is then per step. Only verl's v1 (TransferQueue) agent-loop worker
  accepts a list of outputs.

Reward: the outcome (1.0 if the episode was won, else 0.0, minus ``invalid_action_penalty``
per invalid response) is put in ``AgentLoopOutput.reward_score`` of every output, so verl
writes it as ``rm_scores`` on the last response token and skips its own reward function;
``extra_fields["reward_extra_info"]`` carries ``won``/``acc``/``invalid_steps``/``env_steps``
for verl's metrics and DAPO's ``filter_groups.metric``.

Configuration: the top-level ``empg_env`` section of the verl config (:class:`EnvLoopConfig`),
overridden per dataset row by ``extra_info`` keys ``env``, ``split``, ``seed`` (see
:func:`task_row`). Registered under :data:`AGENT_NAME` when this module is imported (the
plug-in module :mod:`empg.integrations.verl.plugin` does it in every verl process). This module
imports verl.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import (
    AgentLoopBase,
    AgentLoopMetrics,
    AgentLoopOutput,
    register,
)

from empg.agent.parsing import INVALID_ACTION, parse_response
from empg.agent.prompts import PromptConfig, Turn, build_messages, render_prompt
from empg.envs.core import TextEnv, make
from empg.errors import ConfigError
from empg.integrations.verl.config import _get, _plain, check_verl_config
from empg.train.schema import from_dict

AGENT_NAME = "empg_household_agent"
"""the agent-loop name (``actor_rollout_ref.rollout.agent.default_agent_loop`` or a dataset
row's ``agent_name``)"""

LAYOUTS = ("sequence", "step")


@dataclass(frozen=True)
class EnvLoopConfig:
    """The ``empg_env`` section read by the agent loop (not by verl)."""

    name: str = "household"
    """environment name for :func:`empg.envs.make` (a row's ``extra_info.env`` overrides)"""
    split: str | None = "train"
    """``split`` constructor argument (None: not passed, e.g. textworld); rows override"""
    max_steps: int | None = 50
    """the environment's own step limit (``max_steps`` constructor argument; None: not passed)"""
    max_turns: int | None = None
    """cap on model turns per episode (None: ``max_steps``, else
    ``rollout.multi_turn.max_assistant_turns``, else 50)"""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """further constructor arguments of the environment"""
    layout: str = "sequence"
    """``sequence`` (one row per episode) or ``step`` (one row per turn)"""
    history: int = 2
    """``step`` layout: past (observation, action) pairs in each prompt"""
    show_admissible: bool = True
    """list the admissible actions where the environment has them"""
    compact: bool = False
    """no system message / format reminder (:class:`empg.agent.PromptConfig`)"""
    first_observation: bool = False
    """``step`` layout: keep the episode's first observation in the prompt"""
    past_actions: int = 0
    """``step`` layout: list up to this many older actions"""
    recall_observation: bool = False
    """``step`` layout: after a no-op reply, show the latest informative observation"""
    invalid_action_penalty: float = 0.1
    """subtracted from the outcome for every invalid response"""
    require_think: bool = True
    """a valid response needs ``<think>...</think>`` before the action"""
    max_tokens_per_turn: int | None = None
    """cap on generated tokens per turn (None: what is left of ``response_length``)"""

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ConfigError(f"empg_env.layout must be one of {LAYOUTS}, got {self.layout!r}")
        for key in ("max_steps", "max_turns", "max_tokens_per_turn"):
            v = getattr(self, key)
            if v is not None and v < 1:
                raise ConfigError(f"empg_env.{key} must be >= 1 or null, got {v!r}")
        if self.invalid_action_penalty < 0:
            raise ConfigError(
                f"empg_env.invalid_action_penalty must be >= 0, got {self.invalid_action_penalty}"
            )

    @property
    def prompt(self) -> PromptConfig:
        return PromptConfig(
            history=self.history,
            show_admissible=self.show_admissible,
            compact=self.compact,
            first_observation=self.first_observation,
            past_actions=self.past_actions,
            recall_observation=self.recall_observation,
        )


def env_loop_config(config: Any) -> EnvLoopConfig:
    """:class:`EnvLoopConfig` from a verl config's ``empg_env`` section (absent: defaults);
    unknown keys and wrong types raise :class:`~empg.errors.ConfigError`."""
    section = _plain(_get(config, "empg_env", None))
    if section is None:
        return EnvLoopConfig()
    return from_dict(EnvLoopConfig, dict(section), prefix="empg_env.")


def task_row(env: str, seed: int, split: str | None = "train") -> dict[str, Any]:
    """One dataset row (for verl's ``RLHFDataset``, parquet or jsonl) naming one task.

    The ``prompt`` is a placeholder that verl requires; the agent loop builds its own prompt
    from the environment. ``extra_info`` carries the task (``env``, ``split``, ``seed``).
    """
    return {
        "data_source": f"empg/{env}",
        "agent_name": AGENT_NAME,
        "prompt": [{"role": "user", "content": f"{env} task {seed} ({split})"}],
        "reward_model": {"style": "rule", "ground_truth": ""},
        "extra_info": {"index": int(seed), "env": env, "split": split, "seed": int(seed)},
    }


REACT_TAGS = ("<think>", "</think>", "<action>", "</action>")


def response_text(tokenizer: Any, ids: list[int]) -> str:
    """Text of a generated turn without special tokens, except the ReAct tags: a tokenizer may
    register them as special tokens (the project's tiny one does), and parsing needs them."""
    text = tokenizer.decode(ids, skip_special_tokens=False)
    for tok in getattr(tokenizer, "all_special_tokens", []):
        if tok and tok not in REACT_TAGS:
            text = text.replace(tok, "")
    return text


@dataclass
class _Episode:
    task: str
    observation: str
    admissible: list[str] | None
    history: list[Turn] = field(default_factory=list)
    won: bool = False
    invalid: int = 0
    env_steps: int = 0
    reason: str = "max_turns"


@register(AGENT_NAME)
class EMPGHouseholdAgentLoop(AgentLoopBase):
    """verl agent loop playing one episode of an ``empg.envs`` text environment (see module doc).

    Built by verl's agent-loop worker (``hydra.utils.instantiate`` with the trainer config,
    server manager, tokenizer, ...); ``run`` receives the sampling parameters and one dataset
    row's fields.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("tools", None)  # verl passes its tool list to every agent loop
        super().__init__(*args, **kwargs)
        if _get(self.config, "algorithm.empg", None) is not None:
            # EMPG's knobs are set: refuse a run in which they would do nothing (verl builds
            # the trainer from trainer.v1.trainer_mode, so EMPGTrainerSync's own check never
            # runs in another mode, and nothing else would say so)
            check_verl_config(self.config)
        self.env_config = env_loop_config(self.config)
        self.response_length = int(self.rollout_config.response_length)
        multi_turn = _get(self.rollout_config, "multi_turn.max_assistant_turns", None)
        cfg = self.env_config
        self.max_turns = int(cfg.max_turns or cfg.max_steps or multi_turn or 50)

    # -- environment -------------------------------------------------------------------------
    def _make_env(self, extra: Mapping[str, Any]) -> tuple[str, TextEnv, int]:
        cfg = self.env_config
        name = str(extra.get("env") or cfg.name)
        kwargs = dict(cfg.env_kwargs)
        split = extra.get("split", cfg.split)
        if split is not None:
            kwargs["split"] = split
        if cfg.max_steps is not None:
            kwargs["max_steps"] = cfg.max_steps
        seed = extra.get("seed", extra.get("index", 0))
        return name, make(name, **kwargs), int(seed)

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    # -- model -------------------------------------------------------------------------------
    def _encode(self, messages: list[dict[str, str]]) -> list[int]:
        text = render_prompt(messages, self.tokenizer)
        ids = list(self.tokenizer.encode(text, add_special_tokens=False))
        return self._cap_text_prompt_length(ids)

    async def _generate(
        self, request_id: str, prompt_ids: list[int], sampling_params: dict[str, Any], budget: int
    ) -> tuple[list[int], list[float] | None, float]:
        params = dict(sampling_params)
        cap = self.env_config.max_tokens_per_turn
        params["max_tokens"] = max(1, min(budget, cap) if cap else budget)
        t0 = time.perf_counter()
        out = await self.server_manager.generate(
            request_id=request_id, prompt_ids=prompt_ids, sampling_params=params
        )
        ids = list(out.token_ids)[: params["max_tokens"]]
        lps = list(out.log_probs)[: len(ids)] if out.log_probs else None
        return ids, lps, time.perf_counter() - t0

    async def _act(self, ep: _Episode, env: TextEnv, ids: list[int]) -> bool:
        """Parse the turn, step the environment; True when the episode is over."""
        cfg = self.env_config
        text = response_text(self.tokenizer, ids)
        parsed = parse_response(text, require_think=cfg.require_think)
        action = parsed.action if parsed.valid else INVALID_ACTION
        ep.invalid += not parsed.valid
        res = await self._call(env.step, action)
        ep.env_steps += 1
        ep.history.append(Turn(ep.observation, action))
        ep.observation = res.observation
        ep.admissible = res.info.get("admissible_actions", ep.admissible)
        ep.won = bool(res.info.get("won", False))
        if res.terminated:
            ep.reason = "success" if ep.won else "terminated"
        elif res.truncated:
            ep.reason = "truncated"
        return bool(res.terminated or res.truncated)

    def _reward(self, ep: _Episode) -> tuple[float, dict[str, Any]]:
        score = (1.0 if ep.won else 0.0) - self.env_config.invalid_action_penalty * ep.invalid
        info = {
            "score": score,
            "won": float(ep.won),
            "acc": float(ep.won),
            "invalid_steps": ep.invalid,
            "env_steps": ep.env_steps,
        }
        return score, info

    # -- verl entry point --------------------------------------------------------------------
    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> Any:
        """Play one episode; return one :class:`AgentLoopOutput` (``sequence``) or a list of
        them, one per turn (``step``)."""
        extra = kwargs.get("extra_info") or {}
        name, env, seed = self._make_env(extra)
        try:
            obs, info = await self._call(lambda: env.reset(seed=seed))
            ep = _Episode(str(info.get("task", "")), obs, info.get("admissible_actions"))
            if self.env_config.layout == "step":
                return await self._run_steps(name, env, ep, sampling_params)
            return await self._run_sequence(name, env, ep, sampling_params)
        finally:
            await self._call(env.close)

    def _messages(self, name: str, ep: _Episode, history: list[Turn]) -> list[dict[str, str]]:
        return build_messages(
            name, ep.task, ep.observation, history, ep.admissible, self.env_config.prompt
        )

    def _extra(self, ep: _Episode, name: str, info: dict[str, Any]) -> dict[str, Any]:
        return {
            "reward_extra_info": info,
            "turn_scores": [],
            "tool_rewards": [],
            "empg_env": name,
            "empg_reason": ep.reason,
        }

    async def _run_sequence(
        self, name: str, env: TextEnv, ep: _Episode, sampling_params: dict[str, Any]
    ) -> AgentLoopOutput:
        request_id = uuid4().hex
        messages = self._messages(name, ep, [])
        prompt_ids = self._encode(messages)
        stream = list(prompt_ids)  # prompt + response so far, as the model sees it
        mask: list[int] = []
        lps: list[float] | None = []
        turns, t_gen, t_env = 0, 0.0, 0.0
        while turns < self.max_turns:
            budget = self.response_length - len(mask)
            if budget < 1:
                ep.reason = "response_length"
                break
            ids, turn_lps, dt = await self._generate(request_id, stream, sampling_params, budget)
            t_gen += dt
            turns += 1
            if turn_lps is None:  # the server gave no log-probs: none for the episode
                lps = None
            merged, mask, lps = await self.ct_merge_assistant_token(
                stream, ids, mask, lps, assistant_logprobs=turn_lps if lps is not None else None
            )
            stream = merged.token_ids
            t0 = time.perf_counter()
            done = await self._act(ep, env, ids)
            t_env += time.perf_counter() - t0
            if done or turns >= self.max_turns:
                break
            text = response_text(self.tokenizer, ids)
            before = [*messages, {"role": "assistant", "content": text}]
            user = self._messages(name, ep, [])[-1]
            merged, new_mask, new_lps = await self.ct_merge_context_msg(
                before, [*before, user], stream, mask, lps
            )
            if len(new_mask) >= self.response_length:
                ep.reason = "response_length"
                break
            messages, stream, mask, lps = [*before, user], merged.token_ids, new_mask, new_lps
        score, info = self._reward(ep)
        n = len(mask)
        return AgentLoopOutput(
            prompt_ids=stream[: len(stream) - n],
            response_ids=stream[len(stream) - n :][: self.response_length],
            response_mask=mask[: self.response_length],
            response_logprobs=lps[: self.response_length] if lps is not None else None,
            reward_score=score,
            num_turns=2 * turns,
            metrics=AgentLoopMetrics(generate_sequences=t_gen, tool_calls=t_env),
            extra_fields=self._extra(ep, name, info),
        )

    async def _run_steps(
        self, name: str, env: TextEnv, ep: _Episode, sampling_params: dict[str, Any]
    ) -> list[AgentLoopOutput]:
        request_id = uuid4().hex
        rows: list[tuple[list[int], list[int], list[float] | None, float, float]] = []
        for _ in range(self.max_turns):
            prompt_ids = self._encode(self._messages(name, ep, ep.history))
            ids, lps, dt = await self._generate(
                request_id, prompt_ids, sampling_params, self.response_length
            )
            t0 = time.perf_counter()
            done = await self._act(ep, env, ids)
            rows.append((prompt_ids, ids, lps, dt, time.perf_counter() - t0))
            if done:
                break
        score, info = self._reward(ep)
        return [
            AgentLoopOutput(
                prompt_ids=p,
                response_ids=r,
                response_mask=[1] * len(r),
                response_logprobs=lp,
                reward_score=score,
                num_turns=2,
                metrics=AgentLoopMetrics(generate_sequences=dt, tool_calls=te),
                extra_fields=self._extra(ep, name, info),
            )
            for p, r, lp, dt, te in rows
        ]


__all__ = [
    "AGENT_NAME",
    "EMPGHouseholdAgentLoop",
    "EnvLoopConfig",
    "env_loop_config",
    "response_text",
    "task_row",
]
