"""parse_response / format_response, including hostile model outputs."""

from __future__ import annotations

import pytest

from empg.agent import INVALID_ACTION, format_response, parse_response


def test_round_trip():
    p = parse_response(format_response("the apple is on the counter", "go to countertop 1"))
    assert (p.thought, p.action, p.valid, p.error) == (
        "the apple is on the counter",
        "go to countertop 1",
        True,
        None,
    )


def test_whitespace_and_trailing_text_are_tolerated():
    p = parse_response("  <think>\n hmm \n</think>\n<action>  open fridge 1 </action>\nbye")
    assert p.valid and p.action == "open fridge 1" and p.thought == "hmm"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "no <action>...</action> block"),
        ("<think>x</think>go to cabinet 1", "no <action>...</action> block"),
        ("<think>x</think><action>go to cabinet 1", "no <action>...</action> block"),
        ("<think>x</think><action>  </action>", "empty action"),
        (
            "<think>x</think><action>a</action><action>b</action>",
            "2 action blocks; expected exactly one",
        ),
        ("<think>x</think><action>go\nnorth</action>", "action spans several lines"),
        ("<think>x</think><action>go\rnorth</action>", "action spans several lines"),
        ("<think>x</think><action>go\u2028north</action>", "action spans several lines"),
        # an action block inside the thought is not the step's action
        ("<think>say <action>go</action> later</think>", "no <action>...</action> block"),
        ("<think>x</think><action>" + "a" * 201 + "</action>", "action longer than 200 characters"),
        ("<action>go to cabinet 1</action>", "missing <think>...</think> before the action"),
        (
            "<action>look</action><think>late</think>",
            "missing <think>...</think> before the action",
        ),
        ("<think>x</think><action><think>y</action>", "nested tags inside the action"),
    ],
)
def test_invalid_responses(text, error):
    p = parse_response(text)
    assert not p.valid and p.action == INVALID_ACTION and p.error == error


def test_action_tags_quoted_in_the_thought_are_part_of_the_thought():
    p = parse_response("<think>I should write <action> tags</think><action>go to fridge 1</action>")
    assert p.valid and p.action == "go to fridge 1" and p.thought == "I should write <action> tags"
    p = parse_response("<think>a <action>b</action> c</think><action>look</action>")
    assert p.valid and p.action == "look"


def test_think_optional_when_not_required():
    p = parse_response("<action>look</action>", require_think=False)
    assert p.valid and p.action == "look" and p.thought is None


@pytest.mark.parametrize(
    "hostile",
    [
        "__import__('os').system('rm -rf /')",
        "<think>x</think><action>__import__('os').system('echo hi')</action>",
        "<think>" + "<" * 10_000 + "</think><action>look</action>",
        "<think>\x00\x1b[31m</think><action>\u202eevil\u202c</action>",
        "<think>x</think><action>" + "<action>" * 50,
        "</action><action></think>",
        "<think>ok</think><action>take 🍎 from 🧺</action>",
    ],
)
def test_hostile_outputs_never_raise_and_stay_strings(hostile):
    p = parse_response(hostile)
    assert isinstance(p.action, str)
    assert p.valid == (p.error is None)
    if not p.valid:
        assert p.action == INVALID_ACTION


def test_hostile_action_is_returned_verbatim_not_run():
    text = "<think>x</think><action>__import__('os').system('echo hi')</action>"
    assert parse_response(text).action == "__import__('os').system('echo hi')"
    assert parse_response("<think>ok</think><action>take 🍎 from 🧺</action>").action == (
        "take 🍎 from 🧺"
    )


def test_non_string_input():
    p = parse_response(None)  # type: ignore[arg-type]
    assert not p.valid and p.error == "response is NoneType"


def test_huge_input_is_fast():
    import time

    text = "<think>" + "a" * 2_000_000 + "</think>" + "<action>look</action>"
    t0 = time.perf_counter()
    assert parse_response(text).valid
    assert time.perf_counter() - t0 < 2.0
