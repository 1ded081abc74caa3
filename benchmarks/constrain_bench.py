"""What action-constrained decoding costs in rollouts, in one run.

    .venv/bin/python benchmarks/constrain_bench.py [--tasks 6] [--group 8] [--threads 2]
        [--repeats 2] [--model PATH]

Plays ``--tasks`` household train tasks x ``--group`` episodes with the trainer's default
rollout settings and the default policy (or ``--model``), alternating unconstrained and
constrained decoding (``rollout.constrain_actions``) ``--repeats`` times with the same sampling
seed. Prints, per side: mean seconds, steps, generated tokens, milliseconds per generated token,
success and no-op shares, and for the constrained sides the seconds spent building the masks
(``_mask_actions``) and that share of the rollout time. The unconstrained and constrained sides
sample different tokens (that is the point), so compare per-token costs. A third side,
``restricted``, is the constrained one with ``restricted_logprobs`` (the same tokens, scored under
the renormalised distribution); on its last batch the trainer's recomputation
(``recompute_logprobs``) is timed with and without the allowed sets, alternating.
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
    rows: dict[str, list[dict]] = {"unconstrained": [], "constrained": [], "restricted": []}
    last = None

    def side(name: str):
        return dataclasses.replace(
            base,
            constrain_actions=name != "unconstrained",
            restricted_logprobs=name == "restricted",
        )

    names = list(rows)
    for name in names:  # untimed warm-up of every side, on one task
        collect_rollouts(backend, seeds[:1], side(name), generator=torch.Generator().manual_seed(0))
    for rep in range(args.repeats):
        for name in names[rep % 3 :] + names[: rep % 3]:  # rotate who goes first
            cfg = side(name)
            spent[0] = 0.0
            t0 = time.perf_counter()
            b = collect_rollouts(backend, seeds, cfg, generator=torch.Generator().manual_seed(0))
            sec = time.perf_counter() - t0
            last = b if name == "restricted" else last
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
        f"{args.repeats} repeats after a warm-up, order rotated"
    )
    for name, rs in rows.items():
        m = {k: statistics.mean(r[k] for r in rs) for k in rs[0]}
        line = (
            f"{name:>14}: {m['s']:.1f} s, {m['steps']:.0f} steps, {m['tokens']:.0f} tokens, "
            f"{m['ms_per_token']:.2f} ms/token, success {m['success']:.2f}, no-op {m['noop']:.2f}"
        )
        if name != "unconstrained":
            line += f", masks {m['mask_s']:.1f} s ({100 * m['mask_s'] / m['s']:.0f}% of the time)"
        print(line)
    a, c, r = (statistics.mean(x["ms_per_token"] for x in rows[k]) for k in rows)
    print(f"per-token cost, constrained / unconstrained: {c / a:.2f}x")
    print(f"per-token cost, restricted / constrained (the same tokens): {r / c:.2f}x")
    recompute_cost(_model, last, args.repeats)


def recompute_cost(model, batch, repeats: int) -> None:
    """The trainer's recomputation of one batch, with and without the restricted scoring."""
    from empg.train.update import recompute_logprobs

    prompts = [list(s.prompt_ids) for s in batch.steps]
    responses = [s.response_ids.tolist() for s in batch.steps]
    allowed = [s.allowed for s in batch.steps]
    masked = sum(a is not None for s in allowed for a in s)
    times: dict[str, list[float]] = {"plain": [], "restricted": []}

    def run(name: str) -> None:
        recompute_logprobs(
            model,
            prompts,
            responses,
            pad_id=batch.pad_token_id,
            micro_batch=64,
            temperature=0.7,
            allowed=allowed if name == "restricted" else None,
            share_prefix=True,  # as the trainer runs it (model.share_prefix, on by default)
        )

    for name in times:  # untimed warm-up
        run(name)
    for rep in range(max(2, repeats)):
        for name in list(times)[rep % 2 :] + list(times)[: rep % 2]:  # alternate who goes first
            t0 = time.perf_counter()
            run(name)
            times[name].append(time.perf_counter() - t0)
    p, r = (statistics.mean(times[k]) for k in times)
    tokens = sum(len(x) for x in responses)
    print(
        f"recomputation of {len(prompts)} step rows ({tokens} tokens, {masked} under the mask): "
        f"plain {p:.2f} s, restricted {r:.2f} s ({r / p:.2f}x)"
    )


if __name__ == "__main__":
    main()
