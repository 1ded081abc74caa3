"""Held-out success of the supervised warm start at several step budgets, from one run.

    python benchmarks/sft_budget.py --steps 900 --eval-at 300,600,900
    python benchmarks/sft_budget.py --history 1 --past-actions 12 --save-dir runs/sft
    python benchmarks/sft_budget.py --init runs/sft/step_900 --steps 300 --decay-steps 300 \
        --length-grouping --seed 1 --eval-at 300 --episodes 50 --splits valid_seen,valid_unseen
    python benchmarks/sft_budget.py --default-recipe --ema 0.995 --eval-at 900,1200 \
        --episodes 100 --splits train@1500,valid_seen,valid_unseen --threads 2 --save-dir runs/sft

Builds the default tokenizer and tiny model, trains with ``train_sft`` (budgets are prefixes
of one run, so every checkpoint equals a shorter run, unless ``--decay-steps`` is set), and at
each listed step plays
``--episodes`` held-out household tasks of every split in ``--splits`` with
``evaluate_policy`` at ``--temperature`` (``split@N`` plays tasks N .. N + episodes - 1 of the
split: ``train@1500`` are train tasks the 1,500 data episodes did not use). ``--init DIR``
continues from a saved model (its tokenizer too) instead of a fresh one.
``--default-recipe`` trains exactly the default household policy's recipe
(``empg.models.default_configs``: architecture, learning rate, steps, decay; the options for
those are then refused), so its last checkpoint is the cached default build. ``--ema D`` also
keeps an exponential moving average of the weights (``avg = D * avg + (1 - D) * weights`` after
every step) and evaluates it at the same checkpoints. Prints one line per checkpoint, weights
and split: step, seconds so far, success rate, invalid responses, mean steps.
This is how the warm-start tables in docs/models.md were measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--default-recipe", action="store_true", help="the default policy's recipe")
    p.add_argument("--ema", type=float, default=0.0, help="also evaluate an EMA of the weights")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default 900)")
    p.add_argument("--eval-at", default="300,600,900", help="comma-separated step numbers")
    p.add_argument("--episodes", type=int, default=40, help="held-out tasks per evaluation")
    p.add_argument("--splits", default="valid_seen", help="comma-separated held-out splits")
    p.add_argument("--horizon", type=int, default=20)
    p.add_argument("--temperature", type=float, default=0.4)
    p.add_argument("--history", type=int, default=0)
    p.add_argument("--past-actions", type=int, default=16)
    p.add_argument("--no-first-observation", action="store_true")
    p.add_argument("--data-episodes", type=int, default=1500)
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 3e-3)")
    p.add_argument(
        "--decay-steps", type=int, default=None, help="linear LR decay over the last N (default 0)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the batch order")
    p.add_argument("--init", default="", help="continue from this saved model folder")
    p.add_argument("--prompt-loss-weight", type=float, default=0.0)
    p.add_argument("--length-grouping", action="store_true")
    p.add_argument("--task-types", default="", help="comma-separated household task types")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--save-dir", default="", help="save each evaluated checkpoint here")
    args = p.parse_args()
    if not 0 <= args.ema < 1:
        p.error("--ema must be in [0, 1)")
    if args.default_recipe and (args.steps, args.lr, args.decay_steps) != (None, None, None):
        p.error("--default-recipe sets --steps, --lr and --decay-steps itself")

    import copy

    import torch

    from empg.agent.prompts import PromptConfig
    from empg.models.default import default_configs, load_policy
    from empg.models.evaluate import EvalConfig, evaluate_policy
    from empg.models.sft import SFTConfig, expert_examples, train_sft, update_average
    from empg.models.tiny import TinyModelConfig, build_tiny_model
    from empg.models.tokenizer import TokenizerConfig, train_tokenizer

    torch.set_num_threads(args.threads)
    prompt = PromptConfig(
        compact=True,
        show_admissible=False,
        history=args.history,
        first_observation=not args.no_first_observation,
        past_actions=args.past_actions,
    )
    env_kwargs = {"task_types": args.task_types.split(",")} if args.task_types else {}
    if args.default_recipe:
        base, arch = default_configs("household", env_kwargs)
    else:
        base = SFTConfig(env_kwargs=env_kwargs, steps=900, lr=3e-3, decay_steps=0)
        arch = TinyModelConfig()
    cfg = dataclasses.replace(
        base,
        steps=base.steps if args.steps is None else args.steps,
        episodes=args.data_episodes,
        lr=base.lr if args.lr is None else args.lr,
        prompt=prompt,
        prompt_loss_weight=args.prompt_loss_weight,
        length_grouping=args.length_grouping,
        decay_steps=base.decay_steps if args.decay_steps is None else args.decay_steps,
        seed=args.seed,
    )
    checkpoints = {int(s) for s in args.eval_at.split(",") if s}
    t0 = time.perf_counter()
    if args.init:
        model, tok = load_policy(args.init)
    else:
        tok = train_tokenizer(TokenizerConfig())
        model = build_tiny_model(tok, arch)
    examples = expert_examples(cfg, tok)
    lengths = [len(ids) for ids in tok([e.prompt for e in examples])["input_ids"]]
    print(
        f"{len(examples)} examples; prompt tokens mean {statistics.mean(lengths):.0f}, "
        f"max {max(lengths)} ({time.perf_counter() - t0:.1f}s)",
        flush=True,
    )
    labels = args.splits.split(",")  # split or split@first_seed
    evals = [
        EvalConfig(
            split=label.partition("@")[0],
            first_seed=int(label.partition("@")[2] or 0),
            episodes=args.episodes,
            horizon=args.horizon,
            temperature=args.temperature,
            prompt=prompt,
            env_kwargs=env_kwargs,
        )
        for label in labels
    ]

    avg = copy.deepcopy(model) if args.ema else None
    aside = [0.0]  # seconds spent evaluating and saving inside the SFT loop

    def on_step(step: int, m) -> None:
        if avg is not None:
            update_average(list(avg.parameters()), list(m.parameters()), args.ema)
        if step not in checkpoints:
            return
        t_in = time.perf_counter()
        arms = [("weights", m)] + ([(f"ema{args.ema:g}", avg)] if avg is not None else [])
        for name, net in arms:
            for ev, label in zip(evals, labels, strict=True):
                r = evaluate_policy(net, tok, ev)
                print(
                    f"step {step}  {name}  {label}  {time.perf_counter() - t0:.0f}s  success "
                    f"{r.success_rate:.3f}  invalid {r.invalid_steps}  "
                    f"mean steps {r.mean_steps:.1f}",
                    flush=True,
                )
            if args.save_dir:
                out = f"{args.save_dir}/step_{step}" + ("" if net is m else f"_{name}")
                net.save_pretrained(out)
                tok.save_pretrained(out)
        aside[0] += time.perf_counter() - t_in

    stats = train_sft(model, tok, cfg, examples=examples, on_step=on_step)
    print(
        f"final loss {statistics.mean(stats.losses[-10:]):.4f}; "
        f"{stats.seconds - aside[0]:.0f}s of SFT ({stats.seconds:.0f}s with the "
        f"{aside[0]:.0f}s of evaluations and saves inside it)"
    )


if __name__ == "__main__":
    main()
