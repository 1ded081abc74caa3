"""Action-constrained decoding: the allowed-token sets, and HFBackend / rollouts using them."""

from __future__ import annotations

import pytest
import torch
from test_generation import full_forward

from empg.agent import build_messages, parse_response, render_prompt
from empg.agent.constrain import ActionConstraint, ConstraintState
from empg.agent.generation import GenerationConfig, HFBackend
from empg.errors import InputError

#: a hand-made vocabulary: id -> text
TEXTS = [
    "",
    "go",
    " to",
    " ",
    "c",
    "ab",
    "cabinet",
    "1",
    "</action>",
    "fridge",
    "g",
    "<act",
    "ion>",
]
C = ActionConstraint(TEXTS)
ACTIONS = ["go to cabinet 1", "open fridge 1"]


def ids(*texts):
    return sorted(TEXTS.index(t) for t in texts)


def test_allowed_sets_by_hand():
    assert C.allowed("", ACTIONS) == ids("go", "g")  # nothing spells "o" of "open"
    assert C.allowed("g", ACTIONS) == []  # no token is "o" alone
    assert C.allowed("go", ACTIONS) == ids(" to", " ")
    assert C.allowed("go to ", ACTIONS) == ids("c", "cabinet")
    assert C.allowed("go to c", ACTIONS) == ids("ab")
    assert C.allowed("go to cabinet 1", ACTIONS) == ids("</action>")
    assert C.allowed("go to cabinet 1</action>", ACTIONS) == []
    assert C.allowed("take", ACTIONS) == []
    assert C.allowed("", []) == []


def test_a_free_slot_constrains_the_text_before_it_and_frees_the_rest():
    texts = ["", "search", "[", "search[", "se", "click", "[b1", "]", "red", "</action>", "<"]
    c = ActionConstraint(texts)
    acts = ["search[<query>]", "click[b1]"]
    at = lambda *ts: sorted(texts.index(t) for t in ts)
    assert c.allowed("", acts) == at("search", "search[", "se", "click")
    assert c.allowed("se", acts) == []  # no token is "arch" or a prefix of it
    assert c.allowed("search", acts) == at("[")
    assert c.allowed("search[", acts) == []  # the slot: free from here on
    assert c.allowed("search[red", acts) == []
    assert c.allowed("click", acts) == at("[", "[b1")
    assert c.allowed("click[b1", acts) == at("]")
    assert c.allowed("click[b1]", acts) == at("</action>", "<")
    # "<" and ">" that do not enclose a slot name are plain text (shop's "< prev" button)
    assert c.allowed("click[", ["click[< prev]"]) == at("<")  # a slot would have freed it
    assert ActionConstraint(["", "click[< prev]</action>"]).allowed("", ["click[< prev]"]) == [1]
    st = ConstraintState(acts)
    for t in ["<act", "ion>", "search["]:
        st.advance(c, t)
    assert st.allowed(c) is None  # inside the slot the step is unconstrained


def test_empty_texts_are_never_allowed():
    c = ActionConstraint(["", "a", "", "a"])
    assert c.allowed("", ["a"]) == [1, 3]


def test_state_finds_the_opening_tag_across_tokens():
    st = ConstraintState(ACTIONS)
    for t in ["go", "<act"]:
        st.advance(C, t)
        assert st.allowed(C) is None  # outside the block: free
    st.advance(C, "ion>")
    assert st.written == ""
    assert st.allowed(C) == ids("go", "g")
    for t in ["go", " to", " "]:
        st.advance(C, t)
    assert st.allowed(C) == ids("c", "cabinet")
    st.advance(C, "x")  # left every action (only possible unconstrained): the step is free
    assert st.allowed(C) is None


@pytest.mark.parametrize(
    "pieces, opened",
    [
        (["<think>use <act", "ion>"], False),  # inside a thought still open
        (["<think>use <action>", " tags</think>"], False),  # inside a thought that closed
        (["<think>use <action>", " tags</think>", "<act", "ion>"], True),  # the real one
        (["<think>a</think><act", "ion>"], True),
        (["<think>x <action></think><think>y</think><action>"], True),
        (["<action>"], True),  # no thought at all (require_think=False responses)
    ],
)
def test_an_action_tag_inside_a_thought_does_not_open_the_block(pieces, opened):
    # the parser reads such a tag as part of the thought; the constraint must agree
    st = ConstraintState(ACTIONS)
    for t in pieces:
        st.advance(C, t)
    assert st.written == ("" if opened else None)
    assert (st.allowed(C) == ids("go", "g")) if opened else (st.allowed(C) is None)
    if opened:
        text = "".join(pieces) + "go to cabinet 1</action>"
        assert parse_response(text, require_think=False).action == "go to cabinet 1"


