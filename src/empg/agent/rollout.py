"""Grouped multi-turn rollouts: N tasks x a group of n episodes each, stepped together.

::

    cfg = RolloutConfig(env_name="household", env_kwargs={"split": "train"}, group_size=8)
    batch = collect_rollouts(HFBackend(model, tokenizer), task_seeds=[0, 1, 2, 3], cfg=cfg)
    table = batch.step_table()          # one row per step, ready for empg.step_outcome_advantages

Each turn, for every live episode: build the prompt with :func:`empg.agent.build_messages`
(task, last ``history`` (observation, action) pairs, current observation, admissible actions)
and :func:`empg.agent.render_prompt` (the tokenizer's chat template if it has one), generate ONE
batch for all live episodes, parse each response with :func:`empg.agent.parse_response`, and step
every environment through an :class:`~empg.envs.pool.EnvPool`. An invalid response sends
``INVALID_ACTION`` (the environment answers with its own invalid-action text), is flagged
``valid=False`` and its step reward is lowered by ``invalid_penalty``.

An environment fault (exception or timeout in the pool) ends only that episode; its step row and
trajectory carry the reason. ``max_turns`` caps every episode on top of the environment's own
``max_steps``; a capped episode's last row is ``truncated`` and its reason ``"max_turns"``.

Outcome reward (``RolloutConfig.outcome``), the number group advantages are computed from:

* ``"success"`` (default): 1.0 if the episode was won, else 0.0;
* ``"reward_sum"``: the sum of the environment's rewards over the episode;

minus ``invalid_penalty`` for every invalid step in both cases (so the penalty reaches the
outcome-based advantages; with ``invalid_penalty=0`` the outcome is exactly success / reward sum),
and minus ``noop_penalty`` (default 0) for every valid action the environment answered with a
no-op reply (``prompt.noop_observations``, e.g. household's "Nothing happens.").
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from empg.agent.batch import RolloutBatch, StepRow, Trajectory
from empg.agent.generation import GenerationBackend, GenerationConfig, PrefixCache
from empg.agent.parsing import INVALID_ACTION, parse_response
from empg.agent.prompts import PromptConfig, Turn, between_turns_text, build_messages, render_prompt
from empg.envs.core import make
from empg.envs.pool import EnvPool
from empg.errors import ConfigError, InputError

OUTCOMES = ("success", "reward_sum")


@dataclass(frozen=True)
class RolloutConfig:
    """How a batch of grouped rollouts is collected."""

    env_name: str
    """registered environment name (``empg.envs.names()``)"""
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """constructor arguments of every environment (split, max_steps, ...)"""
    group_size: int = 8
    """episodes per task (n); all start from the same task seed"""
    max_turns: int = 30
    """cap on turns per episode, on top of the environment's own max_steps"""
    prompt: PromptConfig = field(default_factory=PromptConfig)
    """prompt settings (history k, admissible actions, compact mode)"""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """sampling settings of every turn"""
    invalid_penalty: float = 0.1
    """subtracted from the reward of a step whose response is invalid (0: no penalty)"""
    noop_penalty: float = 0.0
    """subtracted from the reward of a step whose valid action the environment answers with one
    of ``prompt.noop_observations`` (an action that changed nothing; 0: no penalty)"""
    require_think: bool = True
    """a valid response needs a <think> block before the action"""
    outcome: str = "success"
    """outcome reward: "success" (1 if won) or "reward_sum" (sum of env rewards)"""
    pool_backend: str = "thread"
    """EnvPool backend used when collect_rollouts builds its own pool"""
    step_timeout: float | None = 60.0
    """seconds an environment step may take before its episode is ended (None: no limit)"""
    reset_timeout: float | None = None
    """the same for resets"""
    seed: int | None = None
    """seed of the sampling generator (None: generation.seed, then random)"""
    prefix_cache: bool = True
    """reuse each episode's previous prompt's KV cache for the common token prefix of its next
    prompt, on backends that support it (HFBackend); the same tokens, fewer to run"""
    constrain_actions: bool = False
    """sample the text inside <action> </action> only among the environment's admissible actions
    (where it lists them; :mod:`empg.agent.constrain`), else among its ``action_candidates``
    (search: searches and answers spelled from the names shown so far); needs a backend that
    supports it. A template with a slot, such as shop's ``search[<query>]``, is spelled up to
    the slot and the rest is left free"""
    restricted_logprobs: bool = False
    """with ``constrain_actions``: record each masked action token's log-prob and entropy under
    the distribution it was sampled from (renormalised over the allowed tokens) and keep the
    allowed ids in the step rows, so that training scores the constrained policy that acted
    (a token with one allowed id is then forced: log-prob 0, no gradient)"""

    def __post_init__(self) -> None:
        if not isinstance(self.env_name, str) or not self.env_name:
            raise ConfigError(
                f"env_name must be a registered environment name, got {self.env_name!r}"
            )
        for name in ("group_size", "max_turns"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {v!r}")
        for name in ("invalid_penalty", "noop_penalty"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ConfigError(f"{name} must be a number >= 0, got {v!r}")
        if self.outcome not in OUTCOMES:
            raise ConfigError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        if self.restricted_logprobs and not self.constrain_actions:
            raise ConfigError("restricted_logprobs needs constrain_actions=True")
        if not isinstance(self.prompt, PromptConfig):
            raise ConfigError(f"prompt must be a PromptConfig, got {type(self.prompt).__name__}")
        if not isinstance(self.generation, GenerationConfig):
            raise ConfigError(
                f"generation must be a GenerationConfig, got {type(self.generation).__name__}"
            )


@dataclass
class _Episode:
    """Live state of one episode."""

    traj_id: int
    group_id: int
    seed: int
    task: str = ""
    observation: str = ""
    initial_observation: str = ""
    admissible: list[str] | None = None
    candidates: list[str] | None = None  # info["action_candidates"], for envs without a list
    history: list[Turn] = field(default_factory=list)
    rows: list[StepRow] = field(default_factory=list)
    done: bool = False
    won: bool = False
    reason: str = ""
    noops: int = 0


def env_turn_ids(
    backend: GenerationBackend, observation: str, after_eos: bool = False
) -> list[int]:
    """Tokens of the environment's turn between two responses (sequence layout): a user message
    holding the observation. With a chat template, what :func:`between_turns_text` finds
    the template writes after an assistant message: the end of the assistant's turn (e.g.
    Llama 3's ``<|eot_id|>``; left out when ``after_eos``, the previous response having
    written it), the user turn, the next assistant header; never a second BOS or a repeated
    default system message. Without one, :func:`render_prompt`'s plain layout of the user
    message."""
    msg = {"role": "user", "content": f"Observation: {observation}"}
    tok = backend.tokenizer
    if tok is not None and getattr(tok, "chat_template", None):
        task = [{"role": "user", "content": "Task."}]
        return backend.encode(between_turns_text(tok, task, msg, response_ended_with_eos=after_eos))
    return backend.encode(render_prompt([msg], tok))


def _make_generator(cfg: RolloutConfig) -> torch.Generator:
    g = torch.Generator()
    seed = cfg.seed if cfg.seed is not None else cfg.generation.seed
    if seed is None:
        g.seed()
    else:
        g.manual_seed(seed)
    return g


def collect_rollouts(
    backend: GenerationBackend,
    task_seeds: Sequence[int],
    cfg: RolloutConfig,
    *,
    pool: EnvPool | None = None,
    generator: torch.Generator | None = None,
    on_turn: Callable[[int, int, int], None] | None = None,
) -> RolloutBatch:
    """Run ``len(task_seeds) x cfg.group_size`` episodes to the end and record every step.

    Args:
        backend: a :class:`~empg.agent.generation.GenerationBackend` (e.g. ``HFBackend``).
        task_seeds: one environment seed per task (group ``g`` uses ``task_seeds[g]``).
        cfg: rollout settings.
        pool: an EnvPool of exactly ``len(task_seeds) * group_size`` environments of
            ``cfg.env_name`` to reuse (None: one is built and closed here).
        generator: sampling RNG (None: seeded from ``cfg.seed`` / ``cfg.generation.seed``).
        on_turn: called after every turn with (turns done, episodes finished, episodes), for
            progress lines; it does not change the rollout.

    Returns:
        A :class:`~empg.agent.batch.RolloutBatch`. Trajectory ``i`` belongs to group
        ``i // group_size``.
    """
    seeds = [int(s) for s in task_seeds]
    if not seeds:
        raise InputError("task_seeds must hold at least one seed")
    if any(s < 0 for s in seeds):
        raise InputError(f"task seeds must be >= 0, got {seeds}")
    n = len(seeds) * cfg.group_size
    own_pool = pool is None
    if pool is None:
        check_env_builds(cfg.env_name, dict(cfg.env_kwargs))
        fn = functools.partial(make, cfg.env_name, **dict(cfg.env_kwargs))
        pool = EnvPool(
            [fn] * n,
            backend=cfg.pool_backend,
            step_timeout=cfg.step_timeout,
            reset_timeout=cfg.reset_timeout,
        )
    elif len(pool) != n:
        raise InputError(
            f"pool has {len(pool)} environments but {len(seeds)} tasks x group_size "
            f"{cfg.group_size} = {n} are needed"
        )
    if generator is None:
        generator = _make_generator(cfg)
    try:
        episodes = _run(backend, pool, seeds, cfg, generator, on_turn)
    finally:
        if own_pool:
            pool.close()
    steps = sorted((r for e in episodes for r in e.rows), key=lambda r: (r.step_index, r.traj_id))
    return RolloutBatch(
        steps=steps,
        trajectories=[_summary(e, cfg) for e in episodes],
        pad_token_id=backend.pad_token_id,
        env_turn_ids=functools.partial(env_turn_ids, backend),
    )


_BUILDS_CHECKED: set[str] = set()


def check_env_builds(name: str, kwargs: dict[str, Any]) -> None:
    """Build one environment here, once per process and settings, so a wrong split or keyword
    raises a ConfigError now instead of failing every episode inside the pool's workers (which
    would look like a run of faulty episodes)."""
    key = f"{name}:{sorted(kwargs.items())!r}"
    if key in _BUILDS_CHECKED:
        return
    try:
        env = make(name, **kwargs)
    except (ImportError, TypeError, ValueError, KeyError, OSError) as exc:
        raise ConfigError(f"cannot build environment {name!r} with {kwargs}: {exc}") from exc
    env.close()
    _BUILDS_CHECKED.add(key)


def _run(
    backend: GenerationBackend,
    pool: EnvPool,
    seeds: list[int],
    cfg: RolloutConfig,
    generator: torch.Generator,
    on_turn: Callable[[int, int, int], None] | None = None,
) -> list[_Episode]:
    episodes = [
        _Episode(traj_id=i, group_id=i // cfg.group_size, seed=seeds[i // cfg.group_size])
        for i in range(len(seeds) * cfg.group_size)
    ]
    for e, res in zip(episodes, pool.reset_all([e.seed for e in episodes]), strict=True):
        e.task = str(res.info.get("task", ""))
        e.observation = e.initial_observation = res.observation
        e.admissible = res.info.get("admissible_actions")
        e.candidates = res.info.get("action_candidates")
        if "error" in res.info:
            e.done, e.reason = True, f"error: {res.info['error']}"
    cache = PrefixCache() if cfg.prefix_cache and _supports_prefix(backend) else None
    if cfg.constrain_actions and not getattr(backend, "supports_action_constraint", False):
        raise ConfigError(
            "constrain_actions needs a backend that supports it (HFBackend); "
            f"{type(backend).__name__} does not"
        )
    for turn in range(cfg.max_turns):
        live = [e for e in episodes if not e.done]
        if not live:
            break
        prompts = []
        for e in live:
            msgs = build_messages(
                cfg.env_name, e.task, e.observation, e.history, e.admissible, cfg.prompt
            )
            prompts.append(backend.encode(render_prompt(msgs, backend.tokenizer)))
        extra: dict[str, Any] = {}
        if cache is not None:
            extra.update(prefix_cache=cache, keys=[e.traj_id for e in live])
        if cfg.constrain_actions:
            # the admissible list; where an environment has none (search), its candidates
            extra["actions"] = [e.admissible or e.candidates for e in live]
            if cfg.restricted_logprobs:
                extra["restricted_logprobs"] = True
        gens = backend.generate(prompts, cfg.generation, generator=generator, **extra)
        parsed = [parse_response(g.text, require_think=cfg.require_think) for g in gens]
        actions: list[str | None] = [None] * len(episodes)
        for e, p in zip(live, parsed, strict=True):
            actions[e.traj_id] = p.action if p.valid else INVALID_ACTION
        results = pool.step(actions)
        for e, prompt, g, p in zip(live, prompts, gens, parsed, strict=True):
            res = results[e.traj_id]
            assert res is not None  # the pool steps every env it has not finished
            error = res.info.get("error")
            capped = turn + 1 == cfg.max_turns and not (res.terminated or res.truncated)
            penalty = 0.0 if p.valid else float(cfg.invalid_penalty)
            if p.valid and res.observation.strip() in cfg.prompt.noop_observations:
                e.noops += 1
                penalty += float(cfg.noop_penalty)
            e.rows.append(
                StepRow(
                    traj_id=e.traj_id,
                    step_index=turn,
                    group_id=e.group_id,
                    task_seed=e.seed,
                    observation=e.observation,
                    prompt_ids=prompt,
                    response_ids=g.token_ids,
                    logprobs=g.logprobs,
                    entropies=g.entropies,
                    finish_reason=g.finish_reason,
                    response_text=g.text,
                    action=actions[e.traj_id] or INVALID_ACTION,
                    valid=p.valid,
                    parse_error=p.error,
                    env_reward=float(res.reward),
                    reward=float(res.reward) - penalty,
                    terminated=bool(res.terminated),
                    truncated=bool(res.truncated) or capped,
                    won=bool(res.info.get("won", False)),
                    task_type=str(res.info.get("task_type", "")),
                    error=None if error is None else str(error),
                    allowed=g.allowed if cfg.restricted_logprobs else None,
                )
            )
            e.history.append(Turn(e.observation, actions[e.traj_id] or INVALID_ACTION))
            e.observation = res.observation
            e.admissible = res.info.get("admissible_actions", e.admissible)
            e.candidates = res.info.get("action_candidates", e.candidates)
            e.won = bool(res.info.get("won", False))
            if error is not None:
                e.done, e.reason = True, f"error: {error}"
            elif res.terminated:
                e.done, e.reason = True, "success" if e.won else "terminated"
            elif res.truncated:
                e.done, e.reason = True, "truncated"
            elif capped:
                e.done, e.reason = True, "max_turns"
            if e.done and cache is not None:
                cache.drop(e.traj_id)
        if on_turn is not None:
            on_turn(turn + 1, sum(e.done for e in episodes), len(episodes))
    return episodes


def _supports_prefix(backend: GenerationBackend) -> bool:
    return bool(getattr(backend, "supports_prefix_cache", False))


def _summary(e: _Episode, cfg: RolloutConfig) -> Trajectory:
    env_sum = sum(r.env_reward for r in e.rows)
    invalid = sum(not r.valid for r in e.rows)
    base = (1.0 if e.won else 0.0) if cfg.outcome == "success" else env_sum
    return Trajectory(
        traj_id=e.traj_id,
        group_id=e.group_id,
        task_seed=e.seed,
        initial_observation=e.initial_observation,
        task=e.task,
        outcome_reward=base - cfg.invalid_penalty * invalid - cfg.noop_penalty * e.noops,
        env_reward_sum=env_sum,
        length=len(e.rows),
        invalid_steps=invalid,
        noop_steps=e.noops,
        won=e.won,
        reason=e.reason,
    )
