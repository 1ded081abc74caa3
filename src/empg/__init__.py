"""empg: Entropy-Modulated Policy Gradients for long-horizon LLM agents.

The algorithm functions are importable from the top level::

    import empg
    logprobs, entropy = empg.token_logprobs_and_entropy(logits, labels)
    adv = empg.modulate_advantages(step_entropy, step_adv, traj_id, step_index)
"""

from empg.algos import *  # noqa: F403
from empg.algos import __all__ as _algos_all
from empg.errors import (
    ConfigError,
    EmpgError,
    InputError,
    NonFiniteError,
    ShapeError,
    UnknownNameError,
)

__version__ = "0.1.0"

__all__ = [
    *_algos_all,
    "ConfigError",
    "EmpgError",
    "InputError",
    "NonFiniteError",
    "ShapeError",
    "UnknownNameError",
    "__version__",
]
