"""EMPG inside TRL 1.16's GRPOTrainer: real training steps on the household environment with a
tiny random Qwen2 and a tokenizer trained here; the advantages TRL's loss receives must equal
``empg.modulate_token_advantages`` on the same batch, bit for bit."""

from __future__ import annotations

import importlib
import os
import sys

import pytest
import torch

pytest.importorskip("trl", reason="TRL is optional: pip install 'empg[trl]' to run these tests")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
torch.set_num_threads(1)  # tiny models on a shared 2-core box: one thread is much faster

import empg  # noqa: E402
from empg.agent import PromptConfig, build_messages, render_prompt  # noqa: E402
from empg.errors import ConfigError, InputError  # noqa: E402
from empg.integrations.trl import (  # noqa: E402
    EMPGKnobs,
    between_turns_text,
    episode_dataset,
    episode_prompt,
    episode_seed,
    invalid_action_penalty,
    make_rollout_func,
    modulate_sharded,
    success_reward,
)
from tiny_hf import tiny_qwen2  # noqa: E402

PROMPT = PromptConfig(compact=True, show_admissible=False, max_observation_chars=120)
KNOBS = EMPGKnobs(k=1.0, k_future=1.0, zeta=0.1, final_norm="mean")


@pytest.fixture(scope="module")
def tokenizer():
    from empg.models.tokenizer import TokenizerConfig, train_tokenizer

    cfg = TokenizerConfig(envs=("household",), episodes_per_env=8, vocab_size=512)
    return train_tokenizer(cfg)


def tiny_model(tokenizer, seed: int = 0):
    return tiny_qwen2(
        len(tokenizer),
        hidden=64,
        seed=seed,
        pad_id=tokenizer.pad_token_id,
        eos_id=tokenizer.eos_token_id,
    )


def parity_reward(completions, completion_ids, **_):
    """Test-only reward that varies between samples (a random model never wins): the share of
    even token ids in the completion. It only has to make GRPO advantages non-zero."""
    return [sum(1 for t in ids if t % 2 == 0) / max(len(ids), 1) for ids in completion_ids]


def _trainer_cls():
    from empg.integrations.trl import EMPGGRPOTrainer

    class Recording(EMPGGRPOTrainer):
        """Records each generation batch, the policy it was sampled from and the loss inputs."""

        def __init__(self, *a, **kw):
            self.records, self.loss_inputs, self.losses, self.policies = [], [], [], []
            super().__init__(*a, **kw)

        def _generate_and_score_completions(self, inputs):
            self.policies.append(
                {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            )
            out = super()._generate_and_score_completions(inputs)
            self.records.append(self.empg_last)
            return out

        def _compute_loss(self, model, inputs):
            keys = ("prompt_ids", "completion_ids", "advantages")
            self.loss_inputs.append({k: inputs[k].detach().clone() for k in keys})
            loss = super()._compute_loss(model, inputs)
            self.losses.append(loss.detach().clone())
            return loss

    return Recording


@pytest.fixture(scope="module")
def trained(tokenizer, tmp_path_factory):
    from trl import GRPOConfig

    model = tiny_model(tokenizer)
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    args = GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("trl")),
        per_device_train_batch_size=4,
        num_generations=2,
        max_steps=2,
        learning_rate=5e-3,
        beta=0.0,
        temperature=1.0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        max_completion_length=512,
    )
    rollout = make_rollout_func(
        "household", {"split": "train"}, max_turns=3, max_new_tokens=10, prompt=PROMPT
    )
    trainer = _trainer_cls()(
        model=model,
        reward_funcs=[success_reward, invalid_action_penalty(0.1), parity_reward],
        args=args,
        train_dataset=episode_dataset(range(8)),
        processing_class=tokenizer,
        rollout_func=rollout,
        empg_config=KNOBS,
    )
    trainer.train()
    return trainer, start


def test_two_steps_train_and_move_parameters(trained):
    trainer, start = trained
    assert len(trainer.records) == 2 and len(trainer.losses) == 2
    assert all(torch.isfinite(x).all() for x in trainer.losses)
    moved = [k for k, v in trainer.model.state_dict().items() if not torch.equal(v, start[k])]
    assert "model.embed_tokens.weight" in moved
    assert any(".self_attn.q_proj.weight" in k for k in moved)
    logged = [h for h in trainer.state.log_history if "empg/token_entropy_mean" in h]
    assert len(logged) == 2 and all(h["empg/token_entropy_mean"] > 0 for h in logged)


