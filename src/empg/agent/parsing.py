"""Parse a ReAct response ``<think>...</think><action>...</action>`` into (thought, action).

Model output is only ever matched with regular expressions; it is never evaluated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)
ACTION_RE = re.compile(r"<action>(.*?)</action>", re.DOTALL)
#: what the environment receives for an invalid step: its own invalid-action answer follows
INVALID_ACTION = ""


@dataclass(frozen=True)
class ParsedResponse:
    """Result of :func:`parse_response`.

    Attributes:
        thought: text inside ``<think>``, or None.
        action: the action to send to the environment (``INVALID_ACTION`` when invalid).
        valid: whether the response followed the format.
        error: why it is invalid (None when valid).
    """

    thought: str | None
    action: str
    valid: bool
    error: str | None = None


def parse_response(
    text: str, *, require_think: bool = True, max_action_chars: int = 200
) -> ParsedResponse:
    """Extract the step's action.

    Valid iff the text holds exactly one ``<action>...</action>`` block whose content, stripped,
    is non-empty, single-line and at most ``max_action_chars`` long, and (when ``require_think``)
    a ``<think>...</think>`` block that closes before the action starts.
    """
    if not isinstance(text, str):
        return ParsedResponse(None, INVALID_ACTION, False, f"response is {type(text).__name__}")
    actions = list(ACTION_RE.finditer(text))
    think = THINK_RE.search(text)
    if think is not None and actions and think.start() < actions[0].start() < think.end():
        # "<action>" written inside the thought is part of the thought
        actions = list(ACTION_RE.finditer(text, think.end()))
    thought = think.group(1).strip() if think else None

    def bad(why: str) -> ParsedResponse:
        return ParsedResponse(thought, INVALID_ACTION, False, why)

    if not actions:
        return bad("no <action>...</action> block")
    if len(actions) > 1:
        return bad(f"{len(actions)} action blocks; expected exactly one")
    action = actions[0].group(1).strip()
    if not action:
        return bad("empty action")
    if len(action.splitlines()) > 1:  # \r, \u2028 and the like break lines too
        return bad("action spans several lines")
    if len(action) > max_action_chars:
        return bad(f"action longer than {max_action_chars} characters")
    if "<" in action and re.search(r"</?(think|action)>", action):
        return bad("nested tags inside the action")
    if require_think and (think is None or think.end() > actions[0].start()):
        return bad("missing <think>...</think> before the action")
    return ParsedResponse(thought, action, True, None)


def format_response(thought: str, action: str) -> str:
    """The target text of a step, as the model should write it (used for SFT)."""
    return f"<think>{thought}</think><action>{action}</action>"
