"""``SearchEnv``: multi-hop question answering with a search tool (a deep-search benchmark).

Each episode poses one question. The agent acts with free-form text:

* ``search[query]`` - the top-k passages (default 3) for ``query``;
* ``answer[text]``  - ends the episode; reward = normalised exact match (SQuAD-style),
  ``info["f1"]`` = token F1.

Anything else is answered with an invalid-action observation (never raised, never evaluated).
The episode is truncated after ``max_steps`` turns (default 10) without an answer.

By default questions come from the generated knowledge base (splits ``train``, ``test_id``,
``test_ood``; see :mod:`empg.envs.search.questions`) and searches go to a local BM25 index.
With real data::

    SearchEnv(questions_path="qa.jsonl", retriever_url="http://127.0.0.1:8000/retrieve")

reads questions from JSONL and searches a Search-R1-style retrieval server over HTTP.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from empg.envs.core import TextEnv
from empg.envs.search.kb import KnowledgeBase, default_kb, normalize_name
from empg.envs.search.questions import SPLITS, Question, default_questions, load_jsonl_questions
from empg.envs.search.retriever import (
    Hit,
    HttpRetriever,
    RetrievalError,
    Retriever,
    default_retriever,
)
from empg.envs.search.scoring import exact_match, f1_score
from empg.errors import ConfigError

MAX_ACTION_CHARS = 4096
MAX_QUERY_CHARS = 512
MAX_DOC_CHARS = 2000
_ACTION = re.compile(r"\s*(search|answer)\s*\[(.*)\]\s*", re.DOTALL | re.IGNORECASE)
#: words an expert adds to a name when the plain name did not retrieve the entity's passage
_KIND_HINT = {
    "country": "country capital",
    "city": "city founded inhabitants",
    "person": "born",
    "film": "film directed",
    "company": "company founded headquartered",
    "band": "band lead singer",
    "river": "river rises",
}


#: a name: capitalised words in a row, optionally after "The" ("Fysuth Vebu", "The Githath
#: Engines"), or a number ("1962"); the built-in knowledge base's entities and answers are all
#: of these shapes
_NAME = re.compile(r"\b(?:The )?[A-Z][a-z]+(?: [A-Z][a-z]+)*|\b\d+\b")
#: capitalised words of the environment's own text, question openings and sentence starts:
#: not names
_NOT_NAMES = frozenset(
    [
        "Question",
        "Actions",
        "You",
        "Results",
        "Doc",
        "Title",
        "In",
        "Which",
        "Who",
        "What",
        "When",
        "Where",
        "How",
        "The",
        "Invalid",
        "Use",
        "Search",
        "It",
        "Its",
        "He",
        "His",
        "She",
        "Her",
        "They",
        "Their",
        "This",
        "That",
        "A",
        "An",
    ]
)
#: at most this many names per episode feed action_candidates (long real passages hold many)
MAX_NAMES = 256


def _has_word(text: str) -> bool:
    """Whether ``text`` holds a letter or a digit: a query or answer of nothing but spaces,
    punctuation, symbols or invisible characters counts as empty."""
    return any(ch.isalnum() for ch in text)


def names_in(text: str) -> list[str]:
    """The names ``text`` holds, in order of first appearance (see :data:`_NAME`)."""
    out: dict[str, None] = {}
    for n in _NAME.findall(text):
        if n not in _NOT_NAMES:
            out.setdefault(n, None)
    return list(out)


def _preview(text: str, n: int = 60) -> str:
    """A short, printable echo of untrusted text (lone surrogates and newlines replaced)."""
    short = text[:n].encode("utf-8", "replace").decode("utf-8")
    short = " ".join(short.split())
    return short + ("..." if len(text) > n else "")


class SearchEnv(TextEnv):
    """Multi-hop QA with ``search[...]`` / ``answer[...]`` actions (see the module docstring).

    Args:
        split: ``train``, ``test_id`` or ``test_ood`` (ignored when ``questions_path`` is set).
        kb_seed: seed of the generated knowledge base.
        top_k: passages returned per search.
        max_steps: turns per episode before truncation.
        questions_path: JSONL file of ``{"question", "answers", ["id", "type"]}`` lines.
        retriever_url: a Search-R1-style ``POST /retrieve`` endpoint; default: local BM25.
        timeout_s: HTTP timeout per search.
    """

    name = "search"

    def __init__(
        self,
        split: str = "train",
        *,
        kb_seed: int = 0,
        top_k: int = 3,
        max_steps: int = 10,
        questions_path: str | Path | None = None,
        retriever_url: str | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        super().__init__()
        if questions_path is None and split not in SPLITS:
            close = difflib.get_close_matches(str(split), SPLITS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}{hint}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 20:
            raise ConfigError(f"top_k must be an int in 1..20, got {top_k!r}")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ConfigError(f"max_steps must be an int >= 1, got {max_steps!r}")
        if isinstance(kb_seed, bool) or not isinstance(kb_seed, int) or kb_seed < 0:
            raise ConfigError(f"kb_seed must be a non-negative int, got {kb_seed!r}")
        self.top_k = top_k
        self.max_steps = max_steps
        self.kb_seed = kb_seed
        self.kb: KnowledgeBase | None
        if questions_path is not None:
            self.split = "jsonl"
            self.questions: tuple[Question, ...] = tuple(load_jsonl_questions(questions_path))
            self.kb = None
        else:
            self.split = split
            self.questions = default_questions(kb_seed, split)
            self.kb = default_kb(kb_seed)
        self.retriever: Retriever
        if retriever_url is not None:
            self.retriever = HttpRetriever(retriever_url, timeout_s=timeout_s)
        else:
            self.retriever = default_retriever(kb_seed)
        self._index = -1
        self._q: Question = self.questions[0]
        self._seen_titles: set[str] = set()
        self._queries: list[str] = []
        self._names: dict[str, None] = {}  # names shown this episode, in order

    @property
    def question(self) -> Question:
        """The current episode's question (its gold answers included: not for the agent)."""
        return self._q

    # -- episode ------------------------------------------------------------------------------
    def _reset(self, *, seed: int | None, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self._index = (self._index + 1 if seed is None else seed) % len(self.questions)
        self._q = self.questions[self._index]
        self._seen_titles = set()
        self._queries = []
        self._names = {}
        self._note_names(self._q.text)
        obs = (
            f"Question: {self._q.text}\n"
            f"Actions: search[query] returns the top {self.top_k} passages; answer[text] gives "
            f"your final answer and ends the episode. You have {self.max_steps} turns."
        )
        return obs, self._info(won=False, f1=0.0, action_type="reset")

    def _note_names(self, text: str) -> None:
        for n in names_in(text):
            if len(self._names) >= MAX_NAMES:
                return
            self._names.setdefault(n, None)

    def _info(self, *, won: bool, f1: float, action_type: str, **extra: Any) -> dict[str, Any]:
        q = self._q
        names = list(self._names)
        return {
            "won": won,
            "task": q.text,
            "task_type": q.task_type,
            "f1": f1,
            "em": float(won),
            "action_type": action_type,
            "question_id": q.qid,
            "question_index": self._index,
            "split": self.split,
            "hops": q.hops,
            "num_searches": len(self._queries),
            # searches and answers spelled from the names shown so far: queries and answers are
            # free text, so there is no admissible list, but constrained decoding can copy these
            "action_candidates": [f"search[{n}]" for n in names] + [f"answer[{n}]" for n in names],
            **extra,
        }

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        m = _ACTION.fullmatch(action) if len(action) <= MAX_ACTION_CHARS else None
        if m is None:
            obs = (
                f"Invalid action {_preview(action)!r}. Use search[<query>] to search or "
                "answer[<text>] to give your final answer."
            )
            return obs, 0.0, False, self._info(won=False, f1=0.0, action_type="invalid")
        verb, arg = m.group(1).lower(), m.group(2).strip()
        if verb == "answer":
            return self._answer(arg)
        return self._search(arg)

    def _answer(self, text: str) -> tuple[str, float, bool, dict[str, Any]]:
        if not _has_word(text) or len(text) > MAX_QUERY_CHARS:
            why = "empty" if not _has_word(text) else f"longer than {MAX_QUERY_CHARS} characters"
            obs = f"Invalid answer: the answer is {why}. Use answer[<your final answer>]."
            return obs, 0.0, False, self._info(won=False, f1=0.0, action_type="invalid")
        em = exact_match(text, self._q.answers)
        f1 = f1_score(text, self._q.answers)
        verdict = "correct" if em else f"incorrect; the expected answer was {self._q.answers[0]}"
        obs = f"You answered {_preview(text, 200)!r}: {verdict}."
        info = self._info(won=bool(em), f1=f1, action_type="answer", answers=list(self._q.answers))
        return obs, em, True, info

    def _search(self, query: str) -> tuple[str, float, bool, dict[str, Any]]:
        if not _has_word(query) or len(query) > MAX_QUERY_CHARS:
            why = "empty" if not _has_word(query) else f"longer than {MAX_QUERY_CHARS} characters"
            obs = f"Invalid search: the query is {why}. Use search[<a few keywords>]."
            return obs, 0.0, False, self._info(won=False, f1=0.0, action_type="invalid")
        self._queries.append(query)
        left = self.max_steps - self.steps_taken - 1
        try:
            hits = self.retriever.search(query, self.top_k)
        except RetrievalError as exc:
            obs = f"Search failed: {exc}. You may search again or answer. ({left} turns left)"
            info = self._info(won=False, f1=0.0, action_type="search", retrieval_error=str(exc))
            return obs, 0.0, False, info
        self._seen_titles.update(normalize_name(h.title) for h in hits)
        for h in hits:
            self._note_names(f"{h.title}\n{h.text[:MAX_DOC_CHARS]}")
        return (
            self._render(query, hits, left),
            0.0,
            False,
            self._info(won=False, f1=0.0, action_type="search", retrieved_ids=[h.id for h in hits]),
        )

    @staticmethod
    def _render(query: str, hits: list[Hit], left: int) -> str:
        head = f"Results for {_preview(query, 120)!r}"
        if not hits:
            return f"{head}: no passage matches. ({left} turns left)"
        lines = [f"{head}:"]
        for i, h in enumerate(hits, start=1):
            text = h.text if len(h.text) <= MAX_DOC_CHARS else h.text[:MAX_DOC_CHARS] + "..."
            lines.append(f"Doc {i} (Title: {h.title}) {text}")
        lines.append(f"({left} turns left)")
        return "\n".join(lines)

    # -- expert -------------------------------------------------------------------------------
    def _expert_plan(self) -> tuple[str, str]:
        """(action, thought) of the scripted expert in the current state."""
        q, kb = self._q, self.kb
        if kb is None or not q.evidence:
            raise NotImplementedError(
                "SearchEnv's expert needs the built-in knowledge base; questions read from "
                "questions_path have no known evidence chain, so there is no expert for them"
            )
        issued = {normalize_name(x) for x in self._queries}
        for ent_id in q.evidence:
            ent = kb[ent_id]
            if normalize_name(ent.name) in self._seen_titles:
                continue
            plain, hinted = ent.name, f"{ent.name} {_KIND_HINT[ent.kind]}"
            if normalize_name(plain) not in issued:
                where = "The question names" if ent.name in q.text else "A retrieved passage names"
                return f"search[{plain}]", f"{where} {plain}; I look it up to follow the chain."
            if normalize_name(hinted) not in issued:
                return (
                    f"search[{hinted}]",
                    f"{plain} was not among the results; I search again with more context.",
                )
        missing = [
            kb[e].name for e in q.evidence if normalize_name(kb[e].name) not in self._seen_titles
        ]
        if missing:
            return "answer[unknown]", f"I could not retrieve {missing[0]}, so I cannot tell."
        ans = q.answers[0]
        return f"answer[{ans}]", f"The passages I retrieved give the answer: {ans}."

    def expert_action(self) -> str:
        """Search each entity of the hop chain in turn (names found in the question or in the
        retrieved passages), then answer; needs the built-in knowledge base."""
        return self._expert_plan()[0]

    def expert_thought(self) -> str:
        try:
            return self._expert_plan()[1]
        except NotImplementedError:
            return ""