def test_loss_receives_exactly_the_core_modulation(trained):
    trainer, _ = trained
    for rec, seen in zip(trainer.records, trainer.loss_inputs, strict=True):
        # the core function on the same batch, bit for bit
        want = empg.modulate_token_advantages(
            rec.token_entropy, rec.loss_mask, rec.outcome_advantages, **KNOBS.knobs()
        )
        assert torch.equal(rec.advantages, want)
        assert rec.outcome_advantages.abs().max() > 0  # the reward varied
        # TRL shuffles the rows before the loss: match them back by their tokens
        got = seen["advantages"]
        assert got.shape == rec.advantages.shape
        for i in range(got.shape[0]):
            same = [
                j
                for j in range(got.shape[0])
                if torch.equal(seen["prompt_ids"][i], rec.prompt_ids[j])
                and torch.equal(seen["completion_ids"][i], rec.completion_ids[j])
            ]
            assert same and all(torch.equal(got[i], rec.advantages[j]) for j in same)


def test_steps_come_from_env_mask_and_modulation_is_per_step(trained):
    trainer, _ = trained
    rec = trainer.records[0]
    mask = rec.loss_mask
    assert torch.equal(mask, mask * rec.completion_mask)
    runs = (mask[:, 1:] > mask[:, :-1]).sum(1) + mask[:, 0]  # steps per row
    assert runs.max() >= 2  # multi-turn episodes: several model turns per sequence
    assert ((rec.completion_mask == 1) & (mask == 0)).any()  # environment tokens present
    assert torch.all(rec.advantages[mask == 0] == 0)
    row = int(runs.argmax())
    vals = rec.advantages[row][mask[row] == 1].unique()
    assert vals.numel() == int(runs[row])  # one value per step, different across steps


def test_entropies_are_the_old_policy_entropies(trained, tokenizer):
    """TRL's fused-head entropies equal the core's entropy of the sampling policy's logits."""
    trainer, _ = trained
    for rec, policy in zip(trainer.records, trainer.policies, strict=True):
        model = tiny_model(tokenizer).eval()
        model.load_state_dict(policy)
        ids = torch.cat([rec.prompt_ids, rec.completion_ids], 1)
        attn = torch.cat([rec.prompt_mask, rec.completion_mask], 1)
        t = rec.completion_ids.shape[1]
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=attn).logits[:, -t - 1 : -1]
        _, ent = empg.token_logprobs_and_entropy(logits, rec.completion_ids, temperature=1.0)
        m = rec.loss_mask.bool()
        torch.testing.assert_close(rec.token_entropy[m], ent[m], atol=1e-4, rtol=1e-4)


def test_rollout_layout_is_on_policy(tokenizer):
    """Recorded log-probs equal a fresh forward over the returned sequence; the prompt is the
    project's ReAct prompt; env tokens open the next turn with the new observation."""

    class Args:
        temperature, top_p, seed = 1.0, 1.0, 3

    class Acc:
        process_index = 0

        @staticmethod
        def unwrap_model(m):
            return m

    class Trainer:  # the three attributes a rollout_func reads from TRL's trainer
        processing_class, args, accelerator = tokenizer, Args, Acc
        model = tiny_model(tokenizer, seed=1)

    rollout = make_rollout_func(
        "household", {"split": "train"}, max_turns=3, max_new_tokens=8, prompt=PROMPT
    )
    out = rollout([episode_prompt(5), episode_prompt(6)], Trainer)
    env = empg.envs.make("household", split="train")
    obs, info = env.reset(seed=5)
    msgs = build_messages("household", info["task"], obs, (), None, PROMPT)
    assert tokenizer.decode(out["prompt_ids"][0]) == render_prompt(msgs, tokenizer)
    model = Trainer.model.eval()
    for p, c, lp, m, turns in zip(
        out["prompt_ids"],
        out["completion_ids"],
        out["logprobs"],
        out["env_mask"],
        out["num_turns"],
        strict=True,
    ):
        assert len(c) == len(lp) == len(m) and turns == 3
        mt = torch.tensor(m)
        assert int((mt[1:] > mt[:-1]).sum() + mt[0]) == 3  # three model turns
        ids = torch.tensor([p + c])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[:, len(p) - 1 : -1]
        want, _ = empg.token_logprobs_and_entropy(logits, torch.tensor([c]), temperature=1.0)
        torch.testing.assert_close(torch.tensor(lp)[mt == 1], want[0][mt == 1], atol=1e-4, rtol=0)
        assert all(x == 0.0 for x, k in zip(lp, m, strict=True) if k == 0)
        env_text = tokenizer.decode([t for t, k in zip(c, m, strict=True) if k == 0])
        assert env_text.count("<|user|>") == 2 and env_text.count("Current observation:") == 2
    assert out["invalid_actions"] == [3, 3]  # 8 random tokens never form a valid answer
    assert out["episode_won"] == [0.0, 0.0]
    assert invalid_action_penalty(0.1)(
        completions=[None, None], invalid_actions=out["invalid_actions"], num_turns=[3, 3]
    ) == pytest.approx([-0.3, -0.3])  # 0.1 per invalid turn, as empg train and verl count it


