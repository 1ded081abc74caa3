#!/usr/bin/env bash
# GRPO+EMPG (or DAPO+EMPG with DAPO=1) on ALFWorld-style tasks with verl 0.9.x.
#
# Single node:   bash examples/verl/launch.sh
# Multi-node:    on the head node   `ray start --head --port=6379`
#                on every worker    `ray start --address=<head-ip>:6379`
#                then on the head   NNODES=<n> bash examples/verl/launch.sh
# Extra Hydra overrides are passed through, e.g. `bash launch.sh algorithm.empg.zeta=0.05`
# or `bash launch.sh empg_env.name=alfworld` (then also EMPG_ENV=alfworld for the task files).
# The agent loop empg_household_agent (empg_env section of the YAML) plays the episodes.
# EMPG_VAL_SPLIT names the validation split (default: valid_seen for household and alfworld,
# valid for shop, test_id for search); EMPG_TASKS_DIR where the task files go.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NNODES="${NNODES:-1}"
GPUS="${GPUS_PER_NODE:-8}"
ENV_NAME="${EMPG_ENV:-household}"
# absolute path: verl's task runner and dataloader run in Ray workers, not in this shell's cwd
TASKS="$(mkdir -p "${EMPG_TASKS_DIR:-data/empg_tasks}" && cd "${EMPG_TASKS_DIR:-data/empg_tasks}" && pwd)"
case "$ENV_NAME" in
  shop) DEFAULT_VAL=valid ;;
  search) DEFAULT_VAL=test_id ;;
  *) DEFAULT_VAL=valid_seen ;;
esac
VAL_SPLIT="${EMPG_VAL_SPLIT:-$DEFAULT_VAL}"

# the plug-in must load in every process: the entry point does it once empg is installed;
# naming the module as well makes a broken install fail loudly instead of silently
export VERL_USE_EXTERNAL_MODULES="${VERL_USE_EXTERNAL_MODULES:-empg.integrations.verl.plugin}"
python -c "import empg.integrations.verl.plugin" || {
  echo "empg's verl plug-in does not import; see docs/verl.md" >&2; exit 1; }

# one row per task (the agent loop builds the prompts); written once
if [[ ! -f "$TASKS/${ENV_NAME}_train.parquet" ]]; then
  python "$HERE/make_tasks.py" --env "$ENV_NAME" --out "$TASKS" --val-split "$VAL_SPLIT"
fi

DAPO_ARGS=()
if [[ "${DAPO:-0}" == "1" ]]; then
  # DAPO = grpo + clip-higher + token-mean + dynamic sampling, no KL term (Yu et al., arXiv 2503.14476)
  DAPO_ARGS=(
    actor_rollout_ref.actor.clip_ratio_low=0.2
    actor_rollout_ref.actor.clip_ratio_high=0.28
    actor_rollout_ref.actor.loss_agg_mode=token-mean
    actor_rollout_ref.actor.use_kl_loss=false
    algorithm.filter_groups.enable=true
    algorithm.filter_groups.metric=reward
    # (verl's v1 trainer ignores max_num_gen_batches; filter_groups.max_inflight_gen_batches,
    # default 1, bounds the generation batches in flight while it refills)
    trainer.experiment_name=alfworld_dapo_empg_qwen2.5_1.5b
  )
fi

python -m verl.trainer.main_ppo \
  --config-path="$HERE" --config-name=empg_alfworld_grpo \
  trainer.nnodes="$NNODES" trainer.n_gpus_per_node="$GPUS" \
  data.train_files="$TASKS/${ENV_NAME}_train.parquet" \
  data.val_files="$TASKS/${ENV_NAME}_${VAL_SPLIT}.parquet" \
  empg_env.name="$ENV_NAME" \
  "${DAPO_ARGS[@]}" "$@"
