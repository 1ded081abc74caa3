"""What rollouts produce: step rows, trajectory summaries, and the two tensor layouts.

* :meth:`RolloutBatch.step_table` -> :class:`StepTable`, one row per step (verl-agent layout):
  the columns the core functions take (``traj_id``, ``step_index``, ``group_id``,
  ``outcome_reward`` per step, padded response ids / mask / old log-probs / entropies).
* :meth:`RolloutBatch.to_sequences` -> :class:`Sequences`, one row per trajectory: the first
  prompt, then every response with the environment's next observation between turns
  (response-mask 0 there), for engines that train on whole conversations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from empg.errors import InputError


@dataclass
class StepRow:
    """One agent step (one model turn + one environment step)."""

    traj_id: int
    """trajectory id (index of the episode in the batch)"""
    step_index: int
    """0-based turn index within the trajectory"""
    group_id: int
    """group (task) id: trajectories of a group start from the same task"""
    task_seed: int
    """environment seed of the task"""
    observation: str
    """the observation the prompt was built from (what the agent saw before acting)"""
    prompt_ids: list[int]
    """token ids of the rendered prompt"""
    response_ids: torch.Tensor
    """``(T,)`` long, generated tokens"""
    logprobs: torch.Tensor
    """``(T,)`` float32, sampling log-prob of each generated token"""
    entropies: torch.Tensor
    """``(T,)`` float32, entropy of each token's sampling distribution (nats)"""
    finish_reason: str
    """``"stop"``, ``"eos"`` or ``"length"``"""
    response_text: str
    """decoded response"""
    action: str
    """action sent to the environment (``INVALID_ACTION`` when the response was invalid)"""
    valid: bool
    """the response followed the format"""
    parse_error: str | None
    """why it is invalid"""
    env_reward: float
    """reward returned by the environment"""
    reward: float
    """env_reward minus the invalid-format penalty (when invalid) and the no-op penalty (when
    the valid action got a no-op reply and ``noop_penalty`` is set)"""
    terminated: bool
    """the episode ended (success, failure or environment fault)"""
    truncated: bool
    """the episode was cut (environment step limit or the rollout's max_turns)"""
    won: bool
    """info["won"] after the step"""
    task_type: str
    """info["task_type"]"""
    error: str | None
    """environment fault that ended the episode at this step (exception or timeout)"""
    allowed: list[tuple[int, ...] | None] | None = None
    """with ``RolloutConfig.restricted_logprobs``: per response token, the ids it was sampled
    among (None for a free token); ``logprobs`` and ``entropies`` are then those of that
    restricted distribution, and trainers score the token the same way"""


@dataclass
class Trajectory:
    """Summary of one episode."""

    traj_id: int
    """trajectory id"""
    group_id: int
    """group id"""
    task_seed: int
    """environment seed of the task"""
    initial_observation: str
    """first observation (identical within a group)"""
    task: str
    """task instruction"""
    outcome_reward: float
    """outcome reward used for advantages (see RolloutConfig.outcome)"""
    env_reward_sum: float
    """sum of the environment's rewards"""
    length: int
    """number of steps"""
    invalid_steps: int
    """steps whose response was invalid"""
    won: bool
    """the task was solved"""
    reason: str
    """how it ended: success | terminated | truncated | max_turns | error: <why>"""
    noop_steps: int = 0
    """valid actions the environment answered with a no-op reply (RolloutConfig.noop_penalty)"""


@dataclass(frozen=True)
class StepTable:
    """One row per step; ``S`` steps, responses right-padded to ``R``, prompts left-padded to
    ``P``. Masks are long 0/1."""

    traj_id: torch.Tensor
    """``(S,)`` long"""
    step_index: torch.Tensor
    """``(S,)`` long"""
    group_id: torch.Tensor
    """``(S,)`` long"""
    outcome_reward: torch.Tensor
    """``(S,)`` float32, the trajectory's outcome reward repeated on each of its steps"""
    reward: torch.Tensor
    """``(S,)`` float32, the step's own reward (penalty included)"""
    valid: torch.Tensor
    """``(S,)`` bool"""
    response_ids: torch.Tensor
    """``(S, R)`` long, pad id after each response"""
    response_mask: torch.Tensor
    """``(S, R)`` long, 1 on generated tokens"""
    old_logprobs: torch.Tensor
    """``(S, R)`` float32, 0 on padding"""
    entropies: torch.Tensor
    """``(S, R)`` float32, 0 on padding"""
    prompt_ids: torch.Tensor
    """``(S, P)`` long, left-padded"""
    prompt_mask: torch.Tensor
    """``(S, P)`` long"""


@dataclass(frozen=True)
class Sequences:
    """One row per trajectory (``B`` trajectories with at least one step)."""

    traj_id: torch.Tensor
    """``(B,)`` long"""
    group_id: torch.Tensor
    """``(B,)`` long"""
    outcome_reward: torch.Tensor
    """``(B,)`` float32"""
    prompt_ids: torch.Tensor
    """``(B, P)`` long, the FIRST prompt of each trajectory, left-padded"""
    prompt_mask: torch.Tensor
    """``(B, P)`` long"""
    response_ids: torch.Tensor
    """``(B, L)`` long, responses and the environment tokens between them, right-padded"""
    attention_mask: torch.Tensor
    """``(B, L)`` long, 1 on every real token (model or environment)"""
    response_mask: torch.Tensor
    """``(B, L)`` long, 1 on model tokens only (each maximal run of 1s is one step)"""
    old_logprobs: torch.Tensor
    """``(B, L)`` float32 recorded sampling log-probs, 0 off the response mask"""
    entropies: torch.Tensor
    """``(B, L)`` float32 recorded entropies, 0 off the response mask"""


