"""Train a policy on the household environment with TRL 1.16's GRPO + EMPG (CPU friendly).

    pip install 'empg[trl]'            # trl>=1.16,<1.17 (see docs/trl.md)
    HF_HUB_OFFLINE=1 python examples/trl_household.py --steps 4
    HF_HUB_OFFLINE=1 python examples/trl_household.py --model path/to/sft-model --steps 50

Without ``--model`` a tokenizer is trained here and a tiny random Qwen2 is built (nothing is
downloaded); such a model never wins, so that run only shows the machinery working. Pass a model
folder (for example one warm-started with ``empg.models.sft``) for a run that can learn.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="HF model folder (default: tiny random Qwen2)")
    p.add_argument("--output-dir", default="runs/trl_household")
    p.add_argument("--steps", type=int, default=4, help="optimizer steps")
    p.add_argument("--episodes", type=int, default=4, help="distinct tasks per step")
    p.add_argument("--group", type=int, default=4, help="rollouts per task (GRPO group)")
    p.add_argument("--turns", type=int, default=6, help="model turns per episode at most")
    p.add_argument("--tokens", type=int, default=48, help="tokens per turn at most")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--zeta", type=float, default=0.1, help="EMPG future-bonus weight")
    p.add_argument("--no-empg", action="store_true", help="plain TRL GRPO (for A/B runs)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()

    import torch
    from trl import GRPOConfig

    from empg import EMPGConfig
    from empg.agent import PromptConfig
    from empg.integrations.trl import (
        EMPGGRPOTrainer,
        episode_dataset,
        invalid_action_penalty,
        make_rollout_func,
        success_reward,
    )

    torch.set_num_threads(a.threads)
    if a.model:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(a.model, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    else:
        from empg.models.tiny import TinyModelConfig, build_tiny_model
        from empg.models.tokenizer import TokenizerConfig, train_tokenizer

        tokenizer = train_tokenizer(TokenizerConfig(episodes_per_env=20, vocab_size=1024))
        model = build_tiny_model(tokenizer, TinyModelConfig(hidden_size=64, num_layers=2))

    args = GRPOConfig(
        output_dir=a.output_dir,
        per_device_train_batch_size=a.episodes * a.group,
        num_generations=a.group,
        max_steps=a.steps,
        learning_rate=a.lr,
        beta=0.0,
        loss_type="dapo",
        epsilon=0.2,
        epsilon_high=0.28,
        temperature=1.0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        seed=0,
    )
    rollout = make_rollout_func(
        "household",
        {"split": "train"},
        max_turns=a.turns,
        max_new_tokens=a.tokens,
        prompt=PromptConfig(compact=a.model is None, show_admissible=True),
    )
    trainer = EMPGGRPOTrainer(
        model=model,
        reward_funcs=[success_reward, invalid_action_penalty(0.1)],
        args=args,
        train_dataset=episode_dataset(range(1000)),
        processing_class=tokenizer,
        rollout_func=rollout,
        empg_config=EMPGConfig(zeta=a.zeta),
        empg_enabled=not a.no_empg,
    )
    trainer.train()
    for h in trainer.state.log_history:
        if "reward" in h:
            print(
                f"step {h['step']}: reward {h['reward']:.3f} "
                f"success {h.get('rewards/success_reward/mean', 0.0):.3f} "
                f"entropy {h.get('empg/token_entropy_mean', float('nan')):.3f}"
            )


if __name__ == "__main__":
    main()
