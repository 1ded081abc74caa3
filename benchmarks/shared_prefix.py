"""Recomputation and update with and without shared prompt prefixes, on one real training batch.

    python benchmarks/shared_prefix.py                    # the default policy and job settings
    python benchmarks/shared_prefix.py --repeats 3 rollout.tasks_per_batch=4

Collects one training batch with the trainer's own rollout code (config overrides as for
``empg train``), then times ``recompute_logprobs`` and one ``ppo_update`` (from the same weights
and a fresh optimiser each time) with ``share_prefix`` off and on, alternating, after
``--warmup`` untimed rounds of both, and prints the
median seconds of each, their ratio, the prompt tokens the model runs in each mode, and the
largest difference between the two modes' log-probs and entropies and updated weights.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per mode (alternating)")
    p.add_argument(
        "--warmup", type=int, default=1, help="untimed rounds of both modes first (cold caches)"
    )
    p.add_argument("--iteration", type=int, default=1, help="which iteration's batch to collect")
    p.add_argument("overrides", nargs="*", help="config overrides, as for empg train")
    args = p.parse_args()
    if args.repeats < 1 or args.warmup < 0 or args.iteration < 1:
        p.error("--repeats and --iteration must be >= 1, --warmup >= 0")

    import torch

    from empg.train.advantages import batch_advantages
    from empg.train.config import load_config
    from empg.train.policy import micro_batches, pack_rows
    from empg.train.rollouts import collect_training_batch
    from empg.train.trainer import Trainer, autocast_for
    from empg.train.update import UpdateBatch, ppo_update, recompute_logprobs

    with tempfile.TemporaryDirectory() as run_dir:
        cfg = load_config(None, [f"run_dir={run_dir}", "tensorboard=false", *args.overrides])
        trainer = Trainer(cfg, log=lambda *_: None)
    model = trainer.model
    model.eval()
    t0 = time.perf_counter()
    batch, _ = collect_training_batch(trainer.backend, cfg, args.iteration)
    print(f"rollout: {time.perf_counter() - t0:.1f} s, {len(batch.steps)} step rows")
    if not batch.steps:
        raise SystemExit("the batch has no group with outcome variance; try --iteration 2")
    prompts = [list(s.prompt_ids) for s in batch.steps]
    responses = [s.response_ids.tolist() for s in batch.steps]
    temp = cfg.rollout.temperature if cfg.rollout.temperature > 0 else 1.0
    micro = cfg.optim.micro_batch_steps

    # prompt tokens the model runs: every row in full, or each micro-batch's prefix once
    full_tokens = sum(len(x) for x in prompts)
    shared_tokens = 0
    for idx in micro_batches(range(len(prompts)), prompts, responses, micro, True):
        rows = pack_rows(
            [prompts[i] for i in idx], [responses[i] for i in idx], 0, share_prefix=True
        )
        pre = 0 if rows.prefix_ids is None else rows.prefix_ids.numel()
        shared_tokens += pre + sum(len(prompts[i]) - pre for i in idx)
    resp_tokens = sum(len(r) for r in responses)
    print(
        f"prompt tokens run (recomputation): {full_tokens} in full, {shared_tokens} shared "
        f"({shared_tokens / full_tokens:.2f}x); response tokens {resp_tokens}"
    )

    table = batch.step_table()
    times: dict[bool, dict[str, list[float]]] = {
        m: {"recompute": [], "update": []} for m in (False, True)
    }
    outputs: dict[bool, tuple] = {}

    def clock() -> float:  # after the GPU's queued work, where there is one
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    for rnd in range(args.warmup + args.repeats):
        for share in (False, True):
            t = clock()
            with autocast_for(
                trainer.device, cfg.model.dtype
            ):  # as the trainer: bf16 on CUDA, fp32 on the CPU
                lp, ent, mask = recompute_logprobs(
                    model,
                    prompts,
                    responses,
                    pad_id=trainer.pad_id,
                    micro_batch=micro,
                    temperature=temp,
                    share_prefix=share,
                )
            recompute_s = clock() - t
            adv, _ = batch_advantages(table, ent, mask, cfg.algo, cfg.rollout.max_new_tokens)
            m = copy.deepcopy(model)
            opt = torch.optim.AdamW(m.parameters(), lr=cfg.optim.lr)
            t = clock()
            with autocast_for(trainer.device, cfg.model.dtype):
                ppo_update(
                    m,
                    opt,
                    UpdateBatch(prompts, responses, lp, mask, adv),
                    cfg.algo,
                    cfg.optim,
                    pad_id=trainer.pad_id,
                    temperature=temp,
                    generator=torch.Generator().manual_seed(0),
                    share_prefix=share,
                    norm_len=cfg.rollout.max_new_tokens,
                )
            update_s = clock() - t
            if rnd >= args.warmup:
                times[share]["recompute"].append(recompute_s)
                times[share]["update"].append(update_s)
            weights = torch.cat([x.detach().flatten() for x in m.parameters()])
            outputs[share] = (lp, ent, weights)
    print(
        f"device={trainer.device} threads={torch.get_num_threads()} warm-up rounds="
        f"{args.warmup} repeats={args.repeats} (median seconds)"
    )
    print(f"{'phase':>10} {'full rows':>10} {'shared':>8} {'speed-up':>9}")
    for ph in ("recompute", "update"):
        a, b = statistics.median(times[False][ph]), statistics.median(times[True][ph])
        print(f"{ph:>10} {a:>10.2f} {b:>8.2f} {a / b:>8.2f}x")
    (lp0, ent0, w0), (lp1, ent1, w1) = outputs[False], outputs[True]
    print(
        f"largest difference: log-prob {float((lp0 - lp1).abs().max()):.2e}, entropy "
        f"{float((ent0 - ent1).abs().max()):.2e}, weights after the update "
        f"{float((w0 - w1).abs().max()):.2e}"
    )


if __name__ == "__main__":
    main()
