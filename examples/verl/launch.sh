#!/usr/bin/env bash
# GRPO+EMPG (or DAPO+EMPG with DAPO=1) on ALFWorld-style tasks with verl 0.9.x.
#
# Single node:   bash examples/verl/launch.sh
# Multi-node:    on the head node   `ray start --head --port=6379`
#                on every worker    `ray start --address=<head-ip>:6379`
#                then on the head   NNODES=<n> bash examples/verl/launch.sh
# Extra Hydra overrides are passed through, e.g. `bash launch.sh algorithm.empg.zeta=0.05`.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NNODES="${NNODES:-1}"
GPUS="${GPUS_PER_NODE:-8}"

# the plug-in must load in every process: the entry point does it once empg is installed;
# naming the module as well makes a broken install fail loudly instead of silently
export VERL_USE_EXTERNAL_MODULES="${VERL_USE_EXTERNAL_MODULES:-empg.integrations.verl.plugin}"
python -c "import empg.integrations.verl.plugin" || {
  echo "empg's verl plug-in does not import; see docs/verl.md" >&2; exit 1; }

DAPO_ARGS=()
if [[ "${DAPO:-0}" == "1" ]]; then
  # DAPO = grpo + clip-higher + token-mean + dynamic sampling, no KL term (REFERENCE section 2)
  DAPO_ARGS=(
    actor_rollout_ref.actor.clip_ratio_low=0.2
    actor_rollout_ref.actor.clip_ratio_high=0.28
    actor_rollout_ref.actor.loss_agg_mode=token-mean
    actor_rollout_ref.actor.use_kl_loss=false
    algorithm.filter_groups.enable=true
    algorithm.filter_groups.metric=reward
    algorithm.filter_groups.max_num_gen_batches=10
    trainer.experiment_name=alfworld_dapo_empg_qwen2.5_1.5b
  )
fi

python -m verl.trainer.main_ppo \
  --config-path="$HERE" --config-name=empg_alfworld_grpo \
  trainer.nnodes="$NNODES" trainer.n_gpus_per_node="$GPUS" \
  "${DAPO_ARGS[@]}" "$@"
