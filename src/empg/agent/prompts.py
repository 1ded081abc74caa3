"""ReAct prompts: the task, the last k (observation, action) pairs, the current observation,
optionally the admissible actions, and the answer format.

Three optional memory lines help small models in partially observed environments, where the
last k steps alone do not say what the agent has already done: ``first_observation`` keeps the
episode's first observation (household's room overview lists every receptacle),
``past_actions`` lists the agent's own earlier actions (older than the last k steps), and
``recall_observation`` repeats the latest observation that said something whenever the current
one is a no-op reply such as household's "Nothing happens." (which would otherwise hide what is
at the agent's location). All are built only from what the agent itself saw and did.

``build_messages`` returns chat messages; ``render_prompt`` turns them into text with the
tokenizer's chat template when it has one, or a plain template otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from empg.errors import ConfigError, InputError

ANSWER_FORMAT = (
    "First reason briefly inside <think> </think>, then give exactly one action inside "
    "<action> </action>."
)

#: what each environment's actions look like (shown in the system message)
ACTION_HINTS: dict[str, str] = {
    "household": "Actions are household commands such as 'go to cabinet 1', 'open fridge 1', "
    "'take apple 1 from countertop 1', 'move apple 1 to fridge 1', 'heat egg 1 with "
    "microwave 1'.",
    "shop": "Actions are 'search[query]' on the search page and 'click[label]' for a button, "
    "product or option shown on the page.",
    "search": "Actions are 'search[query]' to look up passages and 'answer[text]' to answer.",
    "textworld": "Actions are text-adventure commands such as 'open door' or 'take key'.",
    "alfworld": "Actions are household commands such as 'go to cabinet 1' or 'open fridge 1'.",
}


@dataclass(frozen=True)
class PromptConfig:
    """How prompts are built."""

    history: int = 2
    """number of past (observation, action) pairs kept in the prompt (verl-agent uses 2)"""
    show_admissible: bool = True
    """list the environment's admissible actions where it has them"""
    max_admissible: int = 60
    """at most this many admissible actions are listed"""
    max_observation_chars: int = 1500
    """observations longer than this are cut (keeps prompts bounded)"""
    compact: bool = False
    """no system message and no format reminder: short prompts for tiny models that learn the
    format from supervised warm-up"""
    first_observation: bool = False
    """keep the episode's first observation (e.g. the room overview) once it has left the
    recent steps"""
    past_actions: int = 0
    """list up to this many of the agent's own actions older than the recent steps (0: none)"""
    recall_observation: bool = False
    """when the current observation is one of ``noop_observations``, also show the latest
    earlier observation that is not (unless the recent steps or the first-observation line
    already show it)"""
    noop_observations: tuple[str, ...] = ("Nothing happens.",)
    """observations that say nothing new (compared after stripping whitespace)"""

    def __post_init__(self) -> None:
        if not isinstance(self.history, int) or self.history < 0:
            raise ConfigError(f"history must be an int >= 0, got {self.history!r}")
        if not isinstance(self.past_actions, int) or self.past_actions < 0:
            raise ConfigError(f"past_actions must be an int >= 0, got {self.past_actions!r}")
        if self.max_admissible < 1 or self.max_observation_chars < 1:
            raise ConfigError("max_admissible and max_observation_chars must be >= 1")
        noop = self.noop_observations
        if not isinstance(noop, (list, tuple)) or not all(isinstance(o, str) for o in noop):
            raise ConfigError(f"noop_observations must be a list of strings, got {noop!r}")
        object.__setattr__(self, "noop_observations", tuple(o.strip() for o in noop))


@dataclass(frozen=True)
class Turn:
    """One past step: what the agent saw and what it did."""

    observation: str
    action: str


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + " ..."


