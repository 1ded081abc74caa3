"""check_env rejects environments that break the contract, naming what broke."""

from __future__ import annotations

import random

import pytest

from empg.envs import TextEnv, check_env
from empg.envs.check import EnvCheckError


class Good(TextEnv):
    """Three steps to the door; "open" wins. Deterministic in the seed."""

    name = "check-good"
    max_steps = 5

    def _info(self) -> dict:
        return {"won": self.t >= 3, "task": "open the door", "task_type": "door"}

    def _reset(self, *, seed, options):
        self.t = 0
        return f"A door (seed {seed}).", self._info()

    def _step(self, action):
        self.t += 1
        return "You walk.", float(self.t >= 3), self.t >= 3, self._info()

    def expert_action(self) -> str:
        return "open"

    def expert_thought(self) -> str:
        return "The door is ahead."


class Moody(Good):
    _rng = random.Random()  # unseeded: two runs of one seed differ

    def _reset(self, *, seed, options):
        self.t = 0
        return f"A door, mood {self._rng.random()}.", self._info()


class NoTask(Good):
    def _info(self) -> dict:
        return {"won": False, "task_type": "door"}


class IntWon(Good):
    def _info(self) -> dict:
        return {"won": int(self.t >= 3), "task": "open the door", "task_type": "door"}


class Endless(Good):
    max_steps = 1000

    def _step(self, action):
        return "You walk.", 0.0, False, self._info()


class Fragile(Good):
    def _step(self, action):
        if not action.strip():
            raise KeyError("no command")
        return super()._step(action)


class SilentExpert(Good):
    def expert_thought(self):
        return None


def test_a_good_environment_passes():
    check_env(Good())


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (Moody(), "two runs differ"),
        (NoTask(), "info lacks required key 'task'"),
        (IntWon(), r"info\['won'\] must be bool"),
        (Endless(), "did not end within max_steps"),
        (Fragile(), r"action ' ?' raised KeyError: 'no command'"),
        (SilentExpert(), "expert_thought"),
    ],
)
def test_broken_environments_are_named(env, message):
    with pytest.raises(EnvCheckError, match=message):
        check_env(env, max_steps=20)
