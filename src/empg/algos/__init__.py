"""The algorithm library: pure tensor functions, the one implementation every engine calls."""

from empg.algos.advantages import (
    ADVANTAGE_ESTIMATORS,
    compute_outcome_advantages,
    dr_grpo_advantages,
    get_advantage_estimator,
    group_stats,
    grpo_advantages,
    register_advantage_estimator,
    rloo_advantages,
    step_outcome_advantages,
)
from empg.algos.dapo import (
    PRESETS,
    AlgoPreset,
    dynamic_sampling_mask,
    get_preset,
    overlong_penalty,
)
from empg.algos.entropy import lm_head_logprobs_and_entropy, token_logprobs_and_entropy
from empg.algos.losses import (
    KL_ESTIMATORS,
    LOSS_AGG_MODES,
    PolicyLossOutput,
    aggregate_loss,
    kl_penalty,
    ppo_policy_loss,
)
from empg.algos.modulation import (
    FINAL_NORMS,
    EMPGConfig,
    modulate_advantages,
    modulate_token_advantages,
    next_step_position,
)
from empg.algos.restricted import AllowedSets, pad_allowed, restricted_logprobs_and_entropy
from empg.algos.steps import (
    StepIndex,
    StepSegments,
    check_step_ids,
    index_steps,
    segment_steps,
    step_entropy_from_rows,
    step_entropy_from_sequences,
)

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "FINAL_NORMS",
    "KL_ESTIMATORS",
    "LOSS_AGG_MODES",
    "PRESETS",
    "AlgoPreset",
    "AllowedSets",
    "EMPGConfig",
    "PolicyLossOutput",
    "StepIndex",
    "StepSegments",
    "aggregate_loss",
    "check_step_ids",
    "compute_outcome_advantages",
    "dr_grpo_advantages",
    "dynamic_sampling_mask",
    "get_advantage_estimator",
    "get_preset",
    "group_stats",
    "grpo_advantages",
    "index_steps",
    "kl_penalty",
    "lm_head_logprobs_and_entropy",
    "modulate_advantages",
    "modulate_token_advantages",
    "next_step_position",
    "overlong_penalty",
    "pad_allowed",
    "ppo_policy_loss",
    "register_advantage_estimator",
    "restricted_logprobs_and_entropy",
    "rloo_advantages",
    "segment_steps",
    "step_entropy_from_rows",
    "step_entropy_from_sequences",
    "step_outcome_advantages",
    "token_logprobs_and_entropy",
]
