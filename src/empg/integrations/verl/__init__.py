"""EMPG as a verl (0.9.x) plug-in.

* :mod:`empg.integrations.verl.config` - the ``algorithm.empg`` knobs (no verl import).
* :mod:`empg.integrations.verl.batch` - verl batch (row keys, masks, entropies, base advantages)
  to EMPG token advantages; pure torch, calls only the core math (no verl import).
* :mod:`empg.integrations.verl.trainer` - ``EMPGTrainerSync``, verl's v1 synchronous trainer
  with EMPG in its advantage step, registered as trainer mode ``empg_sync`` (imports verl).
* :mod:`empg.integrations.verl.agent_loop` - ``empg_household_agent``, the verl agent loop that
  plays one episode of a project text environment (imports verl).
* :mod:`empg.integrations.verl.plugin` - the module verl's plug-in loader imports
  (entry point group ``verl.plugins`` or ``VERL_USE_EXTERNAL_MODULES``).

Importing this package does not import verl.
"""

from empg.integrations.verl.batch import EMPGBatchResult, parse_row_key, verl_empg_advantages
from empg.integrations.verl.config import (
    OUTCOME_ESTIMATORS,
    TRAINER_MODE,
    VerlEMPGConfig,
    check_verl_config,
)

__all__ = [
    "OUTCOME_ESTIMATORS",
    "TRAINER_MODE",
    "EMPGBatchResult",
    "VerlEMPGConfig",
    "check_verl_config",
    "parse_row_key",
    "verl_empg_advantages",
]
