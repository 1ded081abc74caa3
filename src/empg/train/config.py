"""The training configuration: one typed tree; YAML files and ``key.path=value`` overrides use the
same schema. Each section is handed only to the component that needs it.

The algorithm is assembled from independent knobs (estimator, clipping, aggregation, sampling,
EMPG); ``algo.preset`` fills in the knobs left unset (``null``) from a named preset such as
``dapo`` (see :mod:`empg.algos.dapo`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from empg.agent.rollout import OUTCOMES
from empg.algos.advantages import ADVANTAGE_ESTIMATORS
from empg.algos.dapo import get_preset
from empg.algos.losses import KL_ESTIMATORS, LOSS_AGG_MODES
from empg.algos.modulation import EMPGConfig
from empg.envs.pool import BACKENDS
from empg.errors import ConfigError
from empg.train.schema import apply_overrides, from_dict, to_dict


@dataclass
class ModelConfig:
    path: str = "default"
    """'default' = the offline tiny policy (built and warm-started on first use, cached); or any
    local path / hub id the Hugging Face loaders accept"""
    dtype: str = "auto"
    """'auto' (float32 on CPU, bfloat16 autocast with float32 weights on GPU), 'float32', or
    'bfloat16' (autocast on either device; on these CPUs it is much slower than float32)"""
    lora_rank: int = 0
    """LoRA rank through PEFT; 0 trains all weights"""
    lora_alpha: int = 16
    """LoRA alpha (used when lora_rank > 0)"""
    chunk_size: int = 0
    """tokens per chunk for the LM-head log-prob/entropy; 0 picks automatically"""
    fold_gqa: bool = True
    """grouped-query models on 'sdpa': attend without copying KV heads to every query head
    (empg.models.attention; the same attention, tested); false keeps transformers' path"""
    share_prefix: bool = True
    """recomputation and update: run the prompt prefix a micro-batch's rows share (one task's
    steps) once instead of once per row (the same logits, tested; docs/benchmarks.md)"""

    def __post_init__(self) -> None:
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ConfigError(f"model.dtype must be auto, float32 or bfloat16, got {self.dtype!r}")
        for name in ("lora_rank", "chunk_size"):
            if getattr(self, name) < 0:
                raise ConfigError(f"model.{name} must be >= 0, got {getattr(self, name)}")
        if self.lora_alpha <= 0:  # 0 scales the adapter's output, and its gradients, to 0
            raise ConfigError(f"model.lora_alpha must be > 0, got {self.lora_alpha}")


@dataclass
class EnvConfig:
    name: str = "household"
    """registered environment name (see `empg envs`)"""
    train_split: str = "train"
    """split that training tasks come from"""
    max_turns: int = 20
    """episode cap in agent turns (on top of the environment's own step limit)"""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """extra constructor arguments for the environment"""
    train_tasks: list[int] = field(default_factory=list)
    """fixed pool of training task seeds to draw each iteration's tasks from (empty: any seed of
    the train split; a pool smaller than a batch repeats tasks)"""

    def __post_init__(self) -> None:
        if self.max_turns < 1:
            raise ConfigError(f"env.max_turns must be >= 1, got {self.max_turns}")
        bad = [s for s in self.train_tasks if s < 0]
        if bad:
            raise ConfigError(f"env.train_tasks must hold task seeds >= 0, got {bad}")


