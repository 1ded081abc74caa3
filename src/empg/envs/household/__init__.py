"""ALFWorld-style household benchmark: procedural rooms, ALFWorld's six task types and grammar.

Modules: ``catalog`` (receptacle/object/room data), ``scene`` (generation and splits),
``text`` (ALFWorld sentences), ``engine`` (state and command semantics), ``expert``
(scripted planner), ``env`` (:class:`HouseholdEnv`), ``export`` (scenes as real ALFWorld games,
needs ALFWorld to write them). See docs/env_household.md.
"""

from empg.envs.household.catalog import TASK_TYPES
from empg.envs.household.env import HouseholdEnv
from empg.envs.household.scene import SPLITS, Item, Receptacle, Scene, Task, generate_scene

__all__ = [
    "SPLITS",
    "TASK_TYPES",
    "HouseholdEnv",
    "Item",
    "Receptacle",
    "Scene",
    "Task",
    "generate_scene",
]