def test_tokenizer_table_skips_ids_and_pads_the_vocabulary(tokenizer):
    eos = tokenizer.eos_token_id
    c = ActionConstraint.from_tokenizer(tokenizer, len(tokenizer) + 5, skip_ids=[eos])
    assert c.vocab_size == len(tokenizer) + 5
    assert c.token_texts[eos] == "" and c.token_texts[-1] == ""
    some = tokenizer.encode(" fridge")[0]
    assert c.token_texts[some] == tokenizer.decode([some])


def _household_prompts(tokenizer, n):
    from agent_helpers import FORMAT_PROMPT

    from empg.envs import make

    env = make("household", split="train")
    out = []
    for seed in range(n):
        obs, info = env.reset(seed=seed)
        msgs = build_messages("household", info["task"], obs, (), None, FORMAT_PROMPT)
        out.append((tokenizer.encode(render_prompt(msgs)), info["admissible_actions"]))
    env.close()
    return out


def _constrained_inputs(tokenizer, actions, repeat):
    """Prompts of 8 household tasks and the first ``actions`` admissible actions of each, the
    lot repeated ``repeat`` times."""
    rows = _household_prompts(tokenizer, 8)
    return [r[0] for r in rows] * repeat, [r[1][:actions] for r in rows] * repeat


