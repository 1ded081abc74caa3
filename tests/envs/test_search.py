"""Tests of the deep-search environment (empg.envs.search)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("bm25s", reason="needs: pip install 'empg[envs]'")

from empg.envs import ResetNeeded, check_env, make
from empg.envs.check import HOSTILE_ACTIONS
from empg.envs.search import (
    IN_DOMAIN_TYPES,
    OOD_TYPES,
    SPLITS,
    HttpRetriever,
    RetrievalError,
    SearchEnv,
    build_kb,
    default_kb,
    default_passages,
    default_questions,
    exact_match,
    f1_score,
    normalize_answer,
    serve_retriever,
    verify_question,
)
from empg.envs.search.measure import expert_policy, random_policy, run_policy
from empg.envs.search.retriever import default_retriever
from empg.errors import ConfigError, InputError

KB_KINDS = {"country", "city", "person", "film", "company", "band", "river"}
REL_KINDS = {
    "capital": "city",
    "located_in": "country",
    "born_in": "city",
    "directed_by": "person",
    "founded_by": "person",
    "headquartered_in": "city",
    "lead_singer": "person",
    "formed_in": "city",
    "rises_in": "city",
}
EXPECTED_HOPS = {
    "bridge_2hop": {2},
    "comparison": {2},
    "compose_3hop": {3},
    "compose_4hop": {4},
    "capital_3hop": {3},
    "comparison_bridge": {4},
}


def play(env: SearchEnv, seed: int, policy) -> list[tuple[str, str]]:
    """(action, observation) pairs of one episode, the reset observation first."""
    obs, _ = env.reset(seed=seed)
    trace = [("", obs)]
    while True:
        action = policy(env)
        res = env.step(action)
        trace.append((action, res.observation))
        if res.terminated or res.truncated:
            return trace


# -- knowledge base and passages ----------------------------------------------------------------
def test_kb_entities_relations_and_passages():
    kb = default_kb(0)
    passages = default_passages(0)
    assert len(passages) == len(kb) == 5050
    assert {e.kind for e in kb.entities} == KB_KINDS
    names = [normalize_answer(e.name) for e in kb.entities]
    assert len(set(names)) == len(names), "entity names must be unique"
    for ent, p in zip(kb.entities, passages, strict=True):
        assert p.title == ent.name and p.contents.split("\n")[0] == ent.name
        n_sent = len(re.findall(r"\.(?:\s|$)", p.text))
        assert 1 <= n_sent <= 3, p.contents
        for rel, target in ent.rels.items():
            assert kb[target].kind == REL_KINDS[rel], (ent, rel)
            assert kb[target].name in p.text, "a passage states its relations by name"
    for country in kb.of_kind("country"):
        assert kb.follow(country.id, ("capital", "located_in")).id == country.id


def test_kb_is_deterministic_per_seed():
    a, b, c = build_kb(0), build_kb(0), build_kb(1)
    assert [(e.name, e.rels, e.attrs) for e in a.entities] == [
        (e.name, e.rels, e.attrs) for e in b.entities
    ]
    assert [e.name for e in a.entities] != [e.name for e in c.entities]


def test_every_passage_is_found_first_by_its_title():
    retriever = default_retriever(0)
    for p in default_passages(0):
        hits = retriever.search(p.title, 3)
        assert hits[0].id == p.id, (p.title, [h.title for h in hits])


def test_bm25_ties_break_by_passage_index_at_the_cut_too():
    """Equal passages score equally: the top k are the first k of them, not any k."""
    from empg.envs.search.passages import Passage
    from empg.envs.search.retriever import BM25Retriever

    passages = [Passage(f"p{i}", f"doc {i}", "a zebra grazes") for i in range(1000)]
    passages[500] = Passage("p500", "doc 500", "a zebra zebra grazes")  # the best one
    hits = BM25Retriever(passages).search("zebra", 3)
    assert [h.id for h in hits] == ["p500", "p0", "p1"]
    assert BM25Retriever(passages).search("zebra", 0) == []


def test_bm25_unknown_words_give_no_hits():
    assert default_retriever(0).search("zzqqxx the of", 3) == []


# -- questions ----------------------------------------------------------------------------------
@pytest.mark.parametrize("split", SPLITS)
def test_questions_have_unique_verified_answers(split):
    kb = default_kb(0)
    qs = default_questions(0, split)
    assert len(qs) == {"train": 3000, "test_id": 500, "test_ood": 500}[split]
    assert len({q.text for q in qs}) == len(qs)
    for q in qs:
        verify_question(kb, q)
        assert q.hops in EXPECTED_HOPS[q.task_type]
        assert 2 <= q.hops <= 4
    types = Counter(q.task_type for q in qs)
    want = OOD_TYPES if split == "test_ood" else IN_DOMAIN_TYPES
    assert set(types) == set(want)
    assert max(types.values()) - min(types.values()) <= 1  # balanced round robin


def test_splits_are_held_out():
    train = {q.text for q in default_questions(0, "train")}
    test_id = {q.text for q in default_questions(0, "test_id")}
    ood = default_questions(0, "test_ood")
    assert not train & test_id
    assert not train & {q.text for q in ood}
    # no training question uses the capital relation or starts from a river
    assert not any("capital" in t or " River " in t for t in train)


def test_verify_question_rejects_wrong_answers_and_ties():
    kb = default_kb(0)
    q = default_questions(0, "test_id")[0]
    with pytest.raises(ValueError, match="stored answer"):
        verify_question(kb, dataclasses.replace(q, answers=("Atlantis",)))
    cmp = next(x for x in default_questions(0, "train") if x.task_type == "comparison")
    with pytest.raises(ValueError, match="repeated start"):
        verify_question(kb, dataclasses.replace(cmp, starts=(cmp.starts[0], cmp.starts[0])))


# -- scoring ------------------------------------------------------------------------------------
def test_em_and_f1_hand_computed():
    assert normalize_answer("  The  Eiffel-Tower! ") == "eiffeltower"
    assert normalize_answer("\u201cAn apple\u201d") == "apple"
    assert exact_match("the Nybry.", ["Nybry"]) == 1.0
    assert exact_match("Nybry city", ["Nybry"]) == 0.0
    assert f1_score("the cat sat", ["a cat sat down"]) == pytest.approx(0.8)
    assert f1_score("cat cat", ["cat"]) == pytest.approx(2 / 3)
    assert f1_score("dog", ["cat", "dog house"]) == pytest.approx(2 / 3)
    assert f1_score("", ["cat"]) == 0.0
    # Unicode forms: a combining umlaut, full-width letters, a case-folded sharp s
    assert exact_match("Zu\u0308rich", ["Z\u00fcrich"]) == 1.0
    assert exact_match("\uff21\uff50\uff50\uff4c\uff45", ["Apple"]) == 1.0
    assert exact_match("STRASSE", ["stra\u00dfe"]) == 1.0
    # an answer that normalises to nothing matches nothing, not even such a gold answer
    assert exact_match("the", ["A"]) == 0.0 and exact_match(".", ["The The"]) == 0.0


def test_env_reward_is_em_and_info_f1():
    env = SearchEnv("test_id")
    env.reset(seed=0)
    gold = env.question.answers[0]
    res = env.step(f"answer[ the {gold.upper()}. ]")
    assert (res.reward, res.terminated, res.info["won"], res.info["f1"]) == (1.0, True, True, 1.0)
    assert res.info["answers"] == [gold]
    for empty in ("answer[.]", "answer[\u200b]", "answer[\u202e]", "search[?!]"):
        env.reset(seed=0)  # an answer or query without a letter or digit is no answer
        res = env.step(empty)
        assert res.info["action_type"] == "invalid" and not res.terminated, empty
    # a two-word answer plus one extra word: EM 0, F1 = 2*(2/3*1)/(2/3+1) = 0.8
    two_word = next(
        i for i, q in enumerate(env.questions) if len(normalize_answer(q.answers[0]).split()) == 2
    )
    env.reset(seed=two_word)
    res = env.step(f"answer[{env.question.answers[0]} indeed]")
    assert res.reward == 0.0 and res.terminated and not res.info["won"]
    assert res.info["f1"] == pytest.approx(0.8)


# -- contract, expert, random -------------------------------------------------------------------
@pytest.mark.parametrize("split", SPLITS)
def test_check_env(split):
    check_env(SearchEnv(split), seeds=(0, 1, 2))


def test_registered_and_info_keys():
    env = make("search", split="test_ood")
    obs, info = env.reset(seed=4)
    assert info["task"] in obs and info["task_type"] in OOD_TYPES
    assert "admissible_actions" not in info
    assert info["won"] is False and info["f1"] == 0.0 and info["split"] == "test_ood"


@pytest.mark.parametrize("split", ["test_id", "test_ood"])
def test_expert_follows_the_chain_and_succeeds(split):
    env = SearchEnv(split)
    m = run_policy(env, expert_policy, range(200))
    assert m.success_rate >= 0.95, m
    for seed in range(0, 200, 10):
        trace = play(env, seed, lambda e: e.expert_action())
        seen = trace[0][1]
        for action, obs in trace[1:]:
            verb, arg = re.fullmatch(r"(search|answer)\[(.*)\]", action).groups()
            # every query is a name already visible (question or retrieved passage)
            assert arg in seen, (action, seen)
            seen += "\n" + obs
        assert verb == "answer" and env.question.hops == len(trace) - 2


def test_expert_thought_is_informative():
    env = SearchEnv("test_ood")
    env.reset(seed=2)
    assert env.expert_thought().startswith("The question names")
    env.step(env.expert_action())
    assert "passage names" in env.expert_thought()


@pytest.mark.parametrize("split", ["test_id", "test_ood"])
def test_random_policy_rarely_succeeds(split):
    m = run_policy(SearchEnv(split), random_policy, range(300), rng_seed=1)
    # measured with rng_seed=1: 4/300 (1.3%) on test_id, 1/300 (0.3%) on test_ood; lucky guesses
    # are all comparison answers, which are spans of the question
    assert m.success_rate <= 0.05, m
    assert m.steps >= 300


def test_reset_seed_indexes_the_split_and_wraps():
    env = SearchEnv("test_id")
    n = len(env.questions)
    _, a = env.reset(seed=3)
    _, b = env.reset(seed=n + 3)
    assert a["task"] == b["task"] == env.questions[3].text
    _, c = env.reset()
    assert c["question_index"] == 4


def test_truncation_after_max_steps():
    env = SearchEnv("train", max_steps=10)
    env.reset(seed=0)
    for t in range(10):
        res = env.step("look")
        assert not res.terminated and res.truncated == (t == 9)
        assert res.observation.startswith("Invalid action")
    with pytest.raises(ResetNeeded):
        env.step("answer[x]")


def test_hostile_inputs_are_observations(tmp_path):
    env = SearchEnv("train")
    env.reset(seed=0)
    marker = tmp_path / "pwned"
    hostile = [
        *HOSTILE_ACTIONS,
        "search[" + "x" * (1 << 20) + "]",
        "answer[" + "y" * (1 << 20) + "]",
        "answer[]",
        "search[   ]",
        "search[\udcff\x00\u202e]",
        "<search>Nybry</search>",
        f"search[__import__('os').system('touch {marker}')]",
    ]
    for action in hostile:
        res = env.step(action)
        assert isinstance(res.observation, str) and len(res.observation) < 2000
        assert not res.terminated and res.reward == 0.0
        assert res.info["action_type"] in {"invalid", "search"}
        res.observation.encode("utf-8")  # printable: no lone surrogates echoed back
        if res.truncated:
            env.reset(seed=0)
    assert not marker.exists()
    env.reset(seed=0)
    res = env.step(" SEARCH [ " + default_kb(0)[0].name + " ] ")
    assert res.info["action_type"] == "search" and "Doc 1 (Title: " in res.observation


def test_config_errors_are_helpful():
    with pytest.raises(ConfigError, match="did you mean 'test_id'"):
        SearchEnv("test-id")
    with pytest.raises(ConfigError, match="top_k"):
        SearchEnv(top_k=0)


# -- determinism across processes ---------------------------------------------------------------
_DIGEST_SCRIPT = r"""
import hashlib, random
from empg.envs.search import SearchEnv, default_passages
from empg.envs.search.measure import expert_policy, random_policy
from empg.envs.search.retriever import default_retriever
h = hashlib.sha256()
for p in default_passages(0):
    h.update(p.contents.encode())
