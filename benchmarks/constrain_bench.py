"""What action-constrained decoding costs in rollouts, in one run.

    .venv/bin/python benchmarks/constrain_bench.py [--tasks 6] [--group 8] [--threads 2]
        [--repeats 2] [--model PATH]

Plays ``--tasks`` household train tasks x ``--group`` episodes with the trainer's default
rollout settings and the default policy (or ``--model``), alternating unconstrained and
constrained decoding (``rollout.constrain_actions``) ``--repeats`` times with the same sampling
seed. Prints, per side: mean seconds, steps, generated tokens, milliseconds per generated token,
success and no-op shares, and for the constrained side the seconds spent building the masks
(``_mask_actions``) and that share of the rollout time. The two sides sample different tokens
(that is the point), so compare per-token costs.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=6)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--model", default=None, help="policy folder (default: the default policy)")
    args = ap.parse_args()

    import torch

    import empg.agent.generation as gen_mod
    from empg.agent.generation import HFBackend
    from empg.agent.rollout import collect_rollouts
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
    seeds = list(range(5000, 5000 + args.tasks))

    spent = [0.0]
    inner = gen_mod._mask_actions

    def timed(*a, **k):
        t0 = time.perf_counter()
        try:
            return inner(*a, **k)
        finally:
            spent[0] += time.perf_counter() - t0

    gen_mod._mask_actions = timed
    rows: dict[str, list[dict]] = {"unconstrained": [], "constrained": []}
    for _ in range(args.repeats):
        for name in rows:
            cfg = dataclasses.replace(base, constrain_actions=name == "constrained")
            spent[0] = 0.0
            t0 = time.perf_counter()
            b = collect_rollouts(backend, seeds, cfg, generator=torch.Generator().manual_seed(0))
            sec = time.perf_counter() - t0
            toks = sum(len(s.response_ids) for s in b.steps)
            steps = sum(t.length for t in b.trajectories)
            rows[name].append(
                {
                    "s": sec,
                    "steps": steps,
                    "tokens": toks,
                    "ms_per_token": 1000 * sec / toks,
                    "success": statistics.mean(t.won for t in b.trajectories),
                    "noop": sum(t.noop_steps for t in b.trajectories) / steps,
                    "mask_s": spent[0],
                }
            )
    print(
        f"{args.tasks} tasks x {args.group} episodes, {args.threads} threads, "
        f"{args.repeats} repeats"
    )
    for name, rs in rows.items():
        m = {k: statistics.mean(r[k] for r in rs) for k in rs[0]}
        line = (
            f"{name:>14}: {m['s']:.1f} s, {m['steps']:.0f} steps, {m['tokens']:.0f} tokens, "
            f"{m['ms_per_token']:.2f} ms/token, success {m['success']:.2f}, no-op {m['noop']:.2f}"
        )
        if name == "constrained":
            line += f", masks {m['mask_s']:.1f} s ({100 * m['mask_s'] / m['s']:.0f}% of the time)"
        print(line)
    a, c = (statistics.mean(r["ms_per_token"] for r in rows[k]) for k in rows)
    print(f"per-token cost, constrained / unconstrained: {c / a:.2f}x")


if __name__ == "__main__":
    main()