def test_backend_spells_only_allowed_actions_and_records_unmasked_numbers(format_model, tokenizer):
    p, allowed = _constrained_inputs(tokenizer, 3, 3)
    cfg = GenerationConfig(max_new_tokens=40, temperature=1.0, seed=0)
    backend = HFBackend(format_model, tokenizer)
    free = backend.generate(p, cfg)
    outs = backend.generate(p, cfg, actions=allowed)
    wrote_block = [o for o in outs if "<action>" in o.text]
    assert len(wrote_block) >= 8
    for o, a in zip(outs, allowed, strict=True):
        if "<action>" in o.text and o.finish_reason == "stop":
            action = o.text.split("<action>")[-1].removesuffix("</action>")
            assert action in a
    # without the mask the same model writes other actions: the constraint is what did it
    free_actions = [  # (row, action): each compared with its own row's admissible list
        (i, o.text.split("<action>")[-1].removesuffix("</action>"))
        for i, o in enumerate(free)
        if "<action>" in o.text and o.finish_reason == "stop"
    ]
    assert any(x not in allowed[i] for i, x in free_actions)
    # log-probs and entropies are the model's own distribution, as a training forward sees it
    for o, (lp, ent) in zip(outs, full_forward(format_model, p, outs, 1.0), strict=True):
        torch.testing.assert_close(o.logprobs, lp, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(o.entropies, ent, atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def backend(model, tokenizer):
    return HFBackend(model, tokenizer)


def test_no_actions_is_unconstrained(backend, tokenizer):
    p = [tokenizer.encode("go to"), tokenizer.encode("You see a fridge 1.")]
    cfg = GenerationConfig(max_new_tokens=10, seed=5)
    a = backend.generate(p, cfg)
    b = backend.generate(p, cfg, actions=[None, None])
    assert [x.token_ids.tolist() for x in a] == [x.token_ids.tolist() for x in b]


@pytest.mark.parametrize("bad", [["go"], [None], ["go", None, None], [[1], None]])
def test_actions_input_errors(backend, tokenizer, bad):
    p = [tokenizer.encode("go to"), tokenizer.encode("a")]
    with pytest.raises(InputError, match="actions"):
        backend.generate(p, GenerationConfig(max_new_tokens=2), actions=bad)


def test_parsed_action_of_a_constrained_block_is_the_admissible_text(format_model, tokenizer):
    """Each row may only spell admissible actions other than the one the model picks freely;
    every answer then parses, and its action is one of those."""
    rows = _household_prompts(tokenizer, 4)
    backend = HFBackend(format_model, tokenizer)
    cfg = GenerationConfig(max_new_tokens=60, temperature=0.0)
    free = [parse_response(o.text) for o in backend.generate([r[0] for r in rows], cfg)]
    assert all(f.valid for f in free)  # the format model answers in format
    subsets = [[x for x in a if x != f.action][:5] for (_, a), f in zip(rows, free, strict=True)]
    assert all(subsets)
    outs = backend.generate([r[0] for r in rows], cfg, actions=subsets)
    for o, sub, f in zip(outs, subsets, free, strict=True):
        parsed = parse_response(o.text)
        assert parsed.valid, o.text
        assert parsed.action in sub and parsed.action != f.action


def _row_logits(model, prompt, out):
    """Logits (T, V) that predict each generated token, from one plain forward of the row."""
    ids = torch.tensor([list(prompt) + out.token_ids.tolist()])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]
    return logits[len(prompt) - 1 : len(prompt) - 1 + len(out)]


def test_restricted_logprobs_score_the_sampled_distribution(format_model, tokenizer):
    from empg.train.update import recompute_logprobs

    p, allowed = _constrained_inputs(tokenizer, 4, 2)
    cfg = GenerationConfig(max_new_tokens=40, temperature=0.7, seed=2)
    backend = HFBackend(format_model, tokenizer)
    plain = backend.generate(p, cfg, actions=allowed)
    outs = backend.generate(p, cfg, actions=allowed, restricted_logprobs=True)
    masked = forced = 0
    for a, o, prompt in zip(plain, outs, p, strict=True):
        assert torch.equal(a.token_ids, o.token_ids)  # the same sampling, other bookkeeping
        assert a.allowed == o.allowed and len(o.allowed) == len(o)
        logits = _row_logits(format_model, prompt, o)
        for j, ids in enumerate(o.allowed):
            if ids is None:  # free token: the model's own distribution, as before
                assert o.logprobs[j].item() == pytest.approx(a.logprobs[j].item(), abs=1e-6)
                continue
            masked += 1
            forced += len(ids) == 1
            z = logits[j, list(ids)] / 0.7
            logp = torch.log_softmax(z, -1)
            y = list(ids).index(int(o.token_ids[j]))
            assert o.logprobs[j].item() == pytest.approx(logp[y].item(), abs=1e-4)
            ent = -(logp.exp() * logp).sum().item()
            assert o.entropies[j].item() == pytest.approx(ent, abs=1e-4)
            assert o.logprobs[j].item() >= a.logprobs[j].item() - 1e-6  # renormalised
    assert masked >= 40 and 0 < forced < masked
    # the trainer's recomputation scores them the same way
    lp, ent, _ = recompute_logprobs(
        format_model,
        p,
        [o.token_ids.tolist() for o in outs],
        pad_id=tokenizer.pad_token_id,
        micro_batch=5,
        temperature=0.7,
        allowed=[o.allowed for o in outs],
    )
    for i, o in enumerate(outs):
        torch.testing.assert_close(lp[i, : len(o)], o.logprobs, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(ent[i, : len(o)], o.entropies, atol=1e-4, rtol=1e-4)


def test_constrained_rollouts_on_search_spell_candidates(format_model, tokenizer):
    """With rollout.constrain_actions, a search episode's actions are searches and answers
    among the names shown so far (search lists no admissible actions)."""
    from agent_helpers import FORMAT_PROMPT

    from empg.agent import RolloutConfig, collect_rollouts
    from empg.envs import make

    cfg = RolloutConfig(
        env_name="search",
        env_kwargs={"split": "test_id"},
        group_size=2,
        max_turns=3,
        prompt=FORMAT_PROMPT,
        generation=GenerationConfig(max_new_tokens=40, temperature=1.0, seed=0),
        constrain_actions=True,
    )
    batch = collect_rollouts(HFBackend(format_model, tokenizer), [0, 1, 2], cfg)
    valid = [s for s in batch.steps if s.valid]
    assert len(valid) >= 6
    env = make("search", split="test_id")
    for t in batch.trajectories:  # replay each episode: every valid action was a candidate
        _, info = env.reset(seed=t.task_seed)
        for s in batch.rows_of(t.traj_id):
            if s.valid:
                assert s.action in info["action_candidates"], s.action
            info = env.step(s.action).info