r = default_retriever(0)
rng = random.Random(7)
words = sorted({w for p in default_passages(0)[:300] for w in p.text.split()})
for _ in range(200):
    q = " ".join(rng.choice(words) for _ in range(3))
    h.update(repr([(x.id, x.score) for x in r.search(q, 3)]).encode())
for split in ("train", "test_id", "test_ood"):
    env = SearchEnv(split)
    for q in env.questions:
        h.update((q.text + "|" + q.answers[0]).encode())
    for pol in (expert_policy, random_policy):
        prng = random.Random(3)
        for seed in range(15):
            obs, _ = env.reset(seed=seed)
            while True:
                res = env.step(pol(env, obs, prng))
                obs = res.observation
                h.update((obs + repr(res.reward)).encode())
                if res.terminated or res.truncated:
                    break
print(h.hexdigest())
"""


def test_deterministic_across_processes():
    digests = []
    for hashseed in ("0", "12345"):
        envvars = {**os.environ, "PYTHONHASHSEED": hashseed}
        out = subprocess.run(
            [sys.executable, "-c", _DIGEST_SCRIPT],
            capture_output=True,
            text=True,
            env=envvars,
            timeout=120,
            check=True,
        )
        digests.append(out.stdout.strip())
    assert len(digests[0]) == 64 and digests[0] == digests[1]


# -- HTTP retriever and JSONL questions ---------------------------------------------------------
@pytest.fixture(scope="module")
def server():
    with serve_retriever() as srv:
        yield srv


def _post(url: str, body: bytes) -> tuple[int, object]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_server_speaks_search_r1_format(server):
    assert server.host == "127.0.0.1" and server.url.endswith("/retrieve")
    name = default_kb(0)[5].name
    status, obj = _post(
        server.url,
        json.dumps({"queries": [name, "zzqqxx"], "topk": 2, "return_scores": True}).encode(),
    )
    assert status == 200 and len(obj["result"]) == 2
    first = obj["result"][0][0]
    assert first["document"] == {"id": "5", "contents": default_passages(0)[5].contents}
    assert isinstance(first["score"], float) and obj["result"][1] == []
    status, obj = _post(server.url, json.dumps({"queries": [name], "topk": 1}).encode())
    assert status == 200 and obj["result"][0][0] == {
        "id": "5",
        "contents": f"{name}\n" + (default_passages(0)[5].text),
    }
    status, obj = _post(server.url, b"{not json")
    assert status == 400 and "error" in obj
    status, obj = _post(server.url, b"[" * 200_000)  # json.loads: RecursionError
    assert status == 400 and "nested" in obj["error"]
    status, obj = _post(server.url, json.dumps({"queries": "x", "topk": 3}).encode())
    assert status == 400 and "queries" in obj["error"]


def test_a_404_does_not_break_the_next_request_on_a_kept_alive_connection(server):
    import http.client

    body = json.dumps({"queries": [default_kb(0)[5].name], "topk": 1})
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        conn.request("POST", "/wrong", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 404 and "use POST /retrieve" in json.loads(resp.read())["error"]
        conn.request("POST", "/retrieve", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read())["result"][0][0]["id"] == "5"
    finally:
        conn.close()


def test_http_results_match_local_bm25(server):
    http = HttpRetriever(server.url)
    local = default_retriever(0)
    for q in ["Nybry founded", default_kb(0)[100].name, "film directed comedy 1953"]:
        assert [(h.id, h.title, h.text) for h in http.search(q, 3)] == [
            (h.id, h.title, h.text) for h in local.search(q, 3)
        ]


def test_jsonl_questions_with_http_retriever_end_to_end(server, tmp_path):
    kb = default_kb(0)
    qs = default_questions(0, "test_id")[:5]
    path = tmp_path / "qa.jsonl"
    lines = [json.dumps({"question": q.text, "answers": list(q.answers), "id": f"q{i}"})
             for i, q in enumerate(qs)]  # fmt: skip
    lines.insert(2, "")  # blank lines are skipped
    lines.append(json.dumps({"question": "Who?", "golden_answers": ["Nobody"], "type": "x"}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = SearchEnv(questions_path=str(path), retriever_url=server.url)
    assert len(env.questions) == 6 and env.questions[5].answers == ("Nobody",)
    for i, q in enumerate(qs):
        _, info = env.reset(seed=i)
        assert info["task"] == q.text and info["task_type"] == "jsonl" and info["split"] == "jsonl"
        assert info["question_id"] == f"q{i}"
        for ent_id in q.evidence:  # follow the chain by hand through the HTTP retriever
            res = env.step(f"search[{kb[ent_id].name}]")
            assert f"Doc 1 (Title: {kb[ent_id].name})" in res.observation
        res = env.step(f"answer[{q.answers[0]}]")
        assert res.reward == 1.0 and res.info["won"]
    with pytest.raises(NotImplementedError, match="questions_path"):
        env.expert_action()
    assert env.expert_thought() == ""
    check_env(env, seeds=(0, 5))


def test_builtin_questions_over_http_keep_the_expert(server):
    env = SearchEnv("test_ood", retriever_url=server.url)
    m = run_policy(env, expert_policy, range(20))
    assert m.successes == 20


def test_bad_jsonl_lines_name_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "a?", "answers": ["b"]}\n{"question": "c?", "answers": []}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: 'answers'"):
        SearchEnv(questions_path=path)
    path.write_text("[1, 2]\n")
    with pytest.raises(InputError, match="expected a JSON object"):
        SearchEnv(questions_path=path)
    with pytest.raises(InputError, match="not a file"):
        SearchEnv(questions_path=tmp_path / "missing.jsonl")


class _FaultyHandler(BaseHTTPRequestHandler):
    """A retrieval server gone wrong: HTTP 500, non-JSON, JSON of the wrong shape, non-HTTP."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/raw":  # not even an HTTP status line
            self.wfile.write(b"garbage\r\n\r\n")
            self.close_connection = True
            return
        if self.path == "/redirect":  # to another host, which must not be asked
            self.send_response(302)
            self.send_header("Location", "http://203.0.113.9/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/trickle":  # a valid reply, one byte every 0.1 s
            body = _reply([{"document": {"id": "1", "contents": "T\nx"}}])
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(len(body)):
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                time.sleep(0.1)
            return
        status, body = {
            "/500": (500, b'{"error": "boom"}'),
            "/garbage": (200, b"\x00\xffnot json at all"),
            "/shape": (200, b'{"result": {"a": 1}}'),
            "/doc": (200, b'{"result": [[{"document": {"id": 1}}]]}'),
            "/deep": (200, b"[" * 200_000),  # json.loads raises RecursionError, not a JSON error
            # an integer json.loads refuses to convert (a ValueError, not a JSONDecodeError)
            "/digits": (200, b'{"result": [[{"document": {"id": 1, "contents": "T\\nx"}, '
                        b'"score": 1' + b"0" * 5000 + b"}]]}"),
            # 500 documents for topk=3, the first of them 200,000 characters without a newline
            "/many": (200, _reply([{"document": {"id": str(i),
                                                 "contents": "word " * (40_000 if i < 3 else 2)}}
                                   for i in range(500)])),
        }[self.path]  # fmt: skip
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _reply(docs: list) -> bytes:
    return json.dumps({"result": [docs]}).encode()


@pytest.fixture(scope="module")
def faulty_url():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _FaultyHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/500", "Search failed: HTTP 500"),
        ("/garbage", "Search failed: malformed JSON"),
        ("/deep", "Search failed: malformed JSON"),
        ("/shape", "Search failed: unexpected response shape"),
        ("/doc", "Search failed: unexpected document"),
        ("/raw", "Search failed: BadStatusLine"),
        ("/digits", "Search failed: malformed JSON"),
        ("/redirect", "Search failed: the retriever answered with a redirect (302)"),
    ],
)
def test_server_errors_become_observations(faulty_url, path, message):
    env = SearchEnv("test_id", retriever_url=faulty_url + path)
    env.reset(seed=0)
    res = env.step("search[anything]")
    assert res.observation.startswith(message), res.observation
    assert not res.terminated and res.reward == 0.0 and "retrieval_error" in res.info
    assert env.step(f"answer[{env.question.answers[0]}]").reward == 1.0