def _recalled(turns: list[Turn], observation: str, n_older: int, cfg: PromptConfig) -> str | None:
    """The observation ``recall_observation`` adds to the prompt, or None."""
    noop = cfg.noop_observations
    if not cfg.recall_observation or observation.strip() not in noop:
        return None
    for i in range(len(turns) - 1, -1, -1):
        if turns[i].observation.strip() not in noop:
            shown = i >= n_older or (i == 0 and cfg.first_observation)
            return None if shown else turns[i].observation
    return None


def build_messages(
    env_name: str,
    task: str,
    observation: str,
    history: Sequence[Turn] = (),
    admissible: Sequence[str] | None = None,
    cfg: PromptConfig | None = None,
) -> list[dict[str, str]]:
    """Chat messages (system + user) for the agent's next step."""
    cfg = cfg or PromptConfig()
    hint = ACTION_HINTS.get(env_name, "")
    system = f"You are an agent acting in a text environment. {hint} {ANSWER_FORMAT}".strip()
    lines = [f"Task: {task}"]
    turns = list(history)
    past = turns[-cfg.history :] if cfg.history else []
    older = turns[: len(turns) - len(past)]
    if cfg.first_observation and older:
        lines.append(f"First observation: {_cut(older[0].observation, cfg.max_observation_chars)}")
    if cfg.past_actions and older:
        lines.append("Earlier actions: " + "; ".join(t.action for t in older[-cfg.past_actions :]))
    if past:
        lines.append("Recent steps:")
        for t in past:
            lines.append(f"Observation: {_cut(t.observation, cfg.max_observation_chars)}")
            lines.append(f"Action: {t.action}")
    recalled = _recalled(turns, observation, len(older), cfg)
    if recalled is not None:
        lines.append(f"Last informative observation: {_cut(recalled, cfg.max_observation_chars)}")
    lines.append(f"Current observation: {_cut(observation, cfg.max_observation_chars)}")
    if cfg.show_admissible and admissible:
        shown = list(admissible)[: cfg.max_admissible]
        lines.append("Admissible actions: " + ", ".join(shown))
    if cfg.compact:
        return [{"role": "user", "content": "\n".join(lines)}]
    lines.append(ANSWER_FORMAT)
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)}]


def render_prompt(messages: list[dict[str, str]], tokenizer: Any = None) -> str:
    """Text of the prompt, ending where the assistant's answer starts."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    parts = [f"<|{m['role']}|>\n{m['content']}\n" for m in messages]
    return "".join(parts) + "<|assistant|>\n"


#: stands for a response when :func:`between_turns_text` asks a chat template what follows one
_PROBE = "EMPG-PROBE-ANSWER"


def _render(messages: list[dict[str, str]], tokenizer: Any, gen: bool) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
    # render_prompt's plain template, also without the generation prompt
    text = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages)
    return text + ("<|assistant|>\n" if gen else "")


def between_turns_text(
    tokenizer: Any,
    messages: list[dict[str, str]],
    next_user: dict[str, str],
    *,
    response_ended_with_eos: bool,
) -> str:
    """Text after an assistant response and before the next one: end of the assistant turn,
    the next user message, the generation prompt.

    ``messages`` are the conversation so far ending with the user message the response answers.
    Found by rendering with and without a probe answer; a chat template that is not
    prefix-stable (rewrites earlier turns) is rejected.
    """
    base = _render(messages, tokenizer, True)
    closed = _render([*messages, {"role": "assistant", "content": _PROBE}], tokenizer, False)
    full = _render(
        [*messages, {"role": "assistant", "content": _PROBE}, next_user], tokenizer, True
    )
    if not (closed.startswith(base + _PROBE) and full.startswith(closed)):
        raise InputError(
            "the tokenizer's chat template is not prefix-stable (rendering a longer conversation "
            "changes earlier text); multi-turn single-sequence rollouts need one that is"
        )
    text = closed[len(base) + len(_PROBE) :] + full[len(closed) :]
    eos = getattr(tokenizer, "eos_token", None)
    if response_ended_with_eos and eos and text.startswith(eos):
        text = text[len(eos) :]  # the model already wrote the turn-closing token
    return text
