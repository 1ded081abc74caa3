"""The text-environment contract (Gymnasium-style, for text), its registry and ``check_env``.

An environment takes an action string and returns an observation string::

    env = empg.envs.make("household", split="train")
    obs, info = env.reset(seed=3)
    result = env.step("go to cabinet 1")        # StepResult(observation, reward, terminated, ...)

Rules every environment follows:

* ``reset(seed=s)`` with the same constructor arguments gives the same task and, for the same
  actions, the same transitions, in any process (no use of ``hash()`` or global RNGs).
* ``step`` accepts ANY string (empty, huge, odd unicode, markup) and answers with the benchmark's
  own invalid-action observation; it never evaluates the text and never raises for its content.
* ``terminated`` (the task ended: success or failure) and ``truncated`` (step limit) stay apart.
* After an episode has ended, ``step`` raises :class:`ResetNeeded` until ``reset`` is called.
* ``info`` carries at least ``won`` (bool), ``task`` (instruction text), ``task_type`` (str) and,
  where the benchmark has them, ``admissible_actions`` (list of str).
* ``expert_action()`` returns a scripted expert's next action; ``expert_thought()`` a short
  reason for it (used for supervised warm starts).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from empg.errors import EmpgError
from empg.registry import Registry

REQUIRED_INFO_KEYS = ("won", "task", "task_type")


class ResetNeeded(EmpgError, RuntimeError):
    """``step`` was called before ``reset`` or after the episode ended."""


@dataclass(frozen=True)
class StepResult:
    """What ``TextEnv.step`` returns. Unpacks like Gymnasium's 5-tuple."""

    observation: str
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any] = field(default_factory=dict)

    def __iter__(self):
        return iter((self.observation, self.reward, self.terminated, self.truncated, self.info))


class TextEnv(abc.ABC):
    """Base class of every text environment.

    Subclasses implement ``_reset`` and ``_step``; the base class enforces the episode
    bookkeeping (step limit -> ``truncated``, :class:`ResetNeeded` after the end) and coerces
    any action to ``str`` so subclasses never see non-strings.
    """

    #: registry name, set by subclasses
    name: str = "text-env"
    #: episode step limit (truncation); subclasses/constructors set it
    max_steps: int = 50

    def __init__(self) -> None:
        self._needs_reset = True
        self._steps = 0

    # -- public API -------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
        obs, info = self._reset(seed=seed, options=dict(options or {}))
        self._needs_reset = False
        self._steps = 0
        return obs, info

    def step(self, action: str) -> StepResult:
        if self._needs_reset:
            raise ResetNeeded(
                f"{self.name}: step() called before reset() or after the episode ended; "
                "call reset() first"
            )
        if not isinstance(action, str):
            action = str(action)
        obs, reward, terminated, info = self._step(action)
        self._steps += 1
        truncated = (not terminated) and self._steps >= self.max_steps
        if terminated or truncated:
            self._needs_reset = True
        return StepResult(str(obs), float(reward), bool(terminated), bool(truncated), info)

    @property
    def steps_taken(self) -> int:
        return self._steps

    def expert_action(self) -> str:
        """The scripted expert's next action from the current state."""
        raise NotImplementedError(f"{self.name} has no expert")

    def expert_thought(self) -> str:
        """A short reason for ``expert_action()``, for supervised warm starts."""
        return ""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (processes, files). Safe to call twice."""

    # -- to implement -------------------------------------------------------------------------
    @abc.abstractmethod
    def _reset(self, *, seed: int | None, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Start an episode; return (observation, info)."""

    @abc.abstractmethod
    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        """Apply ``action``; return (observation, reward, terminated, info)."""


ENVIRONMENTS: Registry[Callable[..., TextEnv]] = Registry("environment")


def name_list(value: Any) -> list[str] | None:
    """A constructor's list-of-names argument (``task_types``) in one form: None stays None, one
    name is a list of it (not of its characters), a set is sorted (its order differs between
    processes), anything else iterable, a generator too, is read once into a list."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, set | frozenset):
        return sorted(value)
    return list(value)


def register(name: str, factory: Callable[..., TextEnv] | None = None, *, overwrite: bool = False):
    """Register an environment factory under ``name`` (usable as a decorator)."""
    deco = ENVIRONMENTS.register(name, overwrite=overwrite)
    return deco if factory is None else deco(factory)


def make(name: str, **kwargs: Any) -> TextEnv:
    """Build the environment registered as ``name`` with constructor ``kwargs``."""
    return ENVIRONMENTS.get(name)(**kwargs)


def names() -> list[str]:
    """Names of all registered environments."""
    return ENVIRONMENTS.names()
