"""The ``empg_household_agent`` agent loop inside the REAL verl 0.9.x agent-loop machinery.

verl's own pieces run: the agent-loop registry and ``hydra.utils.instantiate`` path, verl's
``AgentLoopWorker`` (built from the example config composed over verl's ``ppo_trainer.yaml``,
with a tiny Qwen2 model + tokenizer saved to disk as ``actor_rollout_ref.model.path``), its
``generate_sequences`` (padding, ``rm_scores``, ``rollout_log_probs``), verl's continuous-token
builder, ``RLHFDataset`` + ``collate_fn`` on rows written by :func:`task_row`, and
``AgentLoopOutput.as_dict`` (what the v1 TransferQueue worker stores). Only the LLM server (the
remote-worker boundary) is replaced by an in-process stand-in: scripted token ids, or a tiny
real Hugging Face model sampling with real log-probs. No Ray, no GPU, no vLLM.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REASON = (
    "verl 0.9.x is not installed in this environment; see docs/verl.md "
    "(separate venv: pip install -c constraints 'verl==0.9.1' 'TransferQueue>=0.1.10' ...)"
)
verl = pytest.importorskip("verl", reason=REASON)
pytest.importorskip("verl.experimental.agent_loop", reason=REASON)

import hydra  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.errors import InstantiationException  # noqa: E402
from verl.experimental.agent_loop.agent_loop import (  # noqa: E402
    AgentLoopWorker,
    DictConfigWrap,
    ToolListWrap,
    _agent_loop_registry,
)
from verl.protocol import DataProto  # noqa: E402
from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn  # noqa: E402
from verl.workers.rollout.replica import TokenOutput  # noqa: E402

import empg  # noqa: E402
from empg.agent.prompts import build_messages, render_prompt  # noqa: E402
from empg.errors import ConfigError  # noqa: E402
from empg.integrations.verl import VerlEMPGConfig, verl_empg_advantages  # noqa: E402
from empg.integrations.verl.agent_loop import (  # noqa: E402
    AGENT_NAME,
    env_loop_config,
    response_text,
    task_row,
)
from tiny_hf import EOS, tiny_qwen2, train_bpe  # noqa: E402

torch.set_num_threads(1)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "verl"
SEED = 3
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def expert_actions(seed: int = SEED) -> list[str]:
    """The household expert's winning actions for task ``seed``."""
    env = empg.envs.make("household", split="train", max_steps=50)
    env.reset(seed=seed)
    actions, done, info = [], False, {}
    while not done:
        actions.append(env.expert_action())
        _, _, term, trunc, info = env.step(actions[-1])
        done = term or trunc
    assert info["won"]
    return actions


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny Qwen2 + byte-level BPE tokenizer with a ChatML template, saved like a hub model."""
    env = empg.envs.make("household", split="train")
    texts = []
    for s in range(6):
        obs, info = env.reset(seed=s)
        texts += [obs, info["task"], *info.get("admissible_actions", [])]
    texts += ["<think>go</think><action>look</action>", "Task: Current observation:"]
    tok = train_bpe(texts, vocab_size=600)
    tok.add_tokens(["<|im_start|>", "<|im_end|>"], special_tokens=True)
    tok.chat_template = CHATML
    model = tiny_qwen2(len(tok), pad_id=tok.pad_token_id, eos_id=tok.convert_tokens_to_ids(EOS))
    path = tmp_path_factory.mktemp("tiny_qwen2")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def config(model_dir, *overrides: str, layout: str = "sequence"):
    base = [
        f"actor_rollout_ref.model.path={model_dir}",
        f"empg_env.layout={layout}",
        "data.max_prompt_length=1024",
        "data.max_response_length=4096",
        "actor_rollout_ref.rollout.agent.num_workers=1",
    ]
    with initialize_config_dir(config_dir=str(EXAMPLES), version_base=None):
        return compose("empg_alfworld_grpo", overrides=base + list(overrides))


def logprob_of(token_id: int) -> float:
    """What the scripted server reports as a token's log-prob (unique per id, to check
    alignment)."""
    return -0.001 * (token_id + 1)


class ScriptedServer:
    """Stand-in for verl's LLM server client: answers turn k of each request with texts[k]."""

    def __init__(self, tokenizer, texts: list[str]):
        self.tok, self.texts, self.calls = tokenizer, texts, {}
        self.end = tokenizer.convert_tokens_to_ids("<|im_end|>")

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kw) -> TokenOutput:
        k = self.calls.get(request_id, 0)
        self.calls[request_id] = k + 1
        text = self.texts[min(k, len(self.texts) - 1)]
        ids = [*self.tok.encode(text, add_special_tokens=False), self.end]
        ids = ids[: sampling_params.get("max_tokens", len(ids))]
        return TokenOutput(token_ids=ids, log_probs=[logprob_of(t) for t in ids])