def test_timeout_and_refused_connection_become_observations():
    with serve_retriever(delay_s=1.0) as slow:
        env = SearchEnv("test_id", retriever_url=slow.url, timeout_s=0.2)
        env.reset(seed=0)
        res = env.step("search[Nybry]")
    assert res.observation.startswith("Search failed: timeout after 0.2 s"), res.observation
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    env = SearchEnv("test_id", retriever_url=f"http://127.0.0.1:{port}/retrieve", timeout_s=1.0)
    env.reset(seed=0)
    res = env.step("search[Nybry]")
    assert res.observation.startswith("Search failed: cannot reach"), res.observation
    with pytest.raises(RetrievalError):
        HttpRetriever(f"http://127.0.0.1:{port}/retrieve").search("x", 3)


def test_a_reply_is_cut_to_top_k_short_titles_and_within_the_timeout(faulty_url):
    env = SearchEnv("test_id", retriever_url=faulty_url + "/many")
    env.reset(seed=0)
    res = env.step("search[anything]")
    assert res.info["retrieved_ids"] == ["0", "1", "2"]
    assert len(res.observation) < 8_000  # 3 documents of at most 2,000 characters, short titles
    hits = HttpRetriever(faulty_url + "/many").search("x", 3)
    assert len(hits) == 3 and all(len(h.title) <= 200 for h in hits)
    start = time.monotonic()
    with pytest.raises(RetrievalError, match=r"timeout after 0\.5 s"):
        HttpRetriever(faulty_url + "/trickle", timeout_s=0.5).search("x", 3)
    assert time.monotonic() - start < 2.0  # the reply alone would take about 5 s