def test_between_turns_text(tokenizer):
    msgs = [{"role": "user", "content": "Task: t\nCurrent observation: o"}]
    nxt = {"role": "user", "content": "Task: t\nCurrent observation: p"}
    text = between_turns_text(tokenizer, msgs, nxt, response_ended_with_eos=False)
    assert text == "\n<|user|>\nTask: t\nCurrent observation: p\n<|assistant|>\n"

    class ImEnd:  # a Qwen-style template: the assistant turn closes with the eos token
        eos_token = "<|im_end|>"
        chat_template = "x"

        @staticmethod
        def apply_chat_template(messages, tokenize, add_generation_prompt):
            s = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
            return s + ("<|im_start|>assistant\n" if add_generation_prompt else "")

    text = between_turns_text(ImEnd, msgs, nxt, response_ended_with_eos=True)
    assert text == "\n<|im_start|>user\nTask: t\nCurrent observation: p<|im_end|>\n" + (
        "<|im_start|>assistant\n"
    )
    text = between_turns_text(ImEnd, msgs, nxt, response_ended_with_eos=False)
    assert text.startswith("<|im_end|>\n<|im_start|>user\n")

    class Unstable(ImEnd):  # rewrites earlier turns: rejected
        @staticmethod
        def apply_chat_template(messages, tokenize, add_generation_prompt):
            return f"{len(messages)}" + ImEnd.apply_chat_template(
                messages, 0, add_generation_prompt
            )

    with pytest.raises(InputError, match="prefix-stable"):
        between_turns_text(Unstable, msgs, nxt, response_ended_with_eos=False)


def test_sharded_modulation_equals_whole_batch():
    g = torch.Generator().manual_seed(0)
    ent = torch.rand(6, 9, generator=g)
    mask = (torch.rand(6, 9, generator=g) > 0.3).long()
    adv = torch.randn(6, generator=g)
    whole = empg.modulate_token_advantages(ent, mask, adv, **KNOBS.knobs())
    # three processes with different completion widths (each padded to its own longest row)
    widths = (9, 5, 7)
    for w, r in zip(widths, (0, 2, 4), strict=True):
        mask[r : r + 2, w:] = 0
    whole = empg.modulate_token_advantages(ent, mask, adv, **KNOBS.knobs())
    shards = modulate_sharded(
        [ent[r : r + 2, :w] for w, r in zip(widths, (0, 2, 4), strict=True)],
        [mask[r : r + 2, :w] for w, r in zip(widths, (0, 2, 4), strict=True)],
        [adv[r : r + 2] for r in (0, 2, 4)],
        KNOBS,
    )
    for s, w, r in zip(shards, widths, (0, 2, 4), strict=True):
        assert s.shape == (2, w)
        assert torch.equal(s, whole[r : r + 2, :w])
    zero = modulate_sharded([ent[:2]], [torch.zeros(2, 9, dtype=torch.long)], [adv[:2]], KNOBS)
    assert torch.equal(zero[0], torch.zeros(2, 9))
    with pytest.raises(InputError, match="one entropy, mask and advantage"):
        modulate_sharded([ent], [mask], [], KNOBS)


def test_knobs_and_prompts_validate():
    import empg

    assert EMPGKnobs is empg.EMPGConfig  # one EMPG settings type for trainer, verl and TRL
    assert EMPGKnobs().knobs() == dict(
        k=1.0, k_future=1.0, zeta=0.1, scale=True, bonus=True, final_norm="mean", eps=1e-8
    )
    with pytest.raises(ConfigError, match="final_norm"):
        EMPGKnobs(final_norm="std")
    with pytest.raises(ConfigError, match="scale must be a bool"):
        EMPGKnobs(scale=1)
    with pytest.raises(ConfigError, match="eps must be > 0"):
        EMPGKnobs(eps=0.0)
    with pytest.raises(ConfigError, match="zeta must be finite"):
        EMPGKnobs(zeta=float("nan"))
    assert episode_seed(episode_prompt(17)) == 17
    assert episode_seed([{"role": "user", "content": "empg-episode seed=4"}]) == 4
    with pytest.raises(InputError, match="does not name an episode"):
        episode_seed("What is 2+2?")
    with pytest.raises(ConfigError, match="max_turns"):
        make_rollout_func("household", max_turns=0)


def test_trainer_rejects_bad_config_and_explains_missing_trl(monkeypatch):
    from empg.integrations.trl import EMPGGRPOTrainer

    with pytest.raises(ConfigError, match=r"empg\.EMPGConfig"):
        EMPGGRPOTrainer(model=None, reward_funcs=[], empg_config={"k": 1.0})
    monkeypatch.setitem(sys.modules, "trl", None)
    monkeypatch.delitem(sys.modules, "empg.integrations.trl.trainer")
    with pytest.raises(ImportError, match=r"pip install 'empg\[trl\]'"):
        importlib.import_module("empg.integrations.trl.trainer")
