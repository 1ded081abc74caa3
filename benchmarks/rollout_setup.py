"""Shared set-up of the rollout benchmarks (``rollout_bench.py``, ``constrain_bench.py``):
the command-line options, the policy, its backend and the trainer's default rollout config."""

from __future__ import annotations

import argparse
from typing import Any


def rollout_args(description: str, tasks: int) -> argparse.Namespace:
    """``--tasks`` (default ``tasks``), ``--group``, ``--threads``, ``--repeats``, ``--model``."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--tasks", type=int, default=tasks)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--model", default=None, help="policy folder (default: the default policy)")
    return ap.parse_args()


def rollout_setup(args: argparse.Namespace) -> tuple[Any, Any, Any, Any, list[int]]:
    """(model, tokenizer, HFBackend, the trainer's train-split RolloutConfig at T=0.7 with
    ``--group`` episodes per task, ``--tasks`` household train seeds from 5000), with torch
    set to ``--threads`` threads and the policy in eval mode (built on first use)."""
    import torch

    from empg.agent.generation import HFBackend
    from empg.models.default import default_policy, load_policy
    from empg.train.config import load_config
    from empg.train.rollouts import rollout_config

    torch.set_num_threads(args.threads)
    if args.model:
        model, tok = load_policy(args.model)
    else:
        model, tok, _ = default_policy(log=print)
    model.eval()
    backend = HFBackend(model, tok)
    base = rollout_config(load_config(None, []), "train", temperature=0.7, group_size=args.group)
    return model, tok, backend, base, list(range(5000, 5000 + args.tasks))
