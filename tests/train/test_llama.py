"""The trainer on a Llama 3.1-shaped policy: a toy-size ``LlamaForCausalLM`` (grouped KV heads,
untied LM head, ``llama3`` RoPE scaling, several EOS ids) with a tokenizer shaped like Llama 3.1
Instruct's (BOS added on encode, no pad token, a header-and-EOT chat template), built here.
The rest of the suite runs Qwen2 policies; these tests check that nothing in loading, prompting,
generation, shared-prefix scoring, training or checkpoints assumes Qwen2."""

from __future__ import annotations

import pytest
import torch
from train_helpers import (
    QUIET,
    assert_shared_prefix_matches_full_rows,
    household_texts,
    tiny_overrides,
)

import empg
from empg.agent import render_prompt
from empg.agent.generation import GenerationConfig, HFBackend
from empg.agent.rollout import RolloutConfig, collect_rollouts, env_turn_ids
from empg.models.attention import NAME as FOLDED_GQA
from empg.models.default import load_policy
from empg.train.checkpoint import latest_checkpoint
from empg.train.config import load_config
from empg.train.metrics import read_metrics
from empg.train.trainer import Trainer, load_model
from tiny_hf import EOS3, EOT3, tiny_llama31, train_llama3_style_bpe

MESSAGES = [
    {"role": "system", "content": "You are a household agent."},
    {"role": "user", "content": "Your task is to: put a clean apple in fridge 1."},
]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    tokenizer = train_llama3_style_bpe(household_texts(), 320)
    eos_ids = [tokenizer.convert_tokens_to_ids(t) for t in (EOS3, EOT3)]
    model = tiny_llama31(len(tokenizer), hidden=32, bos_id=tokenizer.bos_token_id, eos_ids=eos_ids)
    path = tmp_path_factory.mktemp("llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _weights(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_loading_sets_pad_to_eos_folds_gqa_and_prompts_carry_one_bos(llama_dir):
    model, tok = load_model(load_config(None, [f"model.path={llama_dir}"]))
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config._attn_implementation == FOLDED_GQA
    assert tok.pad_token_id == tok.convert_tokens_to_ids(EOT3)  # no pad token: EOS stands in
    backend = HFBackend(model, tok)
    assert backend.eos_ids == {tok.convert_tokens_to_ids(EOS3), tok.convert_tokens_to_ids(EOT3)}
    text = render_prompt(MESSAGES, tok)
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>")
    ids = backend.encode(text)  # the rollout's prompt encoding
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    # the tokenizer's default encode would have added a second BOS to the template's
    assert tok.encode(text).count(tok.bos_token_id) == 2


def _short_rollouts(group_size: int) -> RolloutConfig:
    """Household episodes of at most 3 turns of 6 tokens, seeded."""
    return RolloutConfig(
        env_name="household",
        env_kwargs={"split": "train"},
        group_size=group_size,
        max_turns=3,
        generation=GenerationConfig(max_new_tokens=6, seed=0),
    )


def test_sequence_layout_closes_each_turn_and_holds_one_bos(llama_dir):
    """to_sequences puts the template's turn boundary between responses: the assistant's EOT,
    the user turn with the observation, the next assistant header; no BOS after the prompt."""
    model, tok = load_model(load_config(None, [f"model.path={llama_dir}"]))
    backend = HFBackend(model, tok)
    between = tok.decode(env_turn_ids(backend, "You see a fridge 1."))
    assert between == (
        "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nObservation: You see a fridge 1."
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    seq = collect_rollouts(backend, [0], _short_rollouts(group_size=2)).to_sequences()
    bos, eot = tok.bos_token_id, tok.convert_tokens_to_ids(EOT3)
    boundaries = 0
    for row in range(seq.response_ids.shape[0]):
        prompt = seq.prompt_ids[row][seq.prompt_mask[row].bool()].tolist()
        rest = seq.response_ids[row][seq.attention_mask[row].bool()].tolist()
        assert prompt.count(bos) == 1 and bos not in rest
        env_tokens = seq.response_ids[row][
            seq.attention_mask[row].bool() & ~seq.response_mask[row].bool()
        ]
        if env_tokens.numel():  # a multi-turn row: its first turn boundary starts with EOT
            assert int(env_tokens[0]) == eot
            boundaries += 1
    assert boundaries > 0  # the random policy's episodes run several turns


def test_a_response_that_ended_with_eos_is_not_closed_twice_in_the_sequence_layout(llama_dir):
    """A response whose last token is the template's turn end (finish_reason "eos") already
    closed its turn: the environment turn after it starts with the user header, not a second
    EOT; after a response cut by a stop string or the length cap the template's EOT comes."""
    import dataclasses

    model, tok = load_model(load_config(None, [f"model.path={llama_dir}"]))
    backend = HFBackend(model, tok)
    eot = tok.convert_tokens_to_ids(EOT3)
    assert tok.eos_token == EOT3  # the token the chat template closes an assistant turn with
    batch = collect_rollouts(backend, [0], _short_rollouts(group_size=1))
    rows = batch.rows_of(0)
    assert len(rows) >= 2
    closed = torch.cat([rows[0].response_ids, torch.tensor([eot])])
    first = dataclasses.replace(
        rows[0], response_ids=closed, logprobs=torch.zeros(len(closed)),
        entropies=torch.zeros(len(closed)), finish_reason="eos",
    )  # fmt: skip
    cut = dataclasses.replace(rows[0], finish_reason="length")
    for head, expect_eot in ((first, False), (cut, True)):
        batch.steps = [head, *rows[1:]]
        seq = batch.to_sequences()
        ids = seq.response_ids[0][seq.attention_mask[0].bool()].tolist()
        n = len(head.response_ids)
        assert ids[:n] == head.response_ids.tolist()
        assert (ids[n] == eot) == expect_eot  # exactly one EOT closes the first turn
        user_turn = tok.decode(ids[n + int(expect_eot) : n + int(expect_eot) + 8])
        assert user_turn.startswith("<|start_header_id|>user")


def test_generation_records_what_one_full_forward_computes(llama_dir):
    model, tok = load_model(load_config(None, [f"model.path={llama_dir}"]))
    backend = HFBackend(model, tok)
    prompts = [
        backend.encode(render_prompt(MESSAGES, tok)),
        backend.encode(render_prompt(MESSAGES[1:], tok)),  # shorter: left-padded in the batch
    ]
    outs = backend.generate(
        prompts, GenerationConfig(max_new_tokens=10, temperature=0.8, stop_strings=(), seed=1)
    )
    assert all(len(o) > 0 for o in outs)
    for p, o in zip(prompts, outs, strict=True):
        seq = torch.tensor([p + o.token_ids.tolist()])
        with torch.no_grad():
            logits = model(input_ids=seq).logits[0]
        n = len(o)
        lp, ent = empg.token_logprobs_and_entropy(
            logits[len(p) - 1 : len(p) - 1 + n], o.token_ids, temperature=0.8
        )
        torch.testing.assert_close(o.logprobs, lp, atol=1e-4, rtol=0)
        torch.testing.assert_close(o.entropies, ent, atol=1e-4, rtol=0)


def test_shared_prefix_scoring_matches_full_rows_forward_and_backward(llama_dir):
    model, _ = load_model(load_config(None, [f"model.path={llama_dir}"]))
    model.train()
    vocab = model.get_output_embeddings().weight.shape[0]
    g = torch.Generator().manual_seed(0)
    rand = lambda n: torch.randint(5, vocab, (n,), generator=g).tolist()
    head = rand(40)
    prompts = [head + rand(k) for k in (1, 6, 11)]
    responses = [rand(k) for k in (4, 2, 7)]
    assert_shared_prefix_matches_full_rows(model, prompts, responses, 0.7)


def test_training_moves_both_embeddings_checkpoints_and_resumes_exactly(llama_dir, tmp_path):
    straight = load_config(None, tiny_overrides(llama_dir, tmp_path / "a"))
    ta = Trainer(straight, log=QUIET)
    emb0 = ta.model.get_input_embeddings().weight.detach().clone()
    head0 = ta.model.get_output_embeddings().weight.detach().clone()
    ta.run()
    assert not torch.equal(emb0, ta.model.get_input_embeddings().weight)
    assert not torch.equal(head0, ta.model.get_output_embeddings().weight)  # untied: its own
    records = [r for r in read_metrics(tmp_path / "a" / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["iteration"] for r in records] == [1, 2]
    for r in records:
        assert r["numerics/max_logprob_diff"] < 1e-4  # rollout vs recomputed log-probs

    first = load_config(None, tiny_overrides(llama_dir, tmp_path / "b", iterations=1))
    Trainer(first, log=QUIET).run()
    rest = load_config(None, tiny_overrides(llama_dir, tmp_path / "b"))
    tb = Trainer(rest, resume=True, log=QUIET)
    tb.run()
    torch.testing.assert_close(_weights(tb.model), _weights(ta.model), atol=1e-6, rtol=1e-5)

    # the checkpoint's model folder loads back as the same Llama, its tokenizer with it
    model, tok = load_policy(latest_checkpoint(tmp_path / "a") / "model")
    assert type(model).__name__ == "LlamaForCausalLM" and not model.config.tie_word_embeddings
    assert model.config.rope_scaling["rope_type"] == "llama3"
    torch.testing.assert_close(_weights(model), _weights(ta.model))
    assert tok.bos_token_id == ta.tokenizer.bos_token_id and tok.chat_template
