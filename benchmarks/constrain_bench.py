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

import dataclasses
import statistics
import time

from rollout_setup import rollout_args, rollout_setup


def main() -> None:
    args = rollout_args(__doc__.splitlines()[0], tasks=6)

    import torch

    import empg.agent.generation as gen_mod
    from empg.agent.rollout import collect_rollouts

    _model, _tok, backend, base, seeds = rollout_setup(args)

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