@dataclass
class RolloutSettings:
    tasks_per_batch: int = 6
    """N distinct tasks per iteration (after dynamic sampling, if on)"""
    group_size: int = 8
    """n rollouts per task (the GRPO group)"""
    max_new_tokens: int = 48
    """response tokens per step (the tiny policy's expert answers are up to 33 with eos; DAPO's
    overlong penalty ramps up over the last algo.overlong_buffer tokens)"""
    temperature: float = 0.7
    """sampling temperature for training rollouts (the paper uses 1.0 with 7B-32B models; the
    tiny policy wins more often at 0.7, so more groups carry a success signal; docs/training.md)"""
    top_p: float = 1.0
    """nucleus sampling threshold"""
    history: int = 0
    """past (observation, action) pairs kept in the prompt (verl-agent uses 2; the tiny default
    policy was warm-started with 0 plus the two memory lines below)"""
    compact_prompt: bool = True
    """short prompts without system message (for tiny models)"""
    show_admissible: bool = False
    """list admissible actions in the prompt"""
    first_observation: bool = True
    """keep the episode's first observation (household: the room overview) in the prompt"""
    past_actions: int = 16
    """list up to this many of the agent's earlier actions (older than `history`) in the prompt"""
    recall_observation: bool = False
    """after a no-op reply ("Nothing happens."), also show the latest observation that said
    something (empg.agent.PromptConfig.recall_observation)"""
    outcome: str = "success"
    """the outcome reward advantages are computed from: success (1 if the episode was won) or
    reward_sum (the sum of the environment's rewards, e.g. shop's partial score), both minus
    the penalties below"""
    invalid_penalty: float = 0.1
    """reward penalty for a step whose response has no valid action"""
    noop_penalty: float = 0.0
    """reward penalty for a valid action the environment answers with a no-op reply such as
    "Nothing happens." (reward shaping; 0 keeps the pure outcome reward)"""
    constrain_actions: bool = False
    """sample the action only among the environment's admissible actions, in training and
    evaluation (log-probs stay the model's own, as with top-p); household, alfworld and
    textworld list complete commands, shop's search template is spelled up to its query, which
    the model writes itself; search has no list and offers searches and answers spelled from
    the names the episode has shown (info["action_candidates"])"""
    restricted_logprobs: bool = False
    """with constrain_actions: train the constrained policy itself, scoring each masked action
    token under the distribution it was sampled from (renormalised over the allowed tokens) in
    rollouts, recomputation, EMPG's entropies and the update"""
    max_resample_rounds: int = 2
    """dynamic sampling: at most this many extra rounds of groups to fill the batch"""
    prefix_cache: bool = True
    """reuse each episode's previous prompt's KV cache for the common prefix of its next prompt
    (the same tokens, fewer to run; one prompt's cache per live episode in memory)"""
    pool_backend: str = "thread"
    """where each episode's environment runs: thread or process (a hung textworld / alfworld
    call holds their shared engine lock under threads; processes isolate it, empg.envs.pool)"""

    def __post_init__(self) -> None:
        for name in ("tasks_per_batch", "group_size", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"rollout.{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ConfigError("rollout.temperature must be >= 0 and 0 < rollout.top_p <= 1")
        if self.restricted_logprobs and not self.constrain_actions:
            raise ConfigError("rollout.restricted_logprobs needs rollout.constrain_actions=true")
        if self.outcome not in OUTCOMES:
            raise ConfigError(f"rollout.outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        if self.pool_backend not in BACKENDS:
            raise ConfigError(
                f"rollout.pool_backend must be one of {BACKENDS}, got {self.pool_backend!r}"
            )
        for name in ("history", "past_actions", "max_resample_rounds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"rollout.{name} must be >= 0, got {getattr(self, name)}")


#: what DAPO's dynamic sampling may compare within a group (AlgoConfig.filter_metric)
FILTER_METRICS = ("success", "reward")


@dataclass
class AlgoConfig:
    preset: str = "dapo"
    """named preset (grpo, dr_grpo, dapo) that fills every knob left null"""
    adv_estimator: str | None = None
    """outcome advantage estimator (grpo, dr_grpo, rloo)"""
    clip_ratio_low: float | None = None
    """PPO clip epsilon below 1"""
    clip_ratio_high: float | None = None
    """PPO clip epsilon above 1 (DAPO clip-higher: 0.28)"""
    clip_ratio_c: float | None = None
    """dual-clip constant (> 1) or null for none"""
    loss_agg_mode: str | None = None
    """token-mean, seq-mean-token-mean, seq-mean-token-sum, seq-mean-token-sum-norm"""
    dynamic_sampling: bool | None = None
    """DAPO: drop groups whose outcomes are all equal and sample more until the batch is full"""
    filter_metric: str = "success"
    """what dynamic sampling compares within a group: success (the episode's won flag, DAPO's
    accuracy) or reward (the outcome reward, invalid-action penalties included)"""
    overlong_shaping: bool | None = None
    """DAPO: penalise responses that run into the per-step token limit"""
    overlong_buffer: int = 8
    """tokens before max_new_tokens where the overlong penalty ramps up"""
    kl_coef: float | None = None
    """weight of the KL-to-reference loss (0 disables the reference model)"""
    kl_estimator: str | None = None
    """KL estimator: k1, k2 or k3 (low-variance)"""
    empg: EMPGConfig = field(default_factory=EMPGConfig)
    """entropy-modulated policy gradient settings"""

    def __post_init__(self) -> None:
        preset = get_preset(self.preset)  # unknown preset -> "did you mean"
        for f in dataclasses.fields(preset):
            if getattr(self, f.name) is None:
                setattr(self, f.name, getattr(preset, f.name))
        if self.filter_metric not in FILTER_METRICS:
            raise ConfigError(
                f"algo.filter_metric must be success or reward, got {self.filter_metric!r}"
            )
        if self.adv_estimator not in ADVANTAGE_ESTIMATORS:
            raise ConfigError(
                f"algo.adv_estimator: {ADVANTAGE_ESTIMATORS.unknown_message(self.adv_estimator)}"
            )
        if self.loss_agg_mode not in LOSS_AGG_MODES:
            raise ConfigError(f"algo.loss_agg_mode must be one of {LOSS_AGG_MODES}")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ConfigError(f"algo.kl_estimator must be one of {KL_ESTIMATORS.names()}")
        if self.clip_ratio_c is not None and self.clip_ratio_c <= 1:
            raise ConfigError("algo.clip_ratio_c must be > 1 (or null)")
        if self.kl_coef < 0:
            raise ConfigError("algo.kl_coef must be >= 0")
        for name in ("clip_ratio_low", "clip_ratio_high"):
            if getattr(self, name) < 0:
                raise ConfigError(f"algo.{name} must be >= 0, got {getattr(self, name)}")
        if self.overlong_buffer < 1:
            raise ConfigError(f"algo.overlong_buffer must be >= 1, got {self.overlong_buffer}")


@dataclass
class OptimConfig:
    lr: float = 1e-4
    """AdamW learning rate (tiny models need far more than the 1e-6 used for 1.5B+ models)"""
    weight_decay: float = 0.0
    """AdamW weight decay"""
    grad_clip: float = 1.0
    """global gradient-norm clip (0 disables)"""
    warmup_iters: int = 0
    """linear learning-rate warm-up, in iterations"""
    schedule: str = "constant"
    """learning-rate schedule after warm-up: constant or cosine"""
    ppo_epochs: int = 1
    """passes over each batch"""
    mini_batch_steps: int = 256
    """step rows per optimiser update"""
    micro_batch_steps: int = 64
    """step rows per forward/backward (gradient accumulation inside a mini-batch)"""
    max_bad_updates: int = 5
    """stop the run after this many consecutive non-finite losses"""

    def __post_init__(self) -> None:
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"optim.schedule must be constant or cosine, got {self.schedule!r}")
        for name in ("ppo_epochs", "mini_batch_steps", "micro_batch_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"optim.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "weight_decay", "grad_clip", "warmup_iters"):
            if getattr(self, name) < 0:
                raise ConfigError(f"optim.{name} must be >= 0, got {getattr(self, name)}")
        if self.max_bad_updates < 1:
            raise ConfigError(f"optim.max_bad_updates must be >= 1, got {self.max_bad_updates}")


@dataclass
class EvalConfig:
    splits: list[str] = field(default_factory=lambda: ["valid_seen", "valid_unseen"])
    """held-out splits evaluated on a fixed task list"""
    episodes: int = 100
    """tasks per split (seeds 0..episodes-1, the same every time); with 50, flipping a few
    sampled tokens moved a barely changed policy by up to 14 points (docs/training.md)"""
    temperature: float = 0.4
    """sampling temperature for evaluation"""
    every: int = 0
    """evaluate every this many iterations (0: only before and after training)"""

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ConfigError(f"eval.episodes must be >= 1, got {self.episodes}")
        if self.every < 0:
            raise ConfigError(f"eval.every must be >= 0, got {self.every}")
        if self.temperature < 0:
            raise ConfigError(f"eval.temperature must be >= 0, got {self.temperature}")
        if not self.splits:
            raise ConfigError("eval.splits must name at least one split")


@dataclass
class TrainConfig:
    iterations: int = 6
    """RL iterations (6 keeps the default job within 15 minutes on 2 CPU cores)"""
    seed: int = 0
    """seed of everything (tasks, sampling, initialisation)"""
    run_dir: str = "runs/default"
    """where the config, metrics, plots and checkpoints go"""
    checkpoint_every: int = 1
    """write a checkpoint every this many iterations (the last one always)"""
    keep_checkpoints: int = 2
    """how many recent checkpoints to keep"""
    device: str = "auto"
    """auto, cpu or cuda"""
    threads: int = 0
    """torch CPU threads (0: leave torch's default)"""
    tensorboard: bool = True
    """write TensorBoard logs when tensorboard is installed"""
    wandb: bool = False
    """log to Weights & Biases when wandb is installed (offline mode unless WANDB_MODE is set)"""
    model: ModelConfig = field(default_factory=ModelConfig)
    """policy model"""
    env: EnvConfig = field(default_factory=EnvConfig)
    """environment"""
    rollout: RolloutSettings = field(default_factory=RolloutSettings)
    """rollout collection"""
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    """algorithm"""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """optimisation"""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """evaluation"""

    def __post_init__(self) -> None:
        for name, least in (
            ("iterations", 0),
            ("seed", 0),
            ("threads", 0),
            ("checkpoint_every", 1),
            ("keep_checkpoints", 1),
        ):
            if getattr(self, name) < least:
                raise ConfigError(f"{name} must be >= {least}, got {getattr(self, name)}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Config from an optional YAML file plus ``key.path=value`` overrides.

    The top-level fields are the run's own (``seed``, ``iterations``, ...); an override may also
    spell them with a ``train.`` prefix (``train.seed=3``), as the trainer section is named in
    verl-style command lines."""
    data: dict[str, Any] = {}
    if path is not None:
        import yaml

        p = Path(path)
        if not p.is_file():
            what = "is a folder, not a file" if p.is_dir() else "does not exist"
            raise ConfigError(f"config file {str(p)!r} {what}")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
            detail = " ".join(str(e).split())  # YAML's messages span lines; errors print as one
            raise ConfigError(f"cannot read config file {str(p)!r}: {detail}") from e
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping")
        data = loaded or {}
    return config_from_data(data, overrides)


def config_from_data(data: dict[str, Any], overrides: list[str] | None = None) -> TrainConfig:
    """Config from a mapping (a parsed YAML file, a run's saved ``config.json``) plus
    ``key.path=value`` overrides; ``data`` is not changed."""
    import copy

    data = copy.deepcopy(data)
    apply_overrides(data, [_strip_train_prefix(o) for o in overrides or []])
    return from_dict(TrainConfig, data)


def _strip_train_prefix(override: str) -> str:
    # TrainConfig has no field named "train", so the prefix is never ambiguous
    return override[len("train.") :] if override.startswith("train.") else override


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return to_dict(cfg)
