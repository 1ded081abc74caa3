"""The RL trainer: GRPO / DAPO (a preset of knobs) with or without EMPG, on any registered text
environment and any Hugging Face causal LM.

One iteration::

    rollouts (grouped, dynamic sampling)          -> step rows
    recompute old log-probs + entropies (no grad) -> the entropy EMPG uses, as in the paper
    outcome advantages (core registry) per step   -> EMPG modulation (core) when enabled
    PPO epochs over mini-batches                  -> AdamW, grad clip, LR schedule
    metrics.jsonl / TensorBoard / W&B, checkpoint (atomic), periodic evaluation

Everything numeric is a call into :mod:`empg.algos`; this module only orchestrates.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from empg.errors import CheckpointError, ConfigError, NonFiniteError, TrainingDivergedError
from empg.files import atomic_write_text
from empg.models.attention import use_gqa_attention
from empg.train.advantages import batch_advantages
from empg.train.checkpoint import (
    latest_checkpoint,
    load_optimizer,
    load_trainer_state,
    save_checkpoint,
    set_rng_state,
)
from empg.train.config import TrainConfig, config_to_dict
from empg.train.lock import lock_run_dir, unlock_run_dir
from empg.train.metrics import MetricsLogger, read_metrics
from empg.train.rollouts import collect_training_batch, derived_seed, evaluate
from empg.train.schema import from_dict
from empg.train.update import UpdateBatch, ppo_update, recompute_logprobs


@dataclass
class TrainResult:
    run_dir: Path
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    iterations_done: int = 0


def _device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("device=cuda but no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cpu")


def autocast_for(device: torch.device, dtype: str):
    """bf16 autocast on CUDA (fp32 master weights; ``model.dtype`` auto or bfloat16); on the CPU
    only when bfloat16 is asked for (it is slow there); otherwise plain fp32."""
    # cache_enabled=False: autocast's cache would keep the bf16 copies of the weights made
    # before an optimiser step for the rest of the context (the whole iteration), so later
    # mini-batches would run partly on stale weights
    if device.type == "cuda" and dtype in ("auto", "bfloat16"):
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
    if device.type == "cpu" and dtype == "bfloat16":
        return torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext()


def load_model(cfg: TrainConfig, path: str | None = None, log: Callable[[str], None] | None = None):
    """(model, tokenizer) for ``cfg.model`` (or a checkpoint folder ``path``); ``log`` gets
    progress lines while the default policy is built on first use."""
    from empg.models.default import default_policy, load_policy

    adapter = path is not None and (Path(path) / "adapter_config.json").is_file()
    if adapter:  # a LoRA run's checkpoint: its base model, then the saved adapter on top
        model, tokenizer = _lora_base(cfg, Path(path), log)
    elif path is None and cfg.model.path == "default":
        warm_env, sft, arch = _default_recipe(cfg)
        model, tokenizer, folder = default_policy(env=warm_env, sft=sft, model_config=arch, log=log)
        if log is not None:
            log(f"[empg] default policy: {folder}{_check_summary(folder)}")
    else:
        model, tokenizer = load_policy(path or cfg.model.path)
    if cfg.model.fold_gqa:
        use_gqa_attention(model)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(path), is_trainable=True)
    elif cfg.model.lora_rank > 0 and path is None:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as e:
            raise ConfigError("model.lora_rank > 0 needs PEFT: pip install peft") from e
        model = get_peft_model(
            model,
            LoraConfig(
                r=cfg.model.lora_rank, lora_alpha=cfg.model.lora_alpha, task_type="CAUSAL_LM"
            ),
        )
    return model, tokenizer


def _default_recipe(cfg: TrainConfig):
    """(environment, SFT config, architecture) of the default policy ``cfg`` trains: the
    built-in environments have experts to warm-start from, others use household's; the warm
    start plays the configured environment (env.kwargs, e.g. a task mix)."""
    from empg.models.default import default_configs

    builtin = cfg.env.name in ("household", "shop", "search")
    warm_env = cfg.env.name if builtin else "household"
    sft, arch = default_configs(warm_env, cfg.env.kwargs if builtin else None)
    return warm_env, sft, arch


def warm_start_dir(cfg: TrainConfig) -> Path | None:
    """The local folder ``cfg.model.path`` loads from: the default policy's cache folder (which
    may not be built yet) or the given path; None for a hub id."""
    if cfg.model.path == "default":
        from empg.models.default import default_policy_dir

        warm_env, sft, arch = _default_recipe(cfg)
        return default_policy_dir(warm_env, sft=sft, model_config=arch)
    local = Path(cfg.model.path).expanduser()
    return local if local.is_dir() else None


def evaluate_model(
    cfg: TrainConfig,
    path: str | None = None,
    log: Callable[[str], None] | None = None,
    *,
    checkpoint: bool = False,
) -> dict[str, Any]:
    """The trainer's evaluation (:func:`empg.train.rollouts.evaluate`) of ``cfg.model`` or of the
    model folder ``path``, on the trainer's device, precision and threads (``empg eval``). With
    ``checkpoint``, ``path`` is a run's checkpoint model: failing to load it is a
    :class:`CheckpointError`, as on ``--resume``."""
    from empg.agent.generation import HFBackend

    _check_env(cfg, list(cfg.eval.splits))  # before loading (or first building) a model
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg)
    _quiet_transformers()  # its weight-loading bar, as in training; empg logs its own progress
    try:
        model, tokenizer = load_model(cfg, path, log=log)  # a first-use build reports progress
    except (ConfigError, OSError, ValueError, RuntimeError, SafetensorError) as e:
        if not checkpoint:
            raise
        raise CheckpointError(f"cannot load the model of {path}: {type(e).__name__}: {e}") from e
    model.to(device).eval()
    with autocast_for(device, cfg.model.dtype):
        return evaluate(HFBackend(model, tokenizer), cfg, 0, log=log)


def _check_env(cfg: TrainConfig, splits: list[str]) -> None:
    """The environment's name, and that it builds with ``env.kwargs`` on each of ``splits``:
    checked before a model is loaded (or first built) and before the first evaluation, so a
    typo costs seconds, not a build and an evaluation."""
    from empg.agent.rollout import check_env_builds
    from empg.envs import ENVIRONMENTS, names

    if cfg.env.name not in names():
        raise ConfigError(f"env.name: {ENVIRONMENTS.unknown_message(cfg.env.name)}")
    for split in dict.fromkeys(splits):
        check_env_builds(cfg.env.name, {**cfg.env.kwargs, "split": split})


def _lora_base(cfg: TrainConfig, folder: Path, log: Callable[[str], None] | None):
    """The base (model, tokenizer) under a saved LoRA adapter: the folder its
    adapter_config.json names where that folder still exists, else ``cfg.model``'s (a hub id,
    or the default policy)."""
    import dataclasses

    from empg.models.default import load_policy

    try:
        import peft  # noqa: F401
    except ImportError as e:
        raise ConfigError(
            f"{folder} holds a LoRA adapter; loading it needs PEFT: pip install peft"
        ) from e
    try:
        base = json.loads((folder / "adapter_config.json").read_text()).get(
            "base_model_name_or_path"
        )
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {folder}/adapter_config.json: {e}") from e
    if base and Path(base).is_dir():
        return load_policy(base)
    plain = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, lora_rank=0, fold_gqa=False)
    )
    return load_model(plain, log=log)


def _check_summary(folder: Path) -> str:
    """', checked: 16.0% on the build check (passed)' from a build's info, or '' if unchecked."""
    from empg.models.default import BUILD_INFO

    try:
        check = json.loads((folder / BUILD_INFO).read_text()).get("check")
    except (OSError, ValueError):
        return ""
    attempts = (check or {}).get("attempts") or []
    kept = next((a for a in attempts if a["sft_seed"] == check.get("kept_sft_seed")), None)
    if kept is None:
        return ""
    verdict = "passed" if check["passed"] else "below the threshold"
    return f", checked: {kept['success']:.1%} on the build check ({verdict})"


