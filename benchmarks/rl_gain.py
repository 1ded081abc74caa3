"""Held-out gain of RL over several training seeds, measured on one common evaluation.

    python benchmarks/rl_gain.py --seeds 0 1 2 3 --out runs/rl_gain
    python benchmarks/rl_gain.py --seeds 0 1 --eval-seeds 5 6 --episodes 200 \\
        --out runs/rl_gain_wide model.path=DIR iterations=6 threads=2
    python benchmarks/rl_gain.py --config configs/shop-dapo-empg.yaml --seeds 0 1 --out runs/shop

(Config overrides go last, after an option that takes one value such as --out: a list option
like --seeds would otherwise read them as seeds.)

The printed "before -> after" of one `empg train` run compares two evaluations of 100 tasks
with one sampling seed, and with a success rate near 20% that difference has a standard error
of 3-5 points (the paired one it prints; about 6 unpaired): single runs cannot show a gain of
a few points. This script trains once per
training seed (`empg train <overrides> seed=<N> run_dir=<out>/seed<N>`; a finished run is
reused, an interrupted one resumed from its last checkpoint) and then lets the warm start and
every final policy play the same evaluation: the trainer's fixed task list (tasks
0..episodes-1 of each split, T = eval.temperature) once per evaluation seed. Each finished
evaluation is appended to `<out>/evaluations.jsonl` and reused by a later call with the same
settings and the same empg source code. It prints each policy's success per split, each
run's gain over the warm start, and the mean gain with its standard error across training
seeds, and writes all of it to `<out>/summary.json`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds")
    p.add_argument(
        "--eval-seeds",
        type=int,
        nargs="+",
        default=[5, 6],
        help="sampling seeds of the common evaluation (each plays the whole task list)",
    )
    p.add_argument("--episodes", type=int, default=200, help="tasks per split in the evaluation")
    p.add_argument("--splits", nargs="+", default=None, help="splits (default: eval.splits)")
    p.add_argument("--out", default="runs/rl_gain", help="folder for the runs and summary.json")
    p.add_argument("--config", default=None, help="YAML config file, as for empg train --config")
    p.add_argument("overrides", nargs="*", help="config overrides, as for empg train")
    args = p.parse_args(argv)
    for name in ("seeds", "eval_seeds"):
        values = getattr(args, name)
        if len(set(values)) != len(values):
            p.error(f"--{name.replace('_', '-')} has repeated values: {values}")
    if args.episodes < 1:
        p.error(f"--episodes must be >= 1, got {args.episodes}")
    for o in args.overrides:
        if o.split("=", 1)[0] in ("seed", "run_dir"):
            p.error(f"{o!r}: the script sets seed and run_dir itself (--seeds, --out)")
    return args


def _train(config: str | None, overrides: list[str], run_dir: Path, seed: int) -> Path:
    """Final checkpoint of the run with ``seed`` (trained, resumed or reused)."""
    from empg.train.checkpoint import latest_checkpoint, load_trainer_state
    from empg.train.config import load_config
    from empg.train.trainer import Trainer, config_differences, saved_config

    cfg = load_config(config, [*overrides, f"seed={seed}", f"run_dir={run_dir}"])
    last = latest_checkpoint(run_dir)
    if last is not None:  # a run is there: it must be this setting's run
        diff = config_differences(saved_config(run_dir), cfg)
        if diff:
            raise SystemExit(
                f"rl_gain: the run in {run_dir} was trained with other settings ({diff}); "
                "use another --out"
            )
        done_iters = load_trainer_state(last)["iteration"]
        if done_iters > cfg.iterations:
            raise SystemExit(
                f"rl_gain: the run in {run_dir} has {done_iters} iterations, more than the "
                f"{cfg.iterations} asked for; use another --out"
            )
    done = last is not None and load_trainer_state(last)["iteration"] >= cfg.iterations
    if not done:
        print(f"[rl_gain] training seed {seed} in {run_dir}", flush=True)
        # resume a run with a checkpoint; one killed before its first checkpoint starts over
        resume = last is not None or (run_dir / "metrics.jsonl").exists()
        Trainer(cfg, resume=resume).run()
        last = latest_checkpoint(run_dir)
    else:
        print(f"[rl_gain] seed {seed}: reusing the finished run in {run_dir}", flush=True)
    if last is None:
        raise RuntimeError(f"the run in {run_dir} left no checkpoint")
    return last


def _evaluate(
    config: str | None, overrides: list[str], model_path: str | None, splits, episodes, eval_seed
):
    """{split: success rate} of one policy under one evaluation seed (as ``empg eval`` runs it:
    the configured device, precision and threads)."""
    from empg.train.config import load_config
    from empg.train.trainer import evaluate_model

    split_list = "[" + ",".join(splits) + "]"
    cfg = load_config(
        config,
        [*overrides, f"seed={eval_seed}", f"eval.episodes={episodes}", f"eval.splits={split_list}"],
    )
    record = evaluate_model(cfg, model_path)
    return {s: float(record[f"eval/{s}/success_rate"]) for s in splits}


def _file_digest(path: str | None) -> str | None:
    """The config file's SHA-256 (an edited file must not reuse old evaluations)."""
    if path is None:
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


#: one JSON line per finished evaluation, so an interrupted call loses at most the one in progress
EVALUATIONS = "evaluations.jsonl"


#: the files that hold a policy folder's weights (a full model, or a LoRA adapter)
WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors")


