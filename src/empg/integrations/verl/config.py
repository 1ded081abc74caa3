"""The ``algorithm.empg`` section of a verl config, and the checks that refuse configurations
where EMPG cannot work. No verl import: the config arrives as an OmegaConf ``DictConfig`` or a
plain mapping and is read through ``.get`` / ``OmegaConf.to_container`` only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from empg.algos.modulation import EMPGConfig
from empg.errors import ConfigError
from empg.train.schema import from_dict

TRAINER_MODE = "empg_sync"
"""the ``trainer.v1.trainer_mode`` name under which the EMPG trainer is registered"""

OUTCOME_ESTIMATORS = (
    "grpo",
    "grpo_vectorized",
    "grpo_passk",
    "rloo",
    "rloo_vectorized",
    "opo",
)
"""verl estimators that give every response token of a row the same (outcome) advantage;
EMPG needs exactly one advantage per trajectory, so per-token estimators (gae, reinforce++,
remax with in-reward KL, optimal-token baselines) are refused. (``gdpo`` is left out: verl's
v1 trainer does not give it the fields it reads.)"""

MULTI_ROW_ESTIMATORS = ("grpo",)
"""the estimators verl reduces to one row per trajectory before the group statistics
(``compute_advantage_for_multi_trajectories``); with one row per step any other one would
count a trajectory once per step in its group's baseline"""

TOKEN_LEVEL_REJECTION = ("token_k1", "token_k2", "token_k3")
"""rollout-correction rejection criteria that zero single tokens of ``response_mask``, which
would split one model turn into several EMPG steps"""


class VerlEMPGConfig(EMPGConfig):
    """``algorithm.empg``: the core :class:`~empg.algos.modulation.EMPGConfig` (same fields and
    defaults as the trainer's ``algo.empg``), with verl-specific refusals."""

    def __post_init__(self) -> None:
        super().__post_init__()  # from_dict names the key: algorithm.empg.<field> must ...
        if self.enable and not (self.scale or self.bonus):
            raise ConfigError(
                "algorithm.empg.scale and algorithm.empg.bonus are both False: EMPG would only "
                "re-centre the advantages; set enable=False to train with the base estimator"
            )


def _plain(node: Any) -> Any:
    """A DictConfig / ListConfig as plain Python containers (resolved); mappings as dicts."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # plain mappings only
        DictConfig = ListConfig = ()  # type: ignore[assignment]
    if DictConfig and isinstance(node, DictConfig | ListConfig):
        return OmegaConf.to_container(node, resolve=True)
    if isinstance(node, Mapping):
        return {k: _plain(v) for k, v in node.items()}
    return node


def _get(node: Any, path: str, default: Any = None) -> Any:
    cur = node
    for part in path.split("."):
        if cur is None:
            return default
        cur = cur.get(part, None) if hasattr(cur, "get") else getattr(cur, part, None)
    return default if cur is None else cur


def empg_config_from(algorithm: Any) -> VerlEMPGConfig:
    """Build :class:`VerlEMPGConfig` from a verl ``algorithm`` section (its ``empg`` key).

    A missing ``empg`` key gives the defaults (EMPG on). Unknown keys and wrong types raise
    :class:`~empg.errors.ConfigError` naming the key.
    """
    section = _plain(_get(algorithm, "empg", None))
    if section is None:
        return VerlEMPGConfig()
    if not isinstance(section, dict):
        raise ConfigError(
            f"algorithm.empg must be a mapping of EMPG knobs, got {type(section).__name__}"
        )
    return from_dict(VerlEMPGConfig, section, prefix="algorithm.empg.")


def adv_estimator_name(config: Any) -> str:
    """``algorithm.adv_estimator`` of a verl config as a plain string (verl's default: gae)."""
    est = _get(config, "algorithm.adv_estimator", None)
    return str(getattr(est, "value", est) if est is not None else "gae")


def check_verl_config(config: Any) -> VerlEMPGConfig:
    """Refuse verl configurations where EMPG cannot work; return the EMPG knobs.

    Checks (each failure is a :class:`~empg.errors.ConfigError` saying what to change):

    * ``trainer.use_v1`` is on and ``trainer.v1.trainer_mode`` is ``empg_sync``;
    * ``algorithm.adv_estimator`` is an outcome-level estimator (:data:`OUTCOME_ESTIMATORS`);
    * rollout-correction bypass mode is off: in bypass mode verl skips the old-log-prob
      recomputation, so no per-token ``entropy`` is produced;
    * no token-level rejection sampling (``rollout_rs=token_k*``), which edits the response mask
      EMPG splits into steps;
    * no critic is in use (EMPG replaces ``returns`` with the modulated advantages).
    """
    algorithm = _get(config, "algorithm")
    if algorithm is None:
        raise ConfigError("the verl config has no 'algorithm' section")
    cfg = empg_config_from(algorithm)
    if not cfg.enable:
        return cfg
    if _get(config, "trainer.use_v1", True) is not True:
        raise ConfigError(
            "EMPG plugs into verl's v1 trainer; set trainer.use_v1=True "
            f"and trainer.v1.trainer_mode={TRAINER_MODE}"
        )
    mode = _get(config, "trainer.v1.trainer_mode", None)
    if mode is not None and mode != TRAINER_MODE:
        raise ConfigError(
            f"trainer.v1.trainer_mode is {mode!r}, so EMPG would not run; set "
            f"trainer.v1.trainer_mode={TRAINER_MODE} (or algorithm.empg.enable=False)"
        )
    est = adv_estimator_name(config)
    if est not in OUTCOME_ESTIMATORS:
        raise ConfigError(
            f"algorithm.adv_estimator={est!r} gives per-token advantages; EMPG modulates one "
            f"outcome advantage per trajectory. Use one of {list(OUTCOME_ESTIMATORS)} "
            "(DAPO in verl = grpo + filter_groups + clip-higher + token-mean)"
        )
    rc = _get(algorithm, "rollout_correction", None)
    if rc is not None and bool(_get(rc, "bypass_mode", False)):
        raise ConfigError(
            "algorithm.rollout_correction.bypass_mode=True makes verl reuse the rollout "
            "log-probs instead of recomputing old log-probs, so it computes no per-token "
            "entropy for EMPG; set algorithm.rollout_correction.bypass_mode=False"
        )
    rs = str(_get(rc, "rollout_rs", "") or "") if rc is not None else ""
    token_rs = [c.strip() for c in rs.split(",") if c.strip() in TOKEN_LEVEL_REJECTION]
    if token_rs:
        raise ConfigError(
            f"algorithm.rollout_correction.rollout_rs={rs!r} rejects single tokens by zeroing "
            "them in response_mask, which would split one model turn into several EMPG steps; "
            "use sequence-level criteria (seq_sum_k*, seq_mean_k*, seq_max_k*) or none"
        )
    if bool(_get(config, "critic.enable", False)):
        raise ConfigError(
            "critic.enable=True: EMPG works with critic-free outcome estimators; disable the "
            "critic (EMPG overwrites returns with the modulated advantages)"
        )
    return cfg
