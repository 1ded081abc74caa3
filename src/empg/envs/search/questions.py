"""Multi-hop questions over the knowledge base, their splits, and questions read from JSONL.

Compositions (``task_type``), in the manner of the public multi-hop QA sets:

* in-domain (splits ``train`` and ``test_id``):
  ``bridge_2hop`` (HotpotQA bridge: "In which city was the director of X born?"),
  ``comparison`` (2Wiki: "Which company was founded first, A or B?"),
  ``compose_3hop`` (MuSiQue-style chain: "In which country was the founder of X born?").
* out-of-domain (split ``test_ood``), never used in training: ``compose_4hop`` and
  ``capital_3hop`` (both end on the ``capital`` relation, which no training question uses;
  ``capital_3hop`` also starts from rivers) and ``comparison_bridge`` (2Wiki "compositional
  comparison": "Which film has the director who was born first, A or B?").

``test_id`` holds questions that never occur in ``train`` (same compositions, other questions).
Every question carries its program (start entity, relation path, attribute), so its answer can be
recomputed from the knowledge base and checked for uniqueness (:func:`verify_question`).
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from empg.envs.search.kb import KnowledgeBase, default_kb
from empg.errors import InputError

IN_DOMAIN_TYPES = ("bridge_2hop", "comparison", "compose_3hop")
OOD_TYPES = ("compose_4hop", "capital_3hop", "comparison_bridge")
SPLITS = ("train", "test_id", "test_ood")
#: number of questions per split for the built-in knowledge base
SPLIT_SIZES = {"train": 3000, "test_id": 500, "test_ood": 500}


@dataclass(frozen=True)
class Template:
    """A question pattern: start kind, relation path, and the attribute asked (None = name).

    For comparisons ``pick`` is "min" or "max" of the attribute; the answer is the name of the
    START entity whose value wins.
    """

    task_type: str
    kind: str
    path: tuple[str, ...]
    attr: str | None
    text: str
    pick: str | None = None


_T = Template
TEMPLATES: tuple[Template, ...] = (
    _T("bridge_2hop", "film", ("directed_by", "born_in"), None,
       "In which city was the director of {0} born?"),
    _T("bridge_2hop", "film", ("directed_by",), "birth_year",
       "In what year was the director of {0} born?"),
    _T("bridge_2hop", "company", ("founded_by",), "birth_year",
       "In what year was the founder of {0} born?"),
    _T("bridge_2hop", "person", ("born_in", "located_in"), None,
       "In which country was {0} born?"),
    _T("bridge_2hop", "band", ("lead_singer", "born_in"), None,
       "In which city was the lead singer of {0} born?"),
    _T("bridge_2hop", "company", ("headquartered_in", "located_in"), None,
       "In which country is {0} headquartered?"),
    _T("comparison", "company", (), "founded_year", "Which company was founded first, {0} or {1}?",
       "min"),
    _T("comparison", "film", (), "year", "Which film was released earlier, {0} or {1}?", "min"),
    _T("comparison", "city", (), "population", "Which city has more inhabitants, {0} or {1}?",
       "max"),
    _T("comparison", "person", (), "birth_year", "Who was born first, {0} or {1}?", "min"),
    _T("comparison", "band", (), "founded_year",
       "Which band was formed more recently, {0} or {1}?", "max"),
    _T("compose_3hop", "film", ("directed_by", "born_in", "located_in"), None,
       "In which country was the director of {0} born?"),
    _T("compose_3hop", "company", ("founded_by", "born_in", "located_in"), None,
       "In which country was the founder of {0} born?"),
    _T("compose_3hop", "band", ("lead_singer", "born_in", "located_in"), None,
       "In which country was the lead singer of {0} born?"),
    _T("compose_3hop", "film", ("directed_by", "born_in"), "founded_year",
       "In what year was the birthplace of the director of {0} founded?"),
    _T("compose_4hop", "film", ("directed_by", "born_in", "located_in", "capital"), None,
       "What is the capital of the country where the director of {0} was born?"),
    _T("compose_4hop", "company", ("founded_by", "born_in", "located_in", "capital"), None,
       "What is the capital of the country where the founder of {0} was born?"),
    _T("compose_4hop", "band", ("lead_singer", "born_in", "located_in", "capital"), None,
       "What is the capital of the country where the lead singer of {0} was born?"),
    _T("capital_3hop", "river", ("rises_in", "located_in", "capital"), None,
       "What is the capital of the country in which the {0} rises?"),
    _T("capital_3hop", "company", ("headquartered_in", "located_in", "capital"), None,
       "What is the capital of the country where {0} is headquartered?"),
    _T("capital_3hop", "person", ("born_in", "located_in", "capital"), None,
       "What is the capital of the country where {0} was born?"),
    _T("comparison_bridge", "film", ("directed_by",), "birth_year",
       "Which film has the director who was born first, {0} or {1}?", "min"),
    _T("comparison_bridge", "company", ("founded_by",), "birth_year",
       "Which company's founder was born earlier, {0} or {1}?", "min"),
    _T("comparison_bridge", "band", ("lead_singer",), "birth_year",
       "Which band has the younger lead singer, {0} or {1}?", "max"),
)  # fmt: skip


@dataclass(frozen=True)
class Question:
    """One question. ``evidence`` lists, in hop order, the entity ids whose passages the answer
    needs (empty for questions read from a file); ``template`` indexes :data:`TEMPLATES`."""

    qid: str
    text: str
    answers: tuple[str, ...]
    task_type: str
    starts: tuple[int, ...] = ()
    template: int = -1
    evidence: tuple[int, ...] = ()

    @property
    def hops(self) -> int:
        return len(self.evidence)


def _chain_evidence(kb: KnowledgeBase, start: int, tpl: Template) -> list[int]:
    """Entity ids whose passages state the facts of the chain from ``start``."""
    ids = [start]
    ent = kb[start]
    for rel in tpl.path:
        ent = kb[ent.rels[rel]]
        ids.append(ent.id)
    # the last entity's name is stated by the previous passage; its own passage is only needed
    # when one of its attributes is asked
    return ids if tpl.attr is not None else ids[:-1]


def solve(kb: KnowledgeBase, template: Template, starts: tuple[int, ...]) -> str:
    """Answer of ``template`` applied to ``starts``, recomputed from the knowledge base.

    Raises ValueError when the question would be ambiguous (a comparison tie).
    """
    if template.pick is None:
        (start,) = starts
        end = kb.follow(start, template.path)
        return end.name if template.attr is None else str(end.attrs[template.attr])
    values = [int(kb.follow(s, template.path).attrs[str(template.attr)]) for s in starts]
    if len(set(values)) != len(values):
        raise ValueError(f"comparison tie between {[kb[s].name for s in starts]}: {values}")
    best = min(values) if template.pick == "min" else max(values)
    return kb[starts[values.index(best)]].name


def _make(kb: KnowledgeBase, split: str, i: int, rng: random.Random, types: tuple[str, ...]):
    task_type = types[i % len(types)]
    tpl_ids = [j for j, t in enumerate(TEMPLATES) if t.task_type == task_type]
    j = rng.choice(tpl_ids)
    tpl = TEMPLATES[j]
    pool = kb.of_kind(tpl.kind)
    starts = tuple(e.id for e in rng.sample(pool, 2 if tpl.pick else 1))
    try:
        answer = solve(kb, tpl, starts)
    except ValueError:
        return None
    evidence = [e for s in starts for e in _chain_evidence(kb, s, tpl)]
    text = tpl.text.format(*(kb[s].name for s in starts))
    return Question(f"{split}-{i}", text, (answer,), task_type, starts, j, tuple(evidence))


def generate_split(kb: KnowledgeBase, split: str) -> list[Question]:
    """The questions of ``split`` for ``kb`` (deterministic from the KB seed)."""
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}")
    if split == "test_ood":
        return _generate(kb, "test_ood", OOD_TYPES, SPLIT_SIZES["test_ood"], set())
    # one stream of distinct in-domain questions: the first ones are held out as test_id
    held = _generate(kb, "test_id", IN_DOMAIN_TYPES, SPLIT_SIZES["test_id"], set())
    if split == "test_id":
        return held
    return _generate(kb, "train", IN_DOMAIN_TYPES, SPLIT_SIZES["train"], {q.text for q in held})


def _generate(
    kb: KnowledgeBase, split: str, types: tuple[str, ...], n: int, exclude: set[str]
) -> list[Question]:
    rng = random.Random(f"empg-search-questions-{kb.seed}-{split}")
    seen = set(exclude)
    out: list[Question] = []
    while len(out) < n:
        q = _make(kb, split, len(out), rng, types)
        if q is not None and q.text not in seen:
            seen.add(q.text)
            out.append(q)
    return out


@functools.lru_cache(maxsize=12)
def default_questions(seed: int, split: str) -> tuple[Question, ...]:
    """Questions of ``split`` over :func:`default_kb` for ``seed``, generated once per process."""
    return tuple(generate_split(default_kb(seed), split))


def verify_question(kb: KnowledgeBase, q: Question) -> None:
    """Raise ValueError unless ``q`` has one well-defined answer in ``kb``.

    Checks: each named start entity occurs in the question and its name denotes exactly one
    entity; the stored answer equals the answer recomputed from the KB; comparisons have no tie
    and their options are distinct; the evidence passages are the chain's entities.
    """
    tpl = TEMPLATES[q.template]
    if tpl.task_type != q.task_type:
        raise ValueError(f"{q.qid}: task_type {q.task_type!r} != template's {tpl.task_type!r}")
    if len(set(q.starts)) != len(q.starts):
        raise ValueError(f"{q.qid}: repeated start entity")
    for s in q.starts:
        name = kb[s].name
        if name not in q.text:
            raise ValueError(f"{q.qid}: start entity {name!r} not named in the question")
        if len(kb.named(name)) != 1:
            raise ValueError(f"{q.qid}: name {name!r} denotes {len(kb.named(name))} entities")
    answer = solve(kb, tpl, q.starts)
    if q.answers != (answer,):
        raise ValueError(f"{q.qid}: stored answer {q.answers} != recomputed {answer!r}")
    # entity-valued answers must name exactly one entity
    if (tpl.attr is None or tpl.pick is not None) and len(kb.named(answer)) != 1:
        raise ValueError(f"{q.qid}: answer {answer!r} denotes {len(kb.named(answer))} entities")
    want = tuple(e for s in q.starts for e in _chain_evidence(kb, s, tpl))
    if q.evidence != want:
        raise ValueError(f"{q.qid}: evidence {q.evidence} != chain {want}")


def load_jsonl_questions(path: str | Path) -> list[Question]:
    """Read questions from a JSONL file.

    Each non-empty line is an object ``{"question": str, "answers": [str, ...]}`` with optional
    ``"id"`` and ``"type"``; ``"golden_answers"`` (FlashRAG / Search-R1 data) is accepted in place
    of ``"answers"``. A bad line raises :class:`InputError` naming the line.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"questions_path {str(p)!r} is not a file; expected a JSONL file")
    out: list[Question] = []
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            out.append(_parse_line(line, f"{p}:{lineno}", len(out)))
    if not out:
        raise InputError(f"questions_path {str(p)!r} holds no questions")
    return out


def _parse_line(line: str, where: str, index: int) -> Question:
    try:
        obj: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    text = obj.get("question")
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{where}: 'question' must be a non-empty string, got {text!r:.80}")
    answers = obj.get("answers", obj.get("golden_answers"))
    if isinstance(answers, str):
        answers = [answers]
    if (
        not isinstance(answers, list)
        or not answers
        or not all(isinstance(a, str) and a.strip() for a in answers)
    ):
        raise InputError(
            f"{where}: 'answers' must be a non-empty list of non-empty strings, got {answers!r:.80}"
        )
    qid = obj.get("id", f"line-{index}")
    qtype = obj.get("type", "jsonl")
    return Question(str(qid), text.strip(), tuple(answers), str(qtype))
