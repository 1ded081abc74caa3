"""``empg train`` and ``empg eval`` (wired into :mod:`empg.cli`)."""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

from empg.train.config import TrainConfig
from empg.train.schema import help_lines

EPILOG_HEAD = "config fields (set with key.path=value, e.g. algo.empg.zeta=0.05 seed=3):"


def configure_train(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = (
        "Train a ReAct agent with GRPO/DAPO (+EMPG). With no arguments: the household "
        "environment, the offline tiny policy, DAPO+EMPG, about 10 minutes on 2 CPU cores "
        "once the policy is cached (the first use builds it: 30 to 55 minutes more); prints "
        "held-out success before and after RL, with the standard error of each change. A new "
        "run needs an empty run_dir (default "
        "runs/default): pass --resume to continue one, or run_dir=DIR."
    )
    p.epilog = EPILOG_HEAD + "\n" + "\n".join(help_lines(TrainConfig))
    p.add_argument("--config", help="YAML file with the same schema (configs/*.yaml)")
    p.add_argument("--resume", action="store_true", help="continue the run in run_dir exactly")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides (see below)")


def run_train(args: argparse.Namespace) -> int:
    from empg.train.config import load_config
    from empg.train.trainer import Trainer

    cfg = load_config(args.config, args.overrides)
    try:
        result = Trainer(cfg, resume=args.resume).run()
    except KeyboardInterrupt:
        print(interrupted_message(cfg.run_dir, args), file=sys.stderr)
        return 130
    print()
    print(
        f"held-out success before -> after RL ({cfg.eval.episodes} tasks per split, "
        f"T={cfg.eval.temperature:g}):"
    )
    for split in cfg.eval.splits:
        key = f"eval/{split}/success_rate"
        b, a = result.before.get(key, float("nan")), result.after.get(key, float("nan"))
        se = paired_standard_error(
            result.before.get(f"eval/{split}/wins"), result.after.get(f"eval/{split}/wins")
        )
        spread = "" if se is None else f", standard error {100 * se:.1f}"
        gain = f"{100 * (a - b):+.1f} points{spread}"
        print(f"  {split:14s} {100 * b:5.1f}% -> {100 * a:5.1f}%  ({gain})")
    print(f"run directory: {result.run_dir}")
    return 0


def paired_standard_error(before: Any, after: Any) -> float | None:
    """Standard error of the change in success between two evaluations of the same tasks, from
    the per-task outcomes (0/1 lists in task order): the sample standard deviation of the
    per-task differences over the square root of their number. None when either list is
    missing (an evaluation recorded before they were kept), their lengths differ or there are
    fewer than two tasks."""
    if not isinstance(before, list) or not isinstance(after, list):
        return None
    if len(before) != len(after) or len(before) < 2:
        return None
    diffs = [float(a) - float(b) for b, a in zip(before, after, strict=True)]
    return statistics.stdev(diffs) / math.sqrt(len(diffs))


def interrupted_message(run_dir: str, args: argparse.Namespace) -> str:
    """What Ctrl-C during ``empg train`` leaves behind, and the command that continues it."""
    from empg.train.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(Path(run_dir).expanduser())
    again = ["empg train", "--resume"]
    if args.config:
        again += ["--config", shlex.quote(args.config)]
    again += [shlex.quote(o) for o in args.overrides]
    kept = (
        f"{ckpt.name} is the last complete checkpoint (what ran after it is lost)"
        if ckpt is not None
        else "no iteration was checkpointed yet"
    )
    return f"empg train: interrupted; {kept}. Continue with:\n  {' '.join(again)}"


def configure_eval(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Evaluate a policy (model path or a run's checkpoint) on held-out splits. A checkpoint "
        "is evaluated with its run's saved config (environment, prompt, evaluation settings) "
        "unless --config is given; overrides apply on top."
    )
    p.add_argument("--config", help="YAML file (same schema as empg train)")
    p.add_argument("--checkpoint", help="a run's checkpoint folder (iter_XXXXXX) to evaluate")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. model.path=DIR")


def run_eval(args: argparse.Namespace) -> int:
    from empg.errors import ConfigError
    from empg.train.checkpoint import load_trainer_state
    from empg.train.config import config_from_data, load_config
    from empg.train.trainer import evaluate_model, saved_config

    path = None
    iteration: int | None = None  # of the checkpoint; None for a model path
    cfg = None
    if args.checkpoint:
        ckpt = Path(args.checkpoint).expanduser().resolve()  # its run is two folders up
        path = str(ckpt / "model")
        if not Path(path).is_dir():
            raise ConfigError(
                f"--checkpoint {args.checkpoint}: no model/ folder there (a run's checkpoints "
                "are <run_dir>/checkpoints/iter_XXXXXX)"
            )
        run_dir = ckpt.parent.parent
        if args.config is None and (run_dir / "config.json").is_file():
            _to_stderr(f"[empg] the run's saved config: {run_dir / 'config.json'}")
            cfg = config_from_data(saved_config(run_dir), args.overrides)
        elif args.config is None:
            _to_stderr(
                f"[empg] warning: no run config at {run_dir / 'config.json'}; evaluating with "
                "the defaults and the overrides given"
            )
        if (ckpt / "trainer_state.json").exists():
            iteration = int(load_trainer_state(ckpt)["iteration"])
    if cfg is None:
        cfg = load_config(args.config, args.overrides)
    # progress on stderr, so stdout stays one JSON object
    record = evaluate_model(cfg, path, log=_to_stderr, checkpoint=path is not None)
    record = {"env": cfg.env.name, "model": path or cfg.model.path, **record}
    record["iteration"] = iteration
    print(json.dumps({k: v for k, v in record.items() if k != "kind"}, indent=2))
    return 0


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
