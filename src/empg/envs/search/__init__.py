"""Deep-search multi-hop QA: generated knowledge base, BM25/HTTP retrieval, ``SearchEnv``.

``SearchEnv`` needs ``bm25s`` for its local retriever (``pip install 'empg[envs]'``); it is
imported only when a local index is first built.
"""

from empg.envs.search.env import SearchEnv
from empg.envs.search.kb import KnowledgeBase, build_kb, default_kb
from empg.envs.search.passages import Passage, default_passages, render_passages
from empg.envs.search.questions import (
    IN_DOMAIN_TYPES,
    OOD_TYPES,
    SPLITS,
    Question,
    default_questions,
    load_jsonl_questions,
    verify_question,
)
from empg.envs.search.retriever import BM25Retriever, Hit, HttpRetriever, RetrievalError
from empg.envs.search.scoring import exact_match, f1_score, normalize_answer
from empg.envs.search.server import RetrieverServer, serve_retriever

__all__ = [
    "IN_DOMAIN_TYPES",
    "OOD_TYPES",
    "SPLITS",
    "BM25Retriever",
    "Hit",
    "HttpRetriever",
    "KnowledgeBase",
    "Passage",
    "Question",
    "RetrievalError",
    "RetrieverServer",
    "SearchEnv",
    "build_kb",
    "default_kb",
    "default_passages",
    "default_questions",
    "exact_match",
    "f1_score",
    "load_jsonl_questions",
    "normalize_answer",
    "render_passages",
    "serve_retriever",
    "verify_question",
]
