"""Retrievers: a local BM25 index (bm25s) over the built-in passages, and an HTTP client for a
retrieval server in the Search-R1 format.

Both answer ``search(query, k) -> list[Hit]`` and raise :class:`RetrievalError` (never anything
else) when a search cannot be served, so the environment can turn the failure into an
observation. Wire format of the HTTP server (Search-R1 ``retrieval_server.py``)::

    POST /retrieve  {"queries": ["..."], "topk": 3, "return_scores": true}
    -> {"result": [[{"document": {"id": "12", "contents": "Title\\ntext"}, "score": 7.1}, ...]]}

Without ``return_scores`` each inner list holds the ``document`` objects alone.
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from empg.envs.search.passages import Passage, default_passages

_TOKEN = re.compile(r"\w\w+")
# a small English stop-word list (bm25s uses a similar one); kept here so that indexing and
# querying always tokenise the same way, independent of library defaults
_STOPWORDS = frozenset(
    (
        "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is",
        "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there",
        "these", "they", "this", "to", "was", "will", "with", "who", "which", "what", "when",
        "where", "whose", "why", "how", "its", "has", "have", "had", "were", "from", "been",
    )
)  # fmt: skip


class RetrievalError(RuntimeError):
    """A search could not be served; the message is shown to the agent as an observation."""


@dataclass(frozen=True)
class Hit:
    """One retrieved document."""

    id: str
    title: str
    text: str
    score: float | None = None


class Retriever(Protocol):
    def search(self, query: str, k: int) -> list[Hit]: ...


def tokenize(text: str) -> list[str]:
    """Lowercase word tokens of 2+ characters, without stop words."""
    return [t for t in _TOKEN.findall(text.lower()) if t not in _STOPWORDS]


def split_contents(contents: str) -> tuple[str, str]:
    """Split Search-R1 ``contents`` into (title, text): the title is the first line."""
    title, _, text = contents.partition("\n")
    return title.strip().strip('"'), text.strip()


class BM25Retriever:
    """BM25 (bm25s, Lucene variant) over a list of passages.

    Scores come from ``BM25.get_scores``; passages are ranked by (score rounded to 6 decimals
    desc, passage index asc) before the top k are taken, so ties break the same way everywhere,
    at the k-th place too. Passages with score 0 are dropped.
    """

    def __init__(self, passages: Sequence[Passage]) -> None:
        try:
            import bm25s
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ImportError(
                "the search environment's local retriever needs bm25s; install it with "
                "`pip install 'empg[envs]'` (or `pip install bm25s`), or pass retriever_url=..."
            ) from exc
        self.passages = list(passages)
        if not self.passages:
            raise ValueError("BM25Retriever needs at least one passage")
        self._bm25 = bm25s.BM25()
        corpus = [tokenize(p.contents) or ["__empty__"] for p in self.passages]
        self._bm25.index(corpus, show_progress=False)
        self._vocab = {t for t in self._bm25.vocab_dict if t}
        self._lock = threading.Lock()

    def search(self, query: str, k: int) -> list[Hit]:
        tokens = [t for t in tokenize(query) if t in self._vocab]
        if not tokens:
            return []
        with self._lock:  # bm25s objects are not documented as thread-safe
            scores = np.asarray(self._bm25.get_scores(tokens), dtype=np.float64)
        # rank every passage with a positive score: highest (rounded) score first, the lower
        # passage index on ties, then cut to k. Rounding makes the order immune to last-bit
        # float differences between platforms; ranking before the cut keeps the tie-break
        # exact at the k-th place too (a partial selection would keep an arbitrary tied one)
        pos = np.flatnonzero(scores > 0)
        order = pos[np.lexsort((pos, -np.round(scores[pos], 6)))][: max(0, k)]
        return [
            Hit(self.passages[i].id, self.passages[i].title, self.passages[i].text,
                round(float(scores[i]), 4))
            for i in order.tolist()
        ]  # fmt: skip


@functools.lru_cache(maxsize=4)
def default_retriever(seed: int = 0) -> BM25Retriever:
    """The BM25 index over :func:`default_passages` for ``seed``, built once per process."""
    return BM25Retriever(default_passages(seed))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: the client talks to the URL it was given and to no other host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise RetrievalError(f"the retriever answered with a redirect ({code}) to {newurl!r}")


def _is_loopback(url: str) -> bool:
    host = (urllib.parse.urlsplit(url).hostname or "").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:  # a host name: "127.example.com" is not this machine
        try:  # IPv4 shorthand such as "127.1"
            ip = ipaddress.ip_address(socket.inet_aton(host))
        except OSError:
            return False
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


#: the longest title kept from a document (a server's "contents" without a newline is all title)
MAX_TITLE_CHARS = 200


class HttpRetriever:
    """Client of a Search-R1-style retrieval server (standard library only).

    Every failure (timeout, refused connection, HTTP error status, malformed JSON or a reply
    of the wrong shape) is raised as :class:`RetrievalError` with a one-line reason.
    ``timeout_s`` bounds every wait for the server (connecting, each read of the status line
    and headers), and reading the reply's body stops once ``timeout_s`` has passed since the
    request began (a server trickling a body cannot hold a rollout). Redirects are
    refused, and a server on this machine (``localhost``, ``127.x``, ``::1``) is reached
    without the ``http_proxy`` variables. At most ``k`` documents of a reply are kept.
    """

    def __init__(self, url: str, *, timeout_s: float = 5.0, max_response_bytes: int = 8 << 20):
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"retriever_url must start with http:// or https://, got {url!r}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        self.url = url
        self.timeout_s = float(timeout_s)
        self.max_response_bytes = max_response_bytes
        handlers: list[Any] = [_NoRedirect()]
        if _is_loopback(url):
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    def search(self, query: str, k: int) -> list[Hit]:
        payload = json.dumps({"queries": [query], "topk": k, "return_scores": True})
        req = urllib.request.Request(
            self.url,
            data=payload.encode("utf-8", "surrogatepass"),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        deadline = time.monotonic() + self.timeout_s
        try:
            with self._opener.open(req, timeout=self.timeout_s) as resp:
                raw = self._read(resp, deadline)
        except RetrievalError:
            raise
        except urllib.error.HTTPError as exc:
            raise RetrievalError(f"HTTP {exc.code} {exc.reason} from {self.url}") from None
        except TimeoutError:
            raise RetrievalError(f"timeout after {self.timeout_s:g} s") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise RetrievalError(f"timeout after {self.timeout_s:g} s") from None
            raise RetrievalError(f"cannot reach {self.url} ({reason})") from None
        except (OSError, ValueError, http.client.HTTPException) as exc:  # reset, bad status, ...
            raise RetrievalError(f"{type(exc).__name__} talking to {self.url} ({exc})") from None
        return _parse_response(raw)[: max(0, k)]

    def _read(self, resp: Any, deadline: float) -> bytes:
        """The reply's body, read in chunks until ``deadline`` (a server trickling bytes would
        otherwise hold the rollout for up to one socket timeout per byte)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            if time.monotonic() > deadline:
                raise RetrievalError(f"timeout after {self.timeout_s:g} s")
            chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_response_bytes:
                raise RetrievalError(f"response larger than {self.max_response_bytes} bytes")


def _parse_response(raw: bytes) -> list[Hit]:
    try:
        obj: Any = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # also too deep, too many digits
        raise RetrievalError("malformed JSON in the retriever's response") from None
    result = obj.get("result") if isinstance(obj, dict) else None
    if not isinstance(result, list) or len(result) != 1 or not isinstance(result[0], list):
        raise RetrievalError("unexpected response shape (want {'result': [[...]]})")
    hits = []
    for item in result[0]:
        score = None
        doc = item
        if isinstance(item, dict) and "document" in item:
            doc, score = item["document"], item.get("score")
        if not isinstance(doc, dict) or not isinstance(doc.get("contents"), str):
            raise RetrievalError("unexpected document in response (want 'contents': str)")
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
            raise RetrievalError(f"unexpected score {score!r:.40} in response")
        title, text = split_contents(doc["contents"])
        if len(title) > MAX_TITLE_CHARS:  # no newline: the title is the whole document
            title, text = title[:MAX_TITLE_CHARS], (title[MAX_TITLE_CHARS:] + " " + text).strip()
        hits.append(Hit(str(doc.get("id", "")), title, text, score))
    return hits