def _weights_digest(folder: Path | None) -> str | None:
    """SHA-256 of a policy folder's weight files (None without a local folder or weights)."""
    if folder is None:
        return None
    h = hashlib.sha256()
    found = False
    for name in WEIGHT_FILES:
        f = folder / name
        if f.is_file():
            found = True
            h.update(name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest() if found else None


def _code_digest(root: Path | None = None) -> str:
    """SHA-256 over the empg package's Python sources (``root``: the package folder, default
    the imported one): an evaluation made by other code (environments, prompts, parsing,
    sampling) is not read back."""
    if root is None:
        import empg

        root = Path(empg.__file__).parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def _eval_key(config, overrides, model_path, splits, episodes, eval_seed) -> str:
    """What an evaluation depends on: the code, the resolved config (a changed default counts),
    and the weights by content: the evaluated folder's, and the warm start's (a LoRA
    checkpoint's base; for the warm start itself, the folder it loads, e.g. the default
    policy's cache folder, which another machine or recipe builds differently). A hub id or
    a folder with sharded weights has no weights digest: its path alone stands for them."""
    from empg.train.config import config_to_dict, load_config
    from empg.train.trainer import warm_start_dir

    cfg = load_config(config, list(overrides))
    warm = warm_start_dir(cfg)
    return json.dumps(
        {
            "code": _code_digest(),
            "resolved": config_to_dict(cfg),
            "config": _file_digest(config),
            "overrides": list(overrides),
            "policy": model_path,
            "weights": _weights_digest(Path(model_path)) if model_path else None,
            "warm_start": _weights_digest(warm),
            "splits": list(splits),
            "episodes": episodes,
            "seed": eval_seed,
        },
        sort_keys=True,
    )


def _load_evaluations(path: Path) -> dict[str, dict[str, float]]:
    done: dict[str, dict[str, float]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
                done[row["key"]] = {k: float(v) for k, v in row["success"].items()}
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a line cut short by a kill: evaluate that one again
    return done


def _append_evaluation(path: Path, key: str, success: dict[str, float]) -> None:
    torn = path.is_file() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    with open(path, "a") as f:
        # after a line cut short by a kill, start on a line of its own
        f.write(("\n" if torn else "") + json.dumps({"key": key, "success": success}) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _mean_se(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return mean, se


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parse(argv)
    from empg.train.config import load_config

    base = load_config(args.config, list(args.overrides))  # rejects bad overrides before any work
    splits = list(args.splits or base.eval.splits)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    finals = {
        seed: _train(args.config, args.overrides, out / f"seed{seed}", seed) for seed in args.seeds
    }
    t_train = time.perf_counter() - t0

    policies: dict[str, str | None] = {"warm start": None}
    policies.update({f"seed {s}": str(finals[s] / "model") for s in args.seeds})
    done = _load_evaluations(out / EVALUATIONS)
    success: dict[str, dict[str, dict[str, float]]] = {}
    for name, path in policies.items():
        per_seed = {}
        for e in args.eval_seeds:
            key = _eval_key(args.config, args.overrides, path, splits, args.episodes, e)
            t = time.perf_counter()
            if key in done:
                per_seed[str(e)], how = done[key], "reused"
            else:
                per_seed[str(e)] = _evaluate(
                    args.config, args.overrides, path, splits, args.episodes, e
                )
                _append_evaluation(out / EVALUATIONS, key, per_seed[str(e)])
                how = f"{time.perf_counter() - t:.0f} s"
            shown = ", ".join(f"{s} {100 * v:.1f}%" for s, v in per_seed[str(e)].items())
            print(f"[rl_gain] {name}, eval seed {e}: {shown} ({how})", flush=True)
        success[name] = per_seed

    def rate(name: str, split: str) -> float:
        return statistics.fmean(success[name][str(e)][split] for e in args.eval_seeds)

    n_eval = args.episodes * len(args.eval_seeds)
    summary: dict[str, Any] = {
        "config": args.config,
        "overrides": list(args.overrides),
        "seeds": list(args.seeds),
        "eval_seeds": list(args.eval_seeds),
        "episodes": args.episodes,
        "splits": splits,
        "success": success,
        "train_seconds": round(t_train, 1),
        "per_split": {},
    }
    print(
        f"\nsuccess over {n_eval} episodes per split and policy ({args.episodes} tasks x "
        f"{len(args.eval_seeds)} sampling seeds, T={base.eval.temperature:g}):"
    )
    for split in splits:
        before = rate("warm start", split)
        gains = [rate(f"seed {s}", split) - before for s in args.seeds]
        mean, se = _mean_se(gains)
        # binomial standard error of the shared warm-start measurement; every gain subtracts
        # the same estimate, so the spread across seeds leaves it out: the mean gain's standard
        # error combines the two
        se_before = math.sqrt(before * (1 - before) / n_eval)
        se_total = math.sqrt(se**2 + se_before**2) if math.isfinite(se) else float("nan")
        summary["per_split"][split] = {
            "before": before,
            "after": {str(s): rate(f"seed {s}", split) for s in args.seeds},
            "gain": {str(s): g for s, g in zip(args.seeds, gains, strict=True)},
            "mean_gain": mean,
            "se_across_seeds": se,
            "se_warm_start": se_before,
            "se_mean_gain": se_total,
        }
        after = "  ".join(
            f"seed {s} {100 * rate(f'seed {s}', split):.1f}% ({100 * g:+.1f})"
            for s, g in zip(args.seeds, gains, strict=True)
        )
        print(f"  {split:13s} warm start {100 * before:.1f}%  {after}")
        print(
            f"  {'':13s} mean gain {100 * mean:+.1f} points, standard error {100 * se:.1f} "
            f"across seeds, {100 * se_before:.1f} for the shared warm-start measurement, "
            f"{100 * se_total:.1f} in all"
        )
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"summary: {out / 'summary.json'}")
    return summary


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
