"""Action-constrained decoding: the tokens inside ``<action> ... </action>`` may only spell one of
the environment's admissible actions.

::

    c = ActionConstraint.from_tokenizer(tokenizer)
    c.allowed("take ap", ["take apple 1 from countertop 1", "go to fridge 1"])  # token ids

While a response is being sampled, everything up to the opening tag is free, and so is an
opening tag written inside a ``<think>`` block (open, or closed after it), which
:func:`empg.agent.parsing.parse_response` reads as part of the thought. Once the decoded
continuation contains ``open_tag`` outside a thought, the text after it is the action written
so far, and the next token must keep ``written + token`` a prefix of ``action + close_tag`` for
some allowed action; every other token's logit is masked before sampling. The response then
ends on the close tag (the backend's stop string). Where no token continues any allowed action
(an action with characters no single token spells, or a prefix that already left every action
because the opening tag's own token carried text after it), the step is left unconstrained
rather than forced onto a wrong token.

An admissible action may hold one free slot, written ``<name>`` (shop's ``search[<query>]``):
the text before the slot is constrained like any action, and once it has been written the rest
of the step is free (the model writes the query and the closing bracket itself).

A token's text is its own decoding, ``tokenizer.decode([id])``. Tokenizers whose tokens decode
differently alone than in context (byte pieces of a multi-byte character) can only spell the
actions their single-token texts cover; ASCII commands, the text environments' kind, are spelled
exactly.

What the backend records is unchanged: log-probs and entropies of the model's own distribution,
before the mask, exactly as for top-p truncation, so a later training-time forward pass
reproduces them. The constraint acts like a sampling filter: it changes which tokens are drawn,
not the policy that is trained.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from empg.errors import InputError

#: an action with a free slot: the text before ``<name>`` (``search[`` in ``search[<query>]``)
_SLOT = re.compile(r"^([^<>]*)<[A-Za-z_][A-Za-z0-9_ ]*>")


class ActionConstraint:
    """Which tokens may come next inside an action block (see the module docstring).

    Args:
        token_texts: the text of every token id (index = id); empty texts are never allowed
            (EOS, padding and ids the tokenizer lacks).
        open_tag / close_tag: the action block's tags.
        think_tags: the thought block's opening and closing tags; an action tag inside a thought
            does not open the action block.
    """

    def __init__(
        self,
        token_texts: Sequence[str],
        *,
        open_tag: str = "<action>",
        close_tag: str = "</action>",
        think_tags: tuple[str, str] = ("<think>", "</think>"),
    ) -> None:
        if not open_tag or not close_tag or not all(think_tags) or len(think_tags) != 2:
            raise InputError("open_tag, close_tag and both think_tags must be non-empty strings")
        self.open_tag = open_tag
        self.close_tag = close_tag
        self.think_tags = tuple(think_tags)
        self.token_texts = list(token_texts)
        self._by_text: dict[str, list[int]] = {}
        for tid, text in enumerate(self.token_texts):
            if text:
                self._by_text.setdefault(text, []).append(tid)
        self._longest = max((len(t) for t in self._by_text), default=0)
        self._memo: dict[str, tuple[int, ...]] = {}

    #: remembered action suffixes (cleared when full; bounds memory)
    memo_size = 65536

    @classmethod
    def from_tokenizer(
        cls,
        tokenizer: Any,
        vocab_size: int | None = None,
        *,
        skip_ids: Sequence[int] = (),
        open_tag: str = "<action>",
        close_tag: str = "</action>",
    ) -> ActionConstraint:
        """Token texts from ``tokenizer.decode([id])`` for ids ``0 .. vocab_size - 1`` (default
        ``len(tokenizer)``; a model's padded vocabulary may be larger: extra ids get no text);
        ``skip_ids`` (EOS, padding) get none either."""
        n = len(tokenizer) if vocab_size is None else int(vocab_size)
        known = len(tokenizer)
        skip = set(int(i) for i in skip_ids)
        texts = []
        for tid in range(n):
            if tid >= known or tid in skip:
                texts.append("")
                continue
            texts.append(tokenizer.decode([tid], skip_special_tokens=False))
        return cls(texts, open_tag=open_tag, close_tag=close_tag)

    @property
    def vocab_size(self) -> int:
        return len(self.token_texts)

    def action_prefix(self, text: str) -> str | None:
        """The action written so far in a response ``text`` (the text after the first opening
        tag outside a thought), or None while no such tag has been written."""
        think_open, think_close = self.think_tags
        start = 0
        while True:
            at = text.find(self.open_tag, start)
            if at < 0:
                return None
            thought = text.find(think_open, start, at)
            if thought < 0:
                return text[at + len(self.open_tag) :]
            closed = text.find(think_close, thought + len(think_open))
            if closed < 0:  # still inside a thought: its "<action>" is text
                return None
            start = closed + len(think_close)

    def allowed(self, written: str, actions: Sequence[str]) -> list[int]:
        """Sorted ids of the tokens that keep ``written + token`` a prefix of some
        ``action + close_tag`` (for an action with a free slot, of the text before the slot);
        empty when none does, and when ``written`` has reached a slot (the rest is free)."""
        ids: set[int] = set()
        for action in dict.fromkeys(actions):
            slot = _SLOT.match(action)
            if slot is not None:
                head = slot.group(1)
                if written.startswith(head):
                    return []
                target = head
            else:
                target = action + self.close_tag
            if target.startswith(written):
                ids.update(self._starting(target[len(written) :]))
        return sorted(ids)

    def _starting(self, rest: str) -> tuple[int, ...]:
        """Ids of the tokens whose text is a non-empty prefix of ``rest`` (memoised: the same
        action suffixes come back in every row and turn)."""
        hit = self._memo.get(rest)
        if hit is None:
            found: list[int] = []
            for n in range(1, min(len(rest), self._longest) + 1):
                found.extend(self._by_text.get(rest[:n], ()))
            hit = tuple(found)
            if len(self._memo) >= self.memo_size:
                self._memo.clear()
            self._memo[rest] = hit
        return hit


class ConstraintState:
    """One response's progress through its action block while it is sampled."""

    __slots__ = ("actions", "text", "written")

    def __init__(self, actions: Sequence[str]) -> None:
        self.actions = list(actions)
        self.text = ""  # the response so far, until its action block opens
        self.written: str | None = None  # action text after the opening tag

    def advance(self, constraint: ActionConstraint, token_text: str) -> None:
        """Account for one more sampled token."""
        if self.written is not None:
            self.written += token_text
            return
        self.text += token_text  # whole: whether a tag sits inside a thought needs all of it
        prefix = constraint.action_prefix(self.text)
        if prefix is not None:
            self.written, self.text = prefix, ""

    def allowed(self, constraint: ActionConstraint) -> list[int] | None:
        """Allowed next ids, or None when this step is free (outside the block, or nothing fits)."""
        if self.written is None or not self.actions:
            return None
        ids = constraint.allowed(self.written, self.actions)
        return ids or None
