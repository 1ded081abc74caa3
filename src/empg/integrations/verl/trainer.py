"""``EMPGTrainerSync``: verl's v1 synchronous trainer with EMPG in its advantage step.

Why a registered trainer subclass (and not a patch): verl's v1 trainers are looked up by name
(``trainer.v1.trainer_mode``) in a registry made for this purpose, and ``_compute_advantage``
is the one method that owns the advantage step. Overriding it in a subclass keeps verl's code
path intact - the base estimator (``compute_advantage_for_multi_trajectories``: grpo, or grpo
with DAPO's settings) runs unchanged via ``super()`` - and adds one read-modify-write of the
``advantages``/``returns`` fields in TransferQueue. Nothing of verl is monkeypatched, and a
missing plug-in fails loudly: verl's ``get_trainer_cls("empg_sync")`` raises "Unknown trainer"
instead of silently training without EMPG.

The per-token ``entropy`` comes from verl's own ``_compute_old_log_prob`` (computed with the
old log-probs, stored in TransferQueue under the same keys, so it stays aligned with the rows
whatever order ``_balance_batch`` gave them). This module imports verl and TransferQueue.
"""

from __future__ import annotations

import logging

import torch
import transfer_queue as tq
from tensordict import TensorDict
from transfer_queue import KVBatchMeta
from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY, register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.workers.utils.padding import response_to_nested

from empg.errors import ConfigError
from empg.integrations.verl.batch import verl_empg_advantages
from empg.integrations.verl.config import (
    TRAINER_MODE,
    VerlEMPGConfig,
    adv_estimator_name,
    check_verl_config,
)

logger = logging.getLogger(__name__)

_FIELDS = ["response_mask", "entropy", "advantages"]


def apply_empg(
    batch: KVBatchMeta, config: VerlEMPGConfig, metrics: dict, estimator: str | None = None
) -> KVBatchMeta:
    """Read the base advantages and the old-policy entropy of ``batch`` from TransferQueue,
    modulate them with EMPG and write ``advantages`` and ``returns`` back (jagged, like verl).
    ``estimator``: verl's ``algorithm.adv_estimator``, to refuse layouts it gets wrong."""
    data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=_FIELDS)
    missing = [f for f in _FIELDS if f not in data.keys()]  # noqa: SIM118 (TensorDict)
    if missing:
        raise ConfigError(
            f"EMPG needs the fields {missing} in TransferQueue at the advantage step; 'entropy' "
            "is written by verl's _compute_old_log_prob, which rollout-correction bypass mode "
            "skips (set algorithm.rollout_correction.bypass_mode=False)"
        )
    nested_mask = data["response_mask"]
    padded = data.to_padded_tensor()
    tags = batch.tags or [{} for _ in batch.keys]
    result = verl_empg_advantages(
        list(batch.keys),
        padded["response_mask"],
        padded["entropy"].to(torch.float32),
        padded["advantages"],
        config,
        is_padding=[bool(t.get("is_padding", False)) for t in tags],
        estimator=estimator,
    )
    adv = result.advantages.to(padded["advantages"].dtype)
    nested = response_to_nested(adv, nested_mask)
    fields = TensorDict(
        {"advantages": nested, "returns": nested.clone()},  # outcome estimators: returns = adv
        batch_size=len(batch),
    )
    metrics.update(result.metrics)
    return tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=fields)


class EMPGTrainerSync(PPOTrainerSync):
    """verl's synchronous v1 trainer; the advantage step adds EMPG after the base estimator.

    Configure with ``trainer.v1.trainer_mode=empg_sync`` and the ``algorithm.empg`` knobs
    (see :class:`~empg.integrations.verl.config.VerlEMPGConfig`). The constructor refuses
    configurations where EMPG cannot work, before any worker is started.
    """

    # verl's base trainer branches on ``self.trainer_mode == "sync"`` (replay buffer, batch
    # refill, parameter sync, checkpointed prompt data): this trainer is looked up under its own
    # name but must take every synchronous branch, so the attribute always reads "sync"
    trainer_mode = property(lambda self: "sync", lambda self, value: None)

    def __init__(self, config):
        self.empg_config = check_verl_config(config)
        self.adv_estimator = adv_estimator_name(config)
        super().__init__(config)
        logger.warning("EMPG active (trainer mode %s): %s", TRAINER_MODE, self.empg_config)

    def _compute_advantage(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        batch = super()._compute_advantage(batch, metrics)
        if not self.empg_config.enable:
            return batch
        return apply_empg(batch, self.empg_config, metrics, estimator=self.adv_estimator)


def register() -> type[EMPGTrainerSync]:
    """Register :class:`EMPGTrainerSync` as trainer mode ``empg_sync`` (idempotent)."""
    if TRAINER_REGISTRY.get(TRAINER_MODE) is not EMPGTrainerSync:
        register_trainer(TRAINER_MODE)(EMPGTrainerSync)
    return EMPGTrainerSync
