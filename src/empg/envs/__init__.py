"""Text environments: the contract, the registry, and the built-in benchmarks."""

from empg.envs.check import EnvCheckError, check_env
from empg.envs.core import (
    ENVIRONMENTS,
    ResetNeeded,
    StepResult,
    TextEnv,
    make,
    names,
    register,
)

__all__ = [
    "ENVIRONMENTS",
    "EnvCheckError",
    "ResetNeeded",
    "StepResult",
    "TextEnv",
    "check_env",
    "make",
    "names",
    "register",
]

from empg.envs import builtins as _builtins  # noqa: F401  (registers the built-ins)