def print_now(message: str) -> None:
    """``print`` that flushes, so progress lines reach a pipe or a log file as they happen."""
    print(message, flush=True)


class Trainer:
    def __init__(
        self, cfg: TrainConfig, *, resume: bool = False, log: Callable[[str], None] = print_now
    ):
        self.cfg = cfg
        self.log = log
        self.run_dir = Path(cfg.run_dir).expanduser()
        self.device = _device(cfg)
        _check_env(cfg, [cfg.env.train_split, *cfg.eval.splits])  # before a first-use build
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self._lock: Path | None = lock_run_dir(self.run_dir)  # before run_dir is read or written
        try:
            self._setup(resume)
        except BaseException:
            self._unlock()
            raise

    def _unlock(self) -> None:
        """Release this trainer's hold on the run_dir lock (once; later calls do nothing)."""
        unlock_run_dir(self._lock)
        self._lock = None

    def _setup(self, resume: bool) -> None:
        cfg, log = self.cfg, self.log
        self.resume_from = latest_checkpoint(self.run_dir) if resume else None
        if resume and self.resume_from is None:
            log(f"[empg] --resume: no checkpoint in {self.run_dir}; starting from scratch")
        self._check_run_dir(resume)
        _quiet_transformers()
        if cfg.model.path == "default":
            log(
                "[empg] loading the default tiny policy (on first use it is built: tokenizer, "
                "model and supervised warm start, 30 to 55 minutes on 2 CPU cores for "
                "household's; cached)"
            )
        t0 = time.perf_counter()
        self.model, self.tokenizer = load_model(cfg, log=log)
        log(f"[empg] policy ready in {time.perf_counter() - t0:.1f}s")
        self.ref_model = None
        if cfg.algo.kl_coef > 0:
            self.ref_model = copy.deepcopy(self.model).eval().requires_grad_(False).to(self.device)
        if self.resume_from is not None:
            try:
                self.model, _ = load_model(cfg, path=str(self.resume_from / "model"))
            except (ConfigError, OSError, ValueError, RuntimeError, SafetensorError) as e:
                raise CheckpointError(
                    f"cannot load the model of {self.resume_from}: {type(e).__name__}: {e}"
                ) from e
        self.model.to(self.device)
        self.pad_id = self.tokenizer.pad_token_id
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=cfg.optim.lr,
            weight_decay=cfg.optim.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.state: dict[str, Any] = {"iteration": 0, "bad_streak": 0, "before": {}}
        if self.resume_from is not None:
            load_optimizer(self.resume_from, self.optimizer, self.scheduler)
            self.state = load_trainer_state(self.resume_from)
            try:
                set_rng_state(self.state["rng"])
            except (KeyError, TypeError, ValueError, RuntimeError) as e:
                raise CheckpointError(
                    f"{self.resume_from}/trainer_state.json: unreadable random state ({e})"
                ) from e
        from empg.agent.generation import HFBackend

        self.backend = HFBackend(self.model, self.tokenizer)
        # on resume, drop what the lost iterations logged (everything, without a checkpoint)
        done = int(self.state["iteration"]) if self.resume_from is not None else -1
        self.metrics = MetricsLogger(
            self.run_dir,
            tensorboard=cfg.tensorboard,
            wandb=cfg.wandb,
            config=config_to_dict(cfg),
            purge_step=done + 1 if resume else None,
        )
        if resume:
            self.metrics.truncate_after(done)

    def _check_run_dir(self, resume: bool) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        saved = self.run_dir / "config.json"
        mine = config_to_dict(self.cfg)
        if self.resume_from is not None:
            done = int(load_trainer_state(self.resume_from)["iteration"])
            if self.cfg.iterations < done:  # refused before config.json says otherwise
                raise ConfigError(
                    f"--resume: {self.run_dir} has done {done} iterations; iterations="
                    f"{self.cfg.iterations} cannot undo them (pass iterations >= {done})"
                )
        if self.resume_from is not None and saved.exists():
            old = saved_config(self.run_dir)
            diff = config_differences(old, self.cfg)
            if diff:
                raise ConfigError(
                    f"--resume: the config differs from the run's saved config in {diff}; only "
                    "'iterations' may change when resuming"
                )
            if self.cfg.optim.schedule == "cosine" and old.get("iterations") != mine["iterations"]:
                self.log(
                    f"[empg] warning: the cosine schedule now spans {mine['iterations']} "
                    f"iterations (it spanned {old.get('iterations')}); the iterations done "
                    "followed the old schedule, so this run will not equal one started with "
                    f"iterations={mine['iterations']}"
                )
        elif not resume and (self.run_dir / "metrics.jsonl").exists():
            raise ConfigError(
                f"{self.run_dir} already holds a run; pass --resume to continue it or choose "
                "another run_dir"
            )
        atomic_write_text(saved, json.dumps(mine, indent=2))  # a kill mid-write keeps the old
        try:
            import yaml

            atomic_write_text(self.run_dir / "config.yaml", yaml.safe_dump(mine, sort_keys=False))
        except ImportError:
            pass

    def _lr_factor(self, it: int) -> float:
        o = self.cfg.optim
        if o.warmup_iters and it < o.warmup_iters:
            return (it + 1) / o.warmup_iters
        if o.schedule == "cosine":
            span = max(1, self.cfg.iterations - o.warmup_iters)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (it - o.warmup_iters) / span)))
        return 1.0

    # ------------------------------------------------------------------------------------------
    def evaluate(self, iteration: int) -> dict[str, Any]:
        self.model.eval()
        t0 = self._clock()
        with self._autocast():
            record = evaluate(self.backend, self.cfg, iteration, log=self.log)
        record["time/eval_s"] = self._clock() - t0
        self.metrics.log(record)
        return record

    def iteration(self, it: int) -> dict[str, Any]:
        cfg, algo = self.cfg, self.cfg.algo
        timings = {}
        t0 = self._clock()
        self.model.eval()
        batch, record = collect_training_batch(self.backend, cfg, it)
        timings["time/rollout_s"] = self._clock() - t0
        record.update({"kind": "train", "iteration": it, "lr": self.scheduler.get_last_lr()[0]})
        if not batch.steps:
            record.update({"actor/updates": 0.0, "actor/skipped_updates": 1.0})
            self.log(f"[empg] iteration {it}: no group with outcome variance; update skipped")
            self._advance_schedule()  # the schedule counts iterations, trained or not
            timings["time/iteration_s"] = timings["time/rollout_s"]
            return {**record, **timings}
        # recompute old log-probs and entropies with the current policy
        t1 = self._clock()
        prompts = [list(s.prompt_ids) for s in batch.steps]
        responses = [s.response_ids.tolist() for s in batch.steps]
        temp = cfg.rollout.temperature if cfg.rollout.temperature > 0 else 1.0
        chunk = cfg.model.chunk_size or None
        micro = cfg.optim.micro_batch_steps
        allowed = [s.allowed for s in batch.steps]
        allowed = allowed if any(a is not None for a in allowed) else None
        old_lp, ent, mask = recompute_logprobs(
            self.model,
            prompts,
            responses,
            pad_id=self.pad_id,
            micro_batch=micro,
            temperature=temp,
            chunk_size=chunk,
            allowed=allowed,
            share_prefix=cfg.model.share_prefix,
        )
        table = batch.step_table()
        width = old_lp.shape[1]
        roll_lp = table.old_logprobs[:, :width]
        record["numerics/max_logprob_diff"] = float((old_lp - roll_lp).abs()[mask].max())
        record["rollout/entropy_mean"] = float(ent[mask].mean())
        ref_lp = None
        if self.ref_model is not None:
            ref_lp, _, _ = recompute_logprobs(
                self.ref_model,
                prompts,
                responses,
                pad_id=self.pad_id,
                micro_batch=micro,
                temperature=temp,
                chunk_size=chunk,
                allowed=allowed,
                share_prefix=cfg.model.share_prefix,
            )
        timings["time/recompute_s"] = self._clock() - t1
        # advantages: outcome estimator per step, then EMPG
        t2 = self._clock()
        adv, adv_stats = batch_advantages(table, ent, mask, algo, cfg.rollout.max_new_tokens)
        record.update(adv_stats)
        timings["time/advantage_s"] = self._clock() - t2
        # update
        t3 = self._clock()
        gen = torch.Generator().manual_seed(derived_seed(cfg.seed, it, 99))
        upd, self.state["bad_streak"] = ppo_update(
            self.model,
            self.optimizer,
            UpdateBatch(prompts, responses, old_lp, mask, adv, ref_lp, allowed),
            algo,
            cfg.optim,
            pad_id=self.pad_id,
            temperature=temp,
            chunk_size=chunk,
            generator=gen,
            bad_streak=self.state["bad_streak"],
            share_prefix=cfg.model.share_prefix,
            norm_len=cfg.rollout.max_new_tokens,
        )
        self.scheduler.step()
        timings["time/update_s"] = self._clock() - t3
        record.update(upd)
        record.update(timings)
        record["time/iteration_s"] = sum(timings.values())
        return record

    def _clock(self) -> float:
        """``time.perf_counter()`` after the GPU's queued work (phase timings on CUDA would
        otherwise charge one phase's kernels to the next); plain on the CPU."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _advance_schedule(self) -> None:
        """Step the learning-rate schedule for an iteration without an optimiser step (torch
        warns about that order, which is intended here)."""
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)`")
            self.scheduler.step()

    def _non_finite_iteration(self, it: int, exc: Exception) -> dict[str, Any]:
        """The policy produced NaN/inf before the update: count it as a skipped update (as
        :func:`ppo_update` counts a non-finite loss) and stop after ``optim.max_bad_updates``."""
        self.state["bad_streak"] += 1
        streak = self.state["bad_streak"]
        self.log(f"[empg] iteration {it}: the policy produced non-finite values ({exc}); skipped")
        if streak >= self.cfg.optim.max_bad_updates:
            raise TrainingDivergedError(
                f"{streak} consecutive iterations or updates met non-finite values (last: {exc}); "
                "lower optim.lr, check the rewards, or raise optim.max_bad_updates"
            ) from exc
        lr = self.scheduler.get_last_lr()[0]  # this iteration's, as other records give it
        self._advance_schedule()
        nan = float("nan")
        return {
            "kind": "train",
            "iteration": it,
            "lr": lr,
            "actor/updates": 0.0,
            "actor/skipped_updates": 1.0,
            "rollout/success_rate": nan,
            "rollout/reward_mean": nan,
            "rollout/step_rows": 0,
        }

    def _autocast(self):
        return autocast_for(self.device, self.cfg.model.dtype)

    def run(self) -> TrainResult:
        """Evaluate, train up to ``iterations``, evaluate again; returns before and after.
        An exception (divergence, NaN in an evaluation, Ctrl-C) still closes the TensorBoard
        writer, marks the W&B run failed and plots what was logged before it propagates."""
        try:
            return self._run()
        except BaseException:
            with contextlib.suppress(Exception):  # the run's own error is the one to report
                self.metrics.close(failed=True)
            raise
        finally:
            try:
                self._plot()
            finally:
                self._unlock()

    def _run(self) -> TrainResult:
        cfg = self.cfg
        start = int(self.state["iteration"])
        result = TrainResult(self.run_dir)
        if start == 0 and not self.state.get("before"):
            self.log(f"[empg] evaluating the initial policy on {cfg.eval.splits} ...")
            self.state["before"] = self.evaluate(0)
            self.log(f"[empg] before RL: {_fmt(self.state['before'], cfg)}")
        result.before = self.state["before"]
        t_start = time.perf_counter()
        for it in range(start + 1, cfg.iterations + 1):
            try:
                with self._autocast():
                    record = self.iteration(it)
            except NonFiniteError as exc:  # NaN/inf logits while sampling or recomputing
                record = self._non_finite_iteration(it, exc)
            self.metrics.log(record)
            done = it - start
            eta = (time.perf_counter() - t_start) / done * (cfg.iterations - it)
            self.log(
                f"[empg] iter {it}/{cfg.iterations} success {record['rollout/success_rate']:.2f} "
                f"reward {record['rollout/reward_mean']:+.3f} rows {record['rollout/step_rows']} "
                f"entropy {record.get('rollout/entropy_mean', float('nan')):.3f} "
                f"{record.get('time/iteration_s', 0):.1f}s  eta {eta / 60:.1f} min"
            )
            if cfg.eval.every and it % cfg.eval.every == 0 and it != cfg.iterations:
                ev = self.evaluate(it)
                self.log(f"[empg] eval @ {it}: {_fmt(ev, cfg)}")
            self.state["iteration"] = it
            if it % cfg.checkpoint_every == 0 or it == cfg.iterations:
                self.metrics.sync()  # on disk before the checkpoint that covers its records
                save_checkpoint(
                    self.run_dir,
                    it,
                    self.model,
                    self.optimizer,
                    self.scheduler,
                    {k: v for k, v in self.state.items() if k != "rng"},
                    keep=cfg.keep_checkpoints,
                    tokenizer=self.tokenizer,
                )
        result.iterations_done = int(self.state["iteration"])
        earlier = [  # a resumed run that had nothing left to do was evaluated already
            r
            for r in read_metrics(self.metrics.path)
            if r.get("kind") == "eval" and r.get("iteration") == result.iterations_done
        ]
        if start == result.iterations_done and start > 0 and earlier:
            result.after = earlier[-1]
        elif result.iterations_done == 0:  # untrained: the same policy on the same tasks
            result.after = result.before
        else:
            self.log("[empg] evaluating the trained policy ...")
            result.after = self.evaluate(result.iterations_done)
        self.log(f"[empg] before RL: {_fmt(result.before, cfg)}")
        self.log(f"[empg] after  RL: {_fmt(result.after, cfg)}")
        self.metrics.close()
        return result

    def _plot(self) -> None:
        """PNG plots of what metrics.jsonl holds, also after a run that stopped with an error;
        a failure to plot is reported, never raised (the run's results are written)."""
        try:
            from empg.train.plots import plot_run

            paths = plot_run(self.run_dir)
        except ImportError:
            self.log("[empg] matplotlib not installed: no plots")
        except Exception as e:
            self.log(f"[empg] warning: plots not written: {type(e).__name__}: {e}")
        else:
            if paths:
                self.log(f"[empg] plots in {paths[0].parent}")


def saved_config(run_dir: str | Path) -> dict[str, Any]:
    """A run's saved ``config.json`` (fields added since it was written filled in with their
    defaults); a :class:`CheckpointError` names the file when it cannot be read."""
    saved = Path(run_dir) / "config.json"
    try:
        loaded = json.loads(saved.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {saved}: {e}") from e
    if not isinstance(loaded, dict):
        raise CheckpointError(
            f"cannot read {saved}: it holds a JSON {type(loaded).__name__}, not a config object"
        )
    return _with_defaults(loaded)


#: fields a resumed run may change: ``iterations``, and ``run_dir`` (the folder being resumed is
#: the run, however it is spelt or wherever it moved)
FREE_ON_RESUME = ("iterations", "run_dir")


def config_differences(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """Top-level fields in which ``cfg`` differs from a run's ``saved`` config, other than
    :data:`FREE_ON_RESUME`: a non-empty list means ``cfg`` does not describe that run."""
    mine = config_to_dict(cfg)
    return sorted(
        k for k in set(saved) | set(mine) if k not in FREE_ON_RESUME and saved.get(k) != mine.get(k)
    )


def _with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved config with the fields added since it was written filled in with their defaults
    (the run behaved as those defaults do), so an older run can still be resumed; a config
    the schema rejects is compared as it is."""
    try:
        return config_to_dict(from_dict(TrainConfig, saved))
    except ConfigError:
        return saved


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def _fmt(record: dict[str, Any], cfg: TrainConfig) -> str:
    parts = [
        f"{s} {100 * record.get(f'eval/{s}/success_rate', float('nan')):.1f}%"
        for s in cfg.eval.splits
    ]
    return ", ".join(parts)
