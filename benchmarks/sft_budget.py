"""Held-out success of the supervised warm start at several step budgets, from one run.

    python benchmarks/sft_budget.py --steps 900 --eval-at 300,600,900
    python benchmarks/sft_budget.py --history 1 --past-actions 12 --save-dir runs/sft

Builds the default tokenizer and tiny model, trains with ``train_sft`` (budgets are prefixes
of one run, so every checkpoint equals a shorter run), and at each listed step plays
``--episodes`` held-out household tasks with ``evaluate_policy`` at ``--temperature``. Prints
one line per checkpoint: step, seconds so far, success rate, invalid responses, mean steps.
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
    p.add_argument("--split", default="valid_seen")
    p.add_argument("--horizon", type=int, default=20)
    p.add_argument("--temperature", type=float, default=0.4)
    p.add_argument("--history", type=int, default=0)
    p.add_argument("--past-actions", type=int, default=16)
    p.add_argument("--no-first-observation", action="store_true")
    p.add_argument("--data-episodes", type=int, default=1500)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--prompt-loss-weight", type=float, default=0.0)
    p.add_argument("--length-grouping", action="store_true")
    p.add_argument("--task-types", default="", help="comma-separated household task types")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--save-dir", default="", help="save each evaluated checkpoint here")
    args = p.parse_args()

    import torch

    from empg.agent.prompts import PromptConfig
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
    )
    checkpoints = {int(s) for s in args.eval_at.split(",") if s}
    t0 = time.perf_counter()
    tok = train_tokenizer(TokenizerConfig())
    examples = expert_examples(cfg, tok)
    lengths = [len(ids) for ids in tok([e.prompt for e in examples])["input_ids"]]
    print(
        f"{len(examples)} examples; prompt tokens mean {statistics.mean(lengths):.0f}, "
        f"max {max(lengths)} ({time.perf_counter() - t0:.1f}s)",
        flush=True,
    )
    model = build_tiny_model(tok, TinyModelConfig())
    ev = EvalConfig(
        split=args.split,
        episodes=args.episodes,
        horizon=args.horizon,
        temperature=args.temperature,
        prompt=prompt,
        env_kwargs=env_kwargs,
    )

    def on_step(step: int, m) -> None:
        if step not in checkpoints:
            return
        r = evaluate_policy(m, tok, ev)
        print(
            f"step {step}  {time.perf_counter() - t0:.0f}s  success {r.success_rate:.3f}  "
            f"invalid {r.invalid_steps}  mean steps {r.mean_steps:.1f}",
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
