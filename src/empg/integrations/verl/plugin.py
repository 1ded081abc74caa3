"""The module verl's plug-in loader imports (every process: driver, task runner, workers).

Entry point (group ``verl.plugins``)::

    [project.entry-points."verl.plugins"]
    empg = "empg.integrations.verl.plugin"

or ``VERL_USE_EXTERNAL_MODULES=empg.integrations.verl.plugin``. Importing it registers the
trainer mode ``empg_sync``. verl swallows plug-in import errors (debug log only); a missing
registration then surfaces as verl's "Unknown trainer 'empg_sync'" when the trainer starts.
"""

from empg.integrations.verl.trainer import EMPGTrainerSync, register

register()

__all__ = ["EMPGTrainerSync"]
