"""BM25 retrieval over the catalogue (bm25s), built once per catalogue and cached.

Documents are a product's title, description, bullet points, attributes and option values.
Tokens are lower-case alphanumeric words minus a small stop-word list, with a plural ``s``
stripped, for documents and queries alike. Results are the positive-scoring products, best
first, ties broken by catalogue position, at most :data:`MAX_RESULTS` (WebShop shows 50).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict

import numpy as np

from empg.envs.shop.catalog import Catalog

MAX_RESULTS = 50
MAX_QUERY_TOKENS = 64
_TOKEN_RE = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    (
        "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "i", "im", "in", "is",
        "it", "looking", "me", "my", "need", "of", "on", "or", "please", "price", "than",
        "that", "the", "this", "to", "want", "with", "which", "would", "dollars", "lower",
        "under", "find", "buy", "get"
    )
)  # fmt: skip


def _stem(word: str) -> str:
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """Search tokens of ``text`` (ASCII letters/digits only; anything else separates words)."""
    return [_stem(w) for w in _TOKEN_RE.findall(text.lower()) if w not in STOPWORDS]


class SearchIndex:
    """A BM25 index over one catalogue, with a small LRU cache of query results."""

    def __init__(self, catalog: Catalog, cache_size: int = 4096) -> None:
        import bm25s  # lazy: optional dependency (extra "envs")

        logging.getLogger("bm25s").setLevel(logging.WARNING)
        self.catalog = catalog
        corpus = [tokenize(p.search_text()) for p in catalog.products]
        self._bm25 = bm25s.BM25()
        self._bm25.index(corpus, show_progress=False)
        self._vocab: dict[str, int] = self._bm25.vocab_dict
        self._cache: OrderedDict[tuple[str, ...], tuple[int, ...]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def search(self, query: str) -> tuple[int, ...]:
        """Catalogue positions of the best matches for ``query`` (possibly empty)."""
        tokens = tuple(tokenize(query)[:MAX_QUERY_TOKENS])
        with self._lock:
            hit = self._cache.get(tokens)
            if hit is not None:
                self._cache.move_to_end(tokens)
                return hit
        ids = sorted({self._vocab[t] for t in tokens if t in self._vocab})
        if not ids:
            result: tuple[int, ...] = ()
        else:
            scores = np.asarray(self._bm25.get_scores_from_ids(ids), dtype=np.float64)
            positive = np.flatnonzero(scores > 0)
            # best first; ties by catalogue position (lexsort: last key is primary)
            order = positive[np.lexsort((positive, -scores[positive]))]
            result = tuple(int(i) for i in order[:MAX_RESULTS])
        with self._lock:
            self._cache[tokens] = result
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return result


_INDEXES: dict[tuple[int, int], SearchIndex] = {}
_LOCK = threading.Lock()


def get_index(catalog: Catalog) -> SearchIndex:
    """The cached index of ``catalog`` (built on first use)."""
    key = (catalog.seed, len(catalog))
    with _LOCK:
        if key not in _INDEXES:
            _INDEXES[key] = SearchIndex(catalog)
        return _INDEXES[key]