class TinyModelServer:
    """Stand-in running a tiny real HF model: samples up to max_tokens with real log-probs."""

    def __init__(self, model_dir, max_new: int = 6):
        from transformers import AutoModelForCausalLM

        self.model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        self.max_new = max_new
        self.prompts: list[list[int]] = []

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kw) -> TokenOutput:
        self.prompts.append(list(prompt_ids))
        g = torch.Generator().manual_seed(len(self.prompts))
        ids, lps = list(prompt_ids), []
        with torch.no_grad():
            for _ in range(min(self.max_new, sampling_params["max_tokens"])):
                logits = self.model(torch.tensor([ids])).logits[0, -1]
                logp = torch.log_softmax(logits.float(), -1)
                t = int(torch.multinomial(logp.exp(), 1, generator=g))
                ids.append(t)
                lps.append(float(logp[t]))
        return TokenOutput(token_ids=ids[len(prompt_ids) :], log_probs=lps)


def dataset_batch(cfg, tokenizer, tmp_path, seeds) -> DataProto:
    """Rows from :func:`task_row` through verl's RLHFDataset and collate_fn (as its trainer)."""
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps(task_row("household", s)) + "\n" for s in seeds))
    ds = RLHFDataset(str(path), tokenizer, cfg.data)
    return DataProto.from_single_dict(collate_fn([ds[i] for i in range(len(ds))]))