def _left_pad(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.as_tensor(list(r), dtype=torch.long)
            mask[i, width - len(r) :] = 1
    return ids, mask


def _right_pad(rows: Sequence[torch.Tensor], fill: float | int, dtype) -> torch.Tensor:
    width = max((int(r.numel()) for r in rows), default=0)
    out = torch.full((len(rows), width), fill, dtype=dtype)
    for i, r in enumerate(rows):
        out[i, : r.numel()] = r
    return out


@dataclass
class RolloutBatch:
    """Steps and trajectories of one call to :func:`~empg.agent.rollout.collect_rollouts`.

    ``steps`` are ordered by (turn, trajectory); ``trajectories[i].traj_id == i``.
    """

    steps: list[StepRow]
    """every step row"""
    trajectories: list[Trajectory]
    """one summary per episode"""
    pad_token_id: int
    """pad id used by the tensor layouts"""
    env_turn_ids: Callable[[str, bool], list[int]] | None = None
    """(observation, the previous response ended with EOS) -> token ids placed between two
    responses in :meth:`to_sequences`"""

    def rows_of(self, traj_id: int) -> list[StepRow]:
        """Steps of one trajectory, in turn order."""
        return sorted((s for s in self.steps if s.traj_id == traj_id), key=lambda s: s.step_index)

    def step_table(self) -> StepTable:
        """Tensors of all step rows (see :class:`StepTable`); rows in ``self.steps`` order."""
        if not self.steps:
            raise InputError("the batch holds no steps (every episode failed at reset?)")
        outcome = {t.traj_id: t.outcome_reward for t in self.trajectories}
        s = self.steps

        def col(fn: Callable[[StepRow], Any], dtype) -> torch.Tensor:
            return torch.tensor([fn(r) for r in s], dtype=dtype)

        resp = [r.response_ids for r in s]
        prompt_ids, prompt_mask = _left_pad([r.prompt_ids for r in s], self.pad_token_id)
        ones = [torch.ones(r.numel(), dtype=torch.long) for r in resp]
        return StepTable(
            traj_id=col(lambda r: r.traj_id, torch.long),
            step_index=col(lambda r: r.step_index, torch.long),
            group_id=col(lambda r: r.group_id, torch.long),
            outcome_reward=col(lambda r: outcome[r.traj_id], torch.float32),
            reward=col(lambda r: r.reward, torch.float32),
            valid=col(lambda r: r.valid, torch.bool),
            response_ids=_right_pad(resp, self.pad_token_id, torch.long),
            response_mask=_right_pad(ones, 0, torch.long),
            old_logprobs=_right_pad([r.logprobs for r in s], 0.0, torch.float32),
            entropies=_right_pad([r.entropies for r in s], 0.0, torch.float32),
            prompt_ids=prompt_ids,
            prompt_mask=prompt_mask,
        )

    def to_sequences(self) -> Sequences:
        """One row per trajectory with at least one step (see :class:`Sequences`).

        Between response ``t`` and ``t+1`` come the tokens of step ``t+1``'s observation, as
        rendered by ``env_turn_ids`` (mask 0; without the turn-closing token when response ``t``
        ended with EOS, which wrote it). The recorded log-probs were computed under the
        per-step prompts (history window), not under this concatenated context: an engine that
        recomputes log-probs over the sequence gets different numbers. Step entropies and the
        step structure are the same in both layouts.
        """
        if self.env_turn_ids is None:
            raise InputError("to_sequences needs env_turn_ids (set by collect_rollouts)")
        trajs = [t for t in self.trajectories if t.length > 0]
        if not trajs:
            raise InputError("the batch holds no steps (every episode failed at reset?)")
        ids, resp_mask, lps, ents, firsts = [], [], [], [], []
        for t in trajs:
            rows = self.rows_of(t.traj_id)
            firsts.append(rows[0].prompt_ids)
            parts_i, parts_m, parts_l, parts_e = [], [], [], []
            for j, r in enumerate(rows):
                if j > 0:
                    after_eos = rows[j - 1].finish_reason == "eos"  # it closed its own turn
                    turn = self.env_turn_ids(r.observation, after_eos)
                    env = torch.as_tensor(turn, dtype=torch.long)
                    if env.numel() == 0:
                        raise InputError("env_turn_ids returned no tokens; turns would merge")
                    parts_i.append(env)
                    parts_m.append(torch.zeros_like(env))
                    parts_l.append(torch.zeros(env.numel()))
                    parts_e.append(torch.zeros(env.numel()))
                parts_i.append(r.response_ids)
                parts_m.append(torch.ones_like(r.response_ids))
                parts_l.append(r.logprobs)
                parts_e.append(r.entropies)
            ids.append(torch.cat(parts_i))
            resp_mask.append(torch.cat(parts_m))
            lps.append(torch.cat(parts_l).float())
            ents.append(torch.cat(parts_e).float())
        prompt_ids, prompt_mask = _left_pad(firsts, self.pad_token_id)
        return Sequences(
            traj_id=torch.tensor([t.traj_id for t in trajs], dtype=torch.long),
            group_id=torch.tensor([t.group_id for t in trajs], dtype=torch.long),
            outcome_reward=torch.tensor([t.outcome_reward for t in trajs], dtype=torch.float32),
            prompt_ids=prompt_ids,
            prompt_mask=prompt_mask,
            response_ids=_right_pad(ids, self.pad_token_id, torch.long),
            attention_mask=_right_pad([torch.ones_like(x) for x in ids], 0, torch.long),
            response_mask=_right_pad(resp_mask, 0, torch.long),
            old_logprobs=_right_pad(lps, 0.0, torch.float32),
            entropies=_right_pad(ents, 0.0, torch.float32),
        )
