"""The module verl's plug-in loader imports (every process: driver, task runner, workers).

Entry point (group ``verl.plugins``)::

    [project.entry-points."verl.plugins"]
    empg = "empg.integrations.verl.plugin"

or ``VERL_USE_EXTERNAL_MODULES=empg.integrations.verl.plugin``. Importing it registers the
trainer mode ``empg_sync`` and the agent loop ``empg_household_agent`` (in the agent-loop
workers, which are Ray actors, too). verl swallows plug-in import errors (debug log only); a
missing registration then surfaces as verl's "Unknown trainer 'empg_sync'" when the trainer
starts, or "Agent loop empg_household_agent not registered" at the first rollout.
"""

from empg.integrations.verl.agent_loop import AGENT_NAME, EMPGHouseholdAgentLoop
from empg.integrations.verl.trainer import EMPGTrainerSync, register

register()

__all__ = ["AGENT_NAME", "EMPGHouseholdAgentLoop", "EMPGTrainerSync"]