def runs_of_ones(mask: list[int]) -> list[tuple[int, int]]:
    runs, start = [], None
    for i, m in enumerate([*mask, 0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append((start, i))
            start = None
    return runs


def empg_steps(keys: list[str], masks: list[torch.Tensor]) -> float:
    """Steps the EMPG plug-in's batch glue finds (verl's row keys, a constant advantage)."""
    width = max(m.numel() for m in masks)
    mask = torch.zeros(len(masks), width, dtype=torch.long)
    for i, m in enumerate(masks):
        mask[i, : m.numel()] = m
    ent = torch.rand(mask.shape, generator=torch.Generator().manual_seed(0))
    adv = torch.ones(mask.shape) * mask
    res = verl_empg_advantages(keys, mask, ent, adv, VerlEMPGConfig())
    return res.metrics["empg/steps"]


def test_registered_under_its_name():
    assert _agent_loop_registry[AGENT_NAME]["_target_"] == (
        "empg.integrations.verl.agent_loop.EMPGHouseholdAgentLoop"
    )


def test_won_episode_through_verl_worker(model_dir, tmp_path):
    """Sequence layout via verl's AgentLoopWorker.generate_sequences: the expert's actions as
    model output win the episode; layout, masks, log-probs, reward and EMPG steps check out."""
    cfg = config(model_dir)
    actions = expert_actions()
    worker = AgentLoopWorker(cfg, llm_client=None)
    tok = worker.tokenizer
    texts = [f"<think>step {i}</think><action>{a}</action>" for i, a in enumerate(actions)]
    worker.llm_client = ScriptedServer(tok, texts)
    out = asyncio.run(worker.generate_sequences(dataset_batch(cfg, tok, tmp_path, [SEED])))

    b = out.batch
    turns = len(actions)
    attn = b["attention_mask"][0]
    plen = b["prompts"].shape[1]
    prompt = b["prompts"][0][attn[:plen].bool()].tolist()
    resp_len = int(attn[plen:].sum())
    resp = b["responses"][0][:resp_len].tolist()
    mask = b["response_mask"][0][:resp_len].tolist()
    lps = b["rollout_log_probs"][0][:resp_len].tolist()

    # prompt: the project's ReAct prompt for the task's first observation
    env = empg.envs.make("household", split="train", max_steps=50)
    obs, info = env.reset(seed=SEED)
    first = build_messages("household", info["task"], obs, [], info["admissible_actions"])
    assert tok.decode(prompt) == render_prompt(first, tok)

    # response: one run of 1s per model turn, environment tokens between them masked 0
    runs = runs_of_ones(mask)
    assert len(runs) == turns
    for (s, e), text in zip(runs, texts, strict=True):
        assert tok.decode(resp[s:e], skip_special_tokens=True) == text
    for (_, e), (s2, _) in itertools.pairwise(runs):
        env_text = tok.decode(resp[e:s2])
        assert "<|im_start|>user" in env_text and "Current observation:" in env_text
    assert not any(mask[resp_len:])  # padding is masked
    # log-probs aligned: the server's value on model tokens, 0 on environment tokens
    for t, m, lp in zip(resp, mask, lps, strict=True):
        assert lp == pytest.approx(logprob_of(t) if m else 0.0, abs=1e-6)

    # reward where verl reads it: rm_scores on the last response token
    assert float(b["rm_scores"][0].sum()) == pytest.approx(1.0)
    assert float(b["rm_scores"][0][resp_len - 1]) == pytest.approx(1.0)
    assert int(out.non_tensor_batch["__num_turns__"][0]) == 2 * turns
    extra = out.non_tensor_batch["reward_extra_info"][0]
    assert extra["won"] == 1.0 and extra["invalid_steps"] == 0 and extra["env_steps"] == turns

    # the EMPG core and the plug-in find exactly one step per model turn
    _, seg = empg.step_entropy_from_sequences(
        torch.rand(b["response_mask"].shape), b["response_mask"]
    )
    assert seg.num_steps == turns
    assert empg_steps(["u1_0_0"], [b["response_mask"][0]]) == turns


def test_invalid_responses_cost_the_penalty(model_dir, tmp_path):
    """Unparseable output: every turn sends the invalid action, reward = -0.1 per turn."""
    cfg = config(model_dir, "empg_env.max_turns=4")
    worker = AgentLoopWorker(cfg, llm_client=None)
    worker.llm_client = ScriptedServer(worker.tokenizer, ["I will open the fridge"])
    out = asyncio.run(
        worker.generate_sequences(dataset_batch(cfg, worker.tokenizer, tmp_path, [0, 1]))
    )
    for i in range(2):
        assert float(out.batch["rm_scores"][i].sum()) == pytest.approx(-0.4)
        assert out.non_tensor_batch["reward_extra_info"][i]["invalid_steps"] == 4
        assert len(runs_of_ones(out.batch["response_mask"][i].tolist())) == 4
        assert out.non_tensor_batch["empg_reason"][i] == "max_turns"


def instantiate(cfg, tokenizer, server):
    """The agent loop exactly as verl's worker builds it (registry + hydra.utils.instantiate);
    call inside a running event loop, as verl does."""
    return hydra.utils.instantiate(
        config=_agent_loop_registry[AGENT_NAME],
        trainer_config=DictConfigWrap(config=cfg),
        server_manager=server,
        tokenizer=tokenizer,
        processor=None,
        hf_model_type="qwen2",
        dataset_cls=RLHFDataset,
        data_config=DictConfigWrap(cfg.data),
        tools=ToolListWrap([]),
    )


def play(cfg, tokenizer, server, row):
    async def go():
        loop = instantiate(cfg, tokenizer, server)
        return await loop.run({"temperature": 1.0, "logprobs": True}, **row)

    return asyncio.run(go())


def test_tiny_model_server_sequence_layout(model_dir, tmp_path):
    """A tiny real model as the server: each turn is generated from the whole conversation so
    far (exactly the context verl trains on), and its real log-probs line up with the mask."""
    cfg = config(model_dir, "empg_env.max_turns=3", "empg_env.max_tokens_per_turn=5")
    worker = AgentLoopWorker(cfg, llm_client=None)
    server = TinyModelServer(model_dir)
    out = play(cfg, worker.tokenizer, server, task_row("household", 1))
    runs = runs_of_ones(out.response_mask)
    assert len(runs) == 3 and all(e - s == 5 for s, e in runs)
    assert len(out.response_logprobs) == len(out.response_ids) == len(out.response_mask)
    seq = out.prompt_ids + out.response_ids
    for k, (s, _) in enumerate(runs):  # turn k saw prompt + response up to its first token
        assert server.prompts[k] == seq[: len(out.prompt_ids) + s]
    lps = torch.tensor(out.response_logprobs)
    m = torch.tensor(out.response_mask).bool()
    assert bool((lps[m] < 0).all()) and bool((lps[~m] == 0).all())
    assert out.reward_score == pytest.approx(-0.3)  # 3 invalid turns, not won


def test_step_layout_one_output_per_turn(model_dir):
    """``empg_env.layout=step``: one AgentLoopOutput per turn with its own history-window
    prompt; verl's as_dict (what the v1 TransferQueue worker stores) puts the outcome on each
    row's last token, and the plug-in counts one step per row of the trajectory."""
    cfg = config(model_dir, "data.max_response_length=64", layout="step")
    worker = AgentLoopWorker(cfg, llm_client=None)
    tok = worker.tokenizer
    actions = expert_actions()
    texts = [f"<think>t</think><action>{a}</action>" for a in actions]
    outs = play(cfg, tok, ScriptedServer(tok, texts), task_row("household", SEED))
    assert isinstance(outs, list) and len(outs) == len(actions)
    assert "Recent steps:" not in tok.decode(outs[0].prompt_ids)
    assert f"Action: {actions[0]}" in tok.decode(outs[1].prompt_ids)
    for o, text in zip(outs, texts, strict=True):
        d = o.as_dict()
        assert tok.decode(o.response_ids, skip_special_tokens=True) == text
        assert d["response_mask"].tolist() == [1] * len(o.response_ids)
        assert float(d["rm_scores"][-1]) == pytest.approx(1.0) and float(d["rm_scores"].sum()) == 1
        assert d["rollout_log_probs"].tolist() == pytest.approx(
            [logprob_of(t) for t in o.response_ids]
        )
    keys = [f"u7_2_{i}" for i in range(len(outs))]
    masks = [torch.tensor(o.response_mask) for o in outs]
    assert empg_steps(keys, masks) == len(actions)


def test_config_errors(model_dir):
    cfg = config(model_dir, "+empg_env.histroy=3")
    tok = AgentLoopWorker(cfg, llm_client=None).tokenizer
    # verl builds agent loops with hydra, which wraps the project's ConfigError
    with pytest.raises(InstantiationException, match=r"did you mean 'empg_env\.history'"):
        asyncio.run(_instantiate_async(cfg, tok))
    with pytest.raises(ConfigError, match="layout must be one of"):
        env_loop_config({"empg_env": {"layout": "tree"}})


def test_empg_knobs_in_a_trainer_mode_that_ignores_them_are_refused(model_dir):
    """verl builds its trainer from trainer_mode: in `sync` EMPGTrainerSync never starts, so the
    agent loop refuses a config that sets algorithm.empg there instead of training plain GRPO."""
    cfg = config(model_dir, "trainer.v1.trainer_mode=sync")
    tok = AgentLoopWorker(cfg, llm_client=None).tokenizer
    with pytest.raises(InstantiationException, match="trainer_mode is 'sync', so EMPG would not"):
        asyncio.run(_instantiate_async(cfg, tok))
    off = config(model_dir, "trainer.v1.trainer_mode=sync", "algorithm.empg.enable=false")
    asyncio.run(_instantiate_async(off, tok))  # EMPG switched off: plain GRPO, as asked


async def _instantiate_async(cfg, tok):
    return instantiate(cfg, tok, None)


def test_plugin_registers_the_agent_loop_in_a_fresh_process(tmp_path):
    """What every verl process (Ray workers included) does: `import verl` loads the plug-in
    module named by VERL_USE_EXTERNAL_MODULES (or the entry point), which registers the loop."""
    code = (
        "import verl\n"
        "from verl.experimental.agent_loop.agent_loop import _agent_loop_registry as r\n"
        f"print('LOOP', r['{AGENT_NAME}']['_target_'])\n"
    )
    env = {**os.environ, "VERL_USE_EXTERNAL_MODULES": "empg.integrations.verl.plugin"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert "LOOP empg.integrations.verl.agent_loop.EMPGHouseholdAgentLoop" in out.stdout, (
        out.stderr[-2000:]
    )


def test_response_text_keeps_react_tags_registered_as_special_tokens():
    from empg.models.tokenizer import TokenizerConfig, train_tokenizer

    tok = train_tokenizer(TokenizerConfig(episodes_per_env=3, vocab_size=400))
    assert "<action>" in tok.all_special_tokens  # the project's tokenizer registers the tags
    ids = tok.encode("<think>go</think><action>look</action>", add_special_tokens=False)
    ids.append(tok.eos_token_id)
    text = response_text(tok, ids)
    assert text == "<think>go</think><action>look</action>"
    assert empg.agent.parse_response(text).action == "look"


def test_prompt_fields_reach_the_prompt_config():
    cfg = env_loop_config(
        {"empg_env": {"history": 0, "first_observation": True, "recall_observation": True}}
    )
    assert cfg.prompt.recall_observation and cfg.prompt.first_observation
    assert cfg.prompt.history == 0
    assert not env_loop_config({}).prompt.recall_observation
