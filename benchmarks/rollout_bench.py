"""Rollout collection with and without prompt-prefix reuse, and the sampler, in one run.

    .venv/bin/python benchmarks/rollout_bench.py [--tasks 8] [--group 8] [--threads 2]
        [--repeats 2] [--model PATH]

Plays ``--tasks`` household train tasks x ``--group`` episodes (the trainer's default prompt
layout, T=0.7, 48-token cap, 20 turns) with the default policy (or ``--model``), alternating
full prefills, prefix reuse (``prefix_cache=True``), prefix reuse with the folded grouped-query
attention (``empg.models.attention``), and all that with KV caches that reserve room for the
response (``empg.agent.kv_room``; the first three sides append with transformers' ``torch.cat``)
``--repeats`` times with the same sampling seed, and prints each side's mean seconds, the
speed-up over full prefills, the share of prompt tokens taken from the cache and whether all
sides produced the same tokens. Then times ``sample_next`` (inverse CDF) against
``torch.multinomial`` on a (64, vocab) batch.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

from rollout_setup import rollout_args, rollout_setup


def main() -> None:
    args = rollout_args(__doc__.splitlines()[0], tasks=8)

    import torch

    import empg.agent.rollout as rollout_mod
    from empg.agent.generation import GenerationConfig, PrefixCache, sample_next
    from empg.models.attention import use_gqa_attention

    model, _tok, backend, base, seeds = rollout_setup(args)

    caches: list[PrefixCache] = []

    class CountingCache(PrefixCache):  # keeps the counters of the run's cache
        def __init__(self) -> None:
            super().__init__()
            caches.append(self)

    rollout_mod.PrefixCache = CountingCache
    sides = {
        "full prefill": (False, False, False),
        "prefix reuse": (True, False, False),
        "prefix reuse + folded GQA attention": (True, True, False),
        "... + KV room reserved (the default)": (True, True, True),
    }
    times: dict[str, list[float]] = {k: [] for k in sides}
    tokens: dict[str, list] = {}
    share = 0.0

    def setup(reuse: bool, fold: bool, reserve: bool):
        backend.reserve_kv = reserve
        model.set_attn_implementation("sdpa")
        if fold and not use_gqa_attention(model):
            raise SystemExit("the model has no grouped KV heads: the folded side would be sdpa")
        return dataclasses.replace(base, prefix_cache=reuse)

    for side in sides.values():  # untimed warm-up of every side, on one task
        rollout_mod.collect_rollouts(
            backend, seeds[:1], setup(*side), generator=torch.Generator().manual_seed(0)
        )
    names = list(sides)
    for r in range(args.repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate who goes first
            cfg = setup(*sides[name])
            t0 = time.perf_counter()
            b = rollout_mod.collect_rollouts(
                backend, seeds, cfg, generator=torch.Generator().manual_seed(0)
            )
            times[name].append(time.perf_counter() - t0)
            tokens[name] = [s.response_ids.tolist() for s in b.steps]
            if sides[name][0]:
                c = caches[-1]
                share = c.reused_tokens / max(1, c.reused_tokens + c.computed_tokens)
    model.set_attn_implementation("sdpa")
    print(
        f"rollouts: {args.tasks} tasks x {args.group}, {len(tokens['full prefill'])} steps, "
        f"{args.threads} threads, {args.repeats} repeats each after a warm-up, order rotated"
    )
    first = statistics.mean(times["full prefill"])
    for name, ts in times.items():
        m = statistics.mean(ts)
        runs = ", ".join(f"{t:.2f}" for t in ts)
        print(f"  {name:38s} {m:7.2f} s  ({runs})  {first / m:5.2f}x")
    print(f"  prompt tokens taken from the cache: {share:.0%}")
    same = all(t == tokens["full prefill"] for t in tokens.values())
    print(f"  all sides produced the same tokens: {same}")

    v = model.config.vocab_size
    logits = torch.randn(64, v, generator=torch.Generator().manual_seed(1))
    gcfg = GenerationConfig(temperature=0.7)
    gen = torch.Generator().manual_seed(2)
    probs = torch.softmax(logits / 0.7, dim=-1)
    reps = 300

    def clock(fn) -> float:
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) / reps * 1e3

    ms_mult = clock(lambda: torch.multinomial(probs, 1, generator=gen))
    ms_inv = clock(lambda: sample_next(logits, gcfg, gen))
    print(f"sampler, (64, {v}) logits: torch.multinomial {ms_mult:.3f} ms (probabilities given),")
    print(f"  sample_next {ms_inv:.3f} ms (softmax included): {ms_mult / ms_inv:.1f}x")


if __name__ == "__main__":
    main()