def test_only_this_machines_addresses_count_as_loopback():
    from empg.envs.search.retriever import _is_loopback

    for url in ("http://127.0.0.1:8000/r", "http://127.1.2.3/r", "http://localhost/r",
                "http://[::1]:9/r", "http://127.1/r", "http://[::ffff:127.0.0.1]/r",
                "http://localhost./r"):  # fmt: skip
        assert _is_loopback(url), url
    for url in ("http://127.example.com/r", "http://10.0.0.1/r", "https://example.org/r"):
        assert not _is_loopback(url), url


def test_a_retriever_on_this_machine_is_reached_without_the_proxy(server, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    import urllib.request

    monkeypatch.setattr(urllib.request, "_opener", None)  # urlopen's opener, built on first use
    hits = HttpRetriever(server.url).search(default_kb(0)[0].name, 3)
    assert hits and hits[0].title == default_kb(0)[0].name


def test_names_in_finds_capitalised_names_and_skips_the_environments_own_words():
    from empg.envs.search.env import names_in

    text = (
        "Question: In which city was the lead singer of The Githath Engines born?\n"
        "The Githath Engines\nThe Githath Engines is a band formed in 1994. Its lead singer is "
        "Shoshyth Gadoukou, born in Kragiand."
    )
    assert names_in(text) == ["The Githath Engines", "1994", "Shoshyth Gadoukou", "Kragiand"]


@pytest.mark.parametrize("split", ["test_id", "test_ood"])
def test_the_experts_plain_searches_and_answers_are_among_the_action_candidates(split):
    """Every name the expert searches or answers was shown before it acts (in the question or a
    retrieved passage), so constrained decoding over the candidates can spell the expert's
    moves; only its hinted re-searches ("<name> born") are not candidates."""
    from empg.envs.search.env import _KIND_HINT

    env = make("search", split=split)
    checked = hinted = 0
    for seed in range(60):
        _, info = env.reset(seed=seed)
        assert all(a.startswith(("search[", "answer[")) for a in info["action_candidates"])
        while True:
            action = env.expert_action()
            if any(action.endswith(f" {h}]") for h in _KIND_HINT.values()):
                hinted += 1
            elif action != "answer[unknown]":
                assert action in info["action_candidates"], (seed, action)
                checked += 1
            res = env.step(action)
            info = res.info
            if res.terminated or res.truncated:
                break
    assert checked > 150 and hinted < checked / 10
