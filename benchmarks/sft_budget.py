"""Held-out success of the supervised warm start at several step budgets, from one run.

    python benchmarks/sft_budget.py --steps 900 --eval-at 300,600,900
    python benchmarks/sft_budget.py --history 1 --past-actions 12 --save-dir runs/sft
    python benchmarks/sft_budget.py --init runs/sft/step_900 --steps 300 --decay-steps 300 \
        --length-grouping --seed 1 --eval-at 300 --episodes 50 --splits valid_seen,valid_unseen

Builds the default tokenizer and tiny model, trains with ``train_sft`` (budgets are prefixes
of one run, so every checkpoint equals a shorter run, unless ``--decay-steps`` is set), and at
each listed step plays
``--episodes`` held-out household tasks of every split in ``--splits`` with
``evaluate_policy`` at ``--temperature``. ``--init DIR`` continues from a saved model (its
tokenizer too) instead of a fresh one. Prints one line per checkpoint and split: step, seconds
so far, success rate, invalid responses, mean steps.
This is how the warm-start tables in docs/models.md were measured.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=900)
    p.add_argument("--eval-at", default="300,600,900", help="comma-separated step numbers")
    p.add_argument("--episodes", type=int, default=40, help="held-out tasks per evaluation")
    p.add_argument("--splits", default="valid_seen", help="comma-separated held-out splits")
    p.add_argument("--horizon", type=int, default=20)
    p.add_argument("--temperature", type=float, default=0.4)
    p.add_argument("--history", type=int, default=0)
    p.add_argument("--past-actions", type=int, default=16)
    p.add_argument("--no-first-observation", action="store_true")
    p.add_argument("--data-episodes", type=int, default=1500)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--decay-steps", type=int, default=0, help="linear LR decay over the last N")
    p.add_argument("--seed", type=int, default=0, help="seed of the batch order")
    p.add_argument("--init", default="", help="continue from this saved model folder")
    p.add_argument("--prompt-loss-weight", type=float, default=0.0)
    p.add_argument("--length-grouping", action="store_true")
    p.add_argument("--task-types", default="", help="comma-separated household task types")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--save-dir", default="", help="save each evaluated checkpoint here")
    args = p.parse_args()

    import torch

    from empg.agent.prompts import PromptConfig
    from empg.models.default import load_policy
    from empg.models.evaluate import EvalConfig, evaluate_policy
    from empg.models.sft import SFTConfig, expert_examples, train_sft
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
    cfg = SFTConfig(
        env_kwargs=env_kwargs,
        steps=args.steps,
        episodes=args.data_episodes,
        lr=args.lr,
        prompt=prompt,
        prompt_loss_weight=args.prompt_loss_weight,
        length_grouping=args.length_grouping,
        decay_steps=args.decay_steps,
        seed=args.seed,
    )
    checkpoints = {int(s) for s in args.eval_at.split(",") if s}
    t0 = time.perf_counter()
    if args.init:
        model, tok = load_policy(args.init)
    else:
        tok = train_tokenizer(TokenizerConfig())
        model = build_tiny_model(tok, TinyModelConfig())
    examples = expert_examples(cfg, tok)
    lengths = [len(ids) for ids in tok([e.prompt for e in examples])["input_ids"]]
    print(
        f"{len(examples)} examples; prompt tokens mean {statistics.mean(lengths):.0f}, "
        f"max {max(lengths)} ({time.perf_counter() - t0:.1f}s)",
        flush=True,
    )
    evals = [
        EvalConfig(
            split=split,
            episodes=args.episodes,
            horizon=args.horizon,
            temperature=args.temperature,
            prompt=prompt,
            env_kwargs=env_kwargs,
        )
        for split in args.splits.split(",")
    ]

    def on_step(step: int, m) -> None:
        if step not in checkpoints:
            return
        for ev in evals:
            r = evaluate_policy(m, tok, ev)
            print(
                f"step {step}  {ev.split}  {time.perf_counter() - t0:.0f}s  success "
                f"{r.success_rate:.3f}  invalid {r.invalid_steps}  mean steps {r.mean_steps:.1f}",
                flush=True,
            )
        if args.save_dir:
            out = f"{args.save_dir}/step_{step}"
            m.save_pretrained(out)
            tok.save_pretrained(out)

    stats = train_sft(model, tok, cfg, examples=examples, on_step=on_step)
    print(f"final loss {statistics.mean(stats.losses[-10:]):.4f}; {stats.seconds:.0f}s of SFT")


if __name__ == "__main__":
    main()
