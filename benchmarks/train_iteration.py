"""Seconds per RL iteration, split into rollout, recomputation, advantage and update.

    python benchmarks/train_iteration.py                      # default policy, 3 iterations
    python benchmarks/train_iteration.py --iterations 5 rollout.tasks_per_batch=4

Runs the real trainer (no evaluation) in a temporary run directory and prints the mean of each
phase's wall time over the iterations after the first (the first one warms caches up) that
trained (an iteration whose groups all had equal outcomes has no update to time), and each
phase's share of the iteration. On a GPU (``device=auto`` finds it) it runs as ``empg train``
does there: bf16 autocast, phase times taken after a CUDA synchronise.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

PHASES = ("rollout", "recompute", "advantage", "update")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("overrides", nargs="*", help="config overrides, as for empg train")
    args = p.parse_args()
    if args.iterations < 2:
        p.error("--iterations must be >= 2 (the first iteration warms caches up and is not used)")

    import torch

    from empg.train.config import load_config
    from empg.train.metrics import read_metrics
    from empg.train.trainer import Trainer, autocast_for

    with tempfile.TemporaryDirectory() as run_dir:
        cfg = load_config(
            None,
            [
                f"run_dir={run_dir}",
                f"iterations={args.iterations}",
                "eval.episodes=1",
                "tensorboard=false",
                *args.overrides,
            ],
        )
        trainer = Trainer(cfg, log=lambda *_: None)
        for it in range(1, cfg.iterations + 1):
            with autocast_for(
                trainer.device, cfg.model.dtype
            ):  # as Trainer.run: bf16 autocast on CUDA, fp32 on the CPU
                trainer.metrics.log(trainer.iteration(it))
        records = [r for r in read_metrics(f"{run_dir}/metrics.jsonl") if r["kind"] == "train"]
    # iterations without an update (no group worth training) have no recompute/update phases
    used = [r for r in records[1:] if r.get("time/update_s") is not None]
    if not used:
        raise SystemExit(
            "no measured iteration trained (every group's outcomes were equal); "
            "raise --iterations or rollout.tasks_per_batch"
        )
    total = statistics.mean(r["time/iteration_s"] for r in used)
    print(
        f"device={trainer.device} dtype={cfg.model.dtype} threads={torch.get_num_threads()} "
        f"iterations measured={len(used)} (skipped without an update: "
        f"{len(records) - 1 - len(used)}) "
        f"step rows/iter={statistics.mean(r['rollout/step_rows'] for r in used):.0f}"
    )
    print(f"{'phase':>10} {'seconds':>8} {'share':>6}")
    for ph in PHASES:
        sec = statistics.mean(r[f"time/{ph}_s"] for r in used)
        print(f"{ph:>10} {sec:>8.2f} {sec / total:>6.1%}")
    print(f"{'total':>10} {total:>8.2f}")


if __name__ == "__main__":
    main()
