"""``HouseholdEnv``: an ALFWorld-style household benchmark that runs offline in pure Python.

    env = HouseholdEnv(split="valid_unseen", max_steps=50)
    obs, info = env.reset(seed=7)              # task 7 of valid_unseen, always the same
    obs, reward, terminated, truncated, info = env.step("go to cabinet 1")

Reward is 1.0 on the step that completes the task (then ``terminated`` and ``info["won"]``),
0.0 otherwise; episodes never end in failure early, they are truncated at ``max_steps``.
``info`` carries ``won``, ``task`` (the instruction sentence), ``task_type`` (ALFWorld's name),
``admissible_actions`` (sorted), ``room_type`` and ``split``. ``env.scene`` is the immutable
initial :class:`~empg.envs.household.scene.Scene` of the current task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from empg.envs.core import TextEnv, name_list
from empg.envs.household import text
from empg.envs.household.catalog import TASK_TYPES
from empg.envs.household.engine import HouseholdState
from empg.envs.household.expert import expert_step
from empg.envs.household.scene import Scene, check_split, generate_scene


class HouseholdEnv(TextEnv):
    """Procedurally generated ALFWorld-like household tasks (six task types, three splits)."""

    name = "household"

    def __init__(
        self,
        split: str = "train",
        max_steps: int = 50,
        task_types: Sequence[str] | None = None,
        expert_search_lamp: bool = False,
    ) -> None:
        """``task_types`` restricts the task mix: seed ``s`` plays ``task_types[s % n]`` (for
        curricula and small CPU jobs); None keeps the benchmark's own mix. A set is taken in
        sorted order, so that a seed is the same task in every process.
        ``expert_search_lamp``: the scripted expert (``expert_action``) searches for the light
        task's lamp instead of taking its place from the true state; the game is the same."""
        super().__init__()
        self.split = check_split(split)
        task_types = name_list(task_types)  # a name, a set (sorted) or a generator too
        if task_types is not None:
            bad = [t for t in task_types if t not in TASK_TYPES]
            if bad or not task_types:
                raise ValueError(
                    f"task_types must be a non-empty list drawn from {', '.join(TASK_TYPES)}; "
                    f"got {task_types!r}"
                )
        self.task_types = task_types
        if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
        self.max_steps = max_steps
        self.expert_search_lamp = bool(expert_search_lamp)
        self._scene: Scene | None = None
        self._state: HouseholdState | None = None
        self._next_seed = 0
        self._won = False

    @property
    def scene(self) -> Scene:
        """The initial scene of the current task (raises before the first ``reset``)."""
        if self._scene is None:
            raise RuntimeError("HouseholdEnv.scene is set by reset(); call reset() first")
        return self._scene

    @property
    def state(self) -> HouseholdState:
        """The live episode state (positions, open/closed, held object, object states)."""
        if self._state is None:
            raise RuntimeError("HouseholdEnv.state is set by reset(); call reset() first")
        return self._state

    def _reset(self, *, seed: int | None, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        unknown = sorted(set(options) - {"task_type"})
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; the only option is 'task_type'")
        task_type = options.get("task_type")
        if task_type is not None and task_type not in TASK_TYPES:
            raise ValueError(
                f"options['task_type'] must be one of {', '.join(TASK_TYPES)}; got {task_type!r}"
            )
        if seed is None:  # no seed: walk through the split's tasks in order
            seed = self._next_seed
        self._next_seed = seed + 1
        if task_type is None and self.task_types is not None:
            task_type = self.task_types[seed % len(self.task_types)]
        self._scene = generate_scene(self.split, seed, task_type)
        self._state = HouseholdState(self._scene)
        self._won = False
        overview = text.room_overview(text.display_order([r.id for r in self._scene.receptacles]))
        return text.welcome(overview, self._scene.task.instruction), self._info()

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        state = self.state
        obs = state.apply(action)
        self._won = state.goal_met()
        return obs, (1.0 if self._won else 0.0), self._won, self._info()

    def _info(self) -> dict[str, Any]:
        scene = self.scene
        return {
            "won": self._won,
            "task": scene.task.instruction,
            "task_type": scene.task.type,
            "admissible_actions": self.state.admissible(),
            "room_type": scene.room_type,
            "split": scene.split,
        }

    def expert_action(self) -> str:
        return expert_step(self.state, search_lamp=self.expert_search_lamp)[0]

    def expert_thought(self) -> str:
        return expert_step(self.state, search_lamp=self.expert_search_lamp)[1]
