"""A small HTTP retrieval server over the built-in passages, in the Search-R1 wire format.

    with serve_retriever() as server:              # 127.0.0.1, a free port
        env = SearchEnv(retriever_url=server.url)  # http://127.0.0.1:<port>/retrieve

It runs ``http.server.ThreadingHTTPServer`` in a daemon thread. It exists so that the HTTP path
of :class:`~empg.envs.search.env.SearchEnv` can be exercised end to end without a real corpus,
and as a reference for the format; it is not meant to face a network (bind it to 127.0.0.1).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from empg.envs.search.retriever import Retriever, default_retriever

MAX_BODY_BYTES = 1 << 20
MAX_TOPK = 100
MAX_QUERIES = 256


class RetrieverServer:
    """A running server; ``url`` is its ``/retrieve`` endpoint. Stop it with ``close()``."""

    def __init__(
        self, retriever: Retriever, host: str = "127.0.0.1", port: int = 0, delay_s: float = 0.0
    ) -> None:
        self.retriever = retriever
        self.delay_s = float(delay_s)
        handler = type("_Handler", (_Handler,), {"owner": self})
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self.host, self.port = self._httpd.server_address[:2]
        self.url = f"http://{self.host}:{self.port}/retrieve"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="empg-retriever", daemon=True
        )
        self._thread.start()
        self._closed = False

    def close(self) -> None:
        """Stop serving and release the port. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)

    def __enter__(self) -> RetrieverServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def answer(self, body: Any) -> dict[str, Any]:
        """The JSON reply to a request body; ValueError for a malformed request."""
        if not isinstance(body, dict):
            raise ValueError("request must be a JSON object")
        queries = body.get("queries")
        if (
            not isinstance(queries, list)
            or not queries
            or len(queries) > MAX_QUERIES
            or not all(isinstance(q, str) for q in queries)
        ):
            raise ValueError(f"'queries' must be a list of 1..{MAX_QUERIES} strings")
        topk = body.get("topk", 3)
        if isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= MAX_TOPK:
            raise ValueError(f"'topk' must be an int in 1..{MAX_TOPK}")
        with_scores = bool(body.get("return_scores", False))
        result = []
        for q in queries:
            docs = []
            for hit in self.retriever.search(q, topk):
                doc = {"id": hit.id, "contents": f"{hit.title}\n{hit.text}"}
                docs.append({"document": doc, "score": hit.score} if with_scores else doc)
            result.append(docs)
        return {"result": result}


class _Handler(BaseHTTPRequestHandler):
    owner: RetrieverServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _reply(self, status: int, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:  # tell the client, so it reconnects for its next request
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        if self.path.split("?")[0] != "/retrieve":
            # the body is left unread: close the connection, or it would be parsed as the
            # next request on a keep-alive connection
            self.close_connection = True
            self._reply(404, {"error": f"unknown path {self.path!r}; use POST /retrieve"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY_BYTES:
            self.close_connection = True
            self._reply(413 if length > 0 else 400, {"error": "bad or missing Content-Length"})
            return
        raw = self.rfile.read(length)
        if self.owner.delay_s > 0:
            time.sleep(self.owner.delay_s)
        try:
            reply = self.owner.answer(json.loads(raw.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            self._reply(400, {"error": "body is not valid UTF-8 JSON (or nested too deeply)"})
            return
        except ValueError as exc:
            self._reply(400, {"error": str(exc)})
            return
        self._reply(200, reply)


def serve_retriever(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    kb_seed: int = 0,
    retriever: Retriever | None = None,
    delay_s: float = 0.0,
) -> RetrieverServer:
    """Serve ``retriever`` (default: BM25 over the built-in passages of ``kb_seed``) over HTTP.

    ``port=0`` picks a free port (read it from ``server.port`` / ``server.url``). ``delay_s``
    delays every reply, to exercise client timeouts.
    """
    r: Retriever = retriever if retriever is not None else default_retriever(kb_seed)
    return RetrieverServer(r, host, port, delay_s)


__all__ = ["RetrieverServer", "serve_retriever"]
