"""The HTTP API of `sparsesql serve --http-port`, with httpx against the running server process
(conftest's `server`): the same answers as `db.query`, NDJSON bulk loads that report bad lines
and lose nothing else, 401 / 403 as the roles' rights say, the injection corpus through JSON
parameters, Prometheus metrics that move with the queries, and bad requests that get clear
errors while the server keeps serving."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from sparsesql.eval import test_queries
from sparsesql.eval.beir import load_corpus
from sparsesql.eval.run import load_beir
from tests.conftest import Served, beir_dir
from tests.test_injection import PAYLOADS, attempts, fingerprint, world  # noqa: F401  (world is a fixture)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def client(server: Served, **auth) -> httpx.Client:
    if not auth:
        auth = {"auth": (server.user, server.password)}
    return httpx.Client(base_url=server.http, timeout=120, **auth)


def token_for(server: Served, dsn: str, role: str) -> str:
    sparsesql = str(Path(sys.executable).with_name("sparsesql"))
    out = subprocess.run([sparsesql, "--dsn", dsn, "token", "create", role], capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.fixture
def reader(db):
    role = "sparsesql_http_reader"
    if not db.conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
        db.conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'reader-pw'").format(sql.Identifier(role)))
    db.grant(role, "reader")
    return role


def test_search_answers_equal_db_query_on_cisi(server, session_db):
    folder = beir_dir("cisi")
    name = load_beir(session_db, folder)
    queries = [text for _, text in list(test_queries(folder).items())[:12]]
    searches = ["SPARSE(:q)", "DENSE(:q)", "HYBRID(SPARSE(:q), DENSE(:q))", "HYBRID(SPARSE(:q), DENSE(:q)) WITH PRF"]
    with client(server) as http:
        for search in searches:
            statement = f"SELECT id, score FROM {name} SEARCH {search} LIMIT 10"
            for text in queries:
                expected = [(r["id"], r["score"]) for r in session_db.query(statement, q=text)]
                answer = http.post("/query", json={"sql": statement, "params": {"q": text}})
                assert answer.status_code == 200, answer.text
                body = answer.json()
                assert body["columns"] == ["id", "score"] and body["row_count"] == len(expected)
                assert [r["id"] for r in body["rows"]] == [i for i, _ in expected], (search, text)
                # the server's tier scores dense from its own float32 vectors, the reference in
                # PostgreSQL: the same cosine up to float32 summation order
                assert [r["score"] for r in body["rows"]] == pytest.approx([s for _, s in expected], rel=1e-6, abs=1e-6)
                assert body["stages"] and all(s["ms"] >= 0 for s in body["stages"])
        analyzed = http.post("/query", json={"sql": f"SELECT id FROM {name} SEARCH SPARSE(:q) LIMIT 3", "params": {"q": queries[0]}, "analyze": True})
        assert "Plan on collection" in analyzed.json()["plan"]
        # pages: the answer's `next` is the last row's cursor, and AFTER it is the next page
        paged = f"SELECT id, cursor FROM {name} SEARCH HYBRID(SPARSE(:q), DENSE(:q)) LIMIT 5"
        first = http.post("/query", json={"sql": paged, "params": {"q": queries[0]}}).json()
        assert first["next"] == first["rows"][-1]["cursor"] and "next" not in analyzed.json()
        second = http.post("/query", json={"sql": paged + " AFTER :c", "params": {"q": queries[0], "c": first["next"]}}).json()
        offset = session_db.query(f"SELECT id FROM {name} SEARCH HYBRID(SPARSE(:q), DENSE(:q)) LIMIT 5 OFFSET 5", q=queries[0])
        assert [r["id"] for r in second["rows"]] == [r.id for r in offset]
        tampered = http.post("/query", json={"sql": paged + " AFTER :c", "params": {"q": queries[1], "c": first["next"]}})
        assert tampered.status_code == 400 and "this cursor comes from another search" in tampered.text


def test_an_ndjson_bulk_load_reports_the_bad_line_and_loses_nothing_else(server, session_db, name):
    folder = beir_dir("cisi")
    source = load_beir(session_db, folder)
    vectors = dict(session_db.conn.execute(
        f'SELECT d.id, e.embedding FROM sparsesql."{source}__docs" AS d JOIN sparsesql."{source}__dense" AS e USING (doc_id)'
    ).fetchall())
    docs = [{"id": d["id"], "title": d.get("title", ""), "text": d["text"], "vector": vectors[d["id"]].to_list()} for d in load_corpus(folder)]
    lines = [json.dumps(d) for d in docs]
    lines.insert(700, '{"id": "broken", "text": ')  # line 701
    lines.insert(900, json.dumps({"id": "x", "text": "t", "vector": [0.5] * 3}))  # line 901: the wrong size
    with client(server) as http:
        made = http.post("/query", json={"sql": f"CREATE COLLECTION {name} (title TEXT, text TEXT) WITH (dense => 'none', dim => 384)"})
        assert made.status_code == 200, made.text
        report = http.post(f"/collections/{name}/documents", content="\n".join(lines).encode()).json()
        assert [r["line"] for r in report["rejected"]] == [701, 901], report["rejected"]
        assert "not JSON" in report["rejected"][0]["error"] and "384" in report["rejected"][1]["error"]
        assert report["added"] == len(docs) and report["lines"] == len(lines)
        listed = {c["name"]: c for c in http.get("/collections").json()}
        assert listed[name]["documents"] == len(docs)
        one = http.get(f"/collections/{name}").json()
        assert one["documents"] == len(docs) and one["fields"] == {"title": "text", "text": "text"} and one["dim"] == 384
        assert http.get("/collections/no_such_collection").status_code == 404
        again = http.post(f"/collections/{name}/documents", content="\n".join(lines[:50]).encode()).json()
        assert again["unchanged"] == 50 and again["added"] == 0
        aborted = http.post(f"/collections/{name}/documents?on_error=abort", content=b'{"id": "z1", "text": "a", "vector": ' + json.dumps([0.1] * 384).encode() + b'}\nnot json\n')
        assert aborted.status_code == 400 and aborted.json()["added"] == 1 and aborted.json()["rejected"][0]["line"] == 2
        assert http.delete(f"/collections/{name}/documents/z1").json() == {"deleted": 1}
        assert http.delete(f"/collections/{name}/documents/z1").status_code == 404
        assert http.post("/collections/no_such_collection/documents", content=b"{}").status_code == 404
    assert session_db.collection(name).count() == len(docs)


def test_credentials_roles_and_tokens(server, db, dsn, name, reader):
    db.create_collection(name, {"title": "text"}, dense="none", dim=2).add([{"id": "a", "title": "sparse retrieval", "vector": [1, 0]}])
    search = {"sql": f"SELECT id FROM {name} SEARCH SPARSE('retrieval') LIMIT 3"}
    write = f"/collections/{name}/documents"
    doc = json.dumps({"id": "b", "title": "dense", "vector": [0, 1]})
    with httpx.Client(base_url=server.http, timeout=60) as anonymous:
        refused = anonymous.post("/query", json=search)
        assert refused.status_code == 401 and "credentials" in refused.json()["error"]["message"]
        assert "Basic" in refused.headers["www-authenticate"]
        assert anonymous.get("/collections").status_code == 401
        assert anonymous.post(write, content=doc).status_code == 401
        assert anonymous.get("/health").json()["status"] == "ok"
    with client(server, auth=(server.user, "wrong")) as wrong:
        assert wrong.post("/query", json=search).status_code == 401
    with client(server, headers={"Authorization": "Bearer ssq_not-a-token"}) as bad_token:
        assert bad_token.post("/query", json=search).status_code == 401
    for who in (client(server, auth=(reader, "reader-pw")), client(server, headers={"Authorization": f"Bearer {token_for(server, dsn, reader)}"})):
        with who:
            assert [r["id"] for r in who.post("/query", json=search).json()["rows"]] == ["a"]
            denied = who.post(write, content=doc)
            assert denied.status_code == 403, denied.text
            assert denied.json()["error"]["sqlstate"] == "42501"
            assert who.post("/query", json={"sql": f"DELETE FROM {name} WHERE id = 'a'"}).status_code == 403
            assert who.delete(f"/collections/{name}/documents/a").status_code == 403
            assert who.post("/query", json={"sql": "SELECT 1"}).status_code == 400  # plain SQL: not the dialect
    writer_token = token_for(server, dsn, server.user)
    with client(server, headers={"Authorization": f"Bearer {writer_token}"}) as writer:
        assert writer.post(write, content=doc).json()["added"] == 1
    assert db.collection(name).count() == 2


@pytest.mark.parametrize("payload", PAYLOADS)
def test_injection_through_json_params_changes_nothing(server, db, world, payload):  # noqa: F811
    before = fingerprint(db, world)
    with client(server) as http:
        for statement, params in attempts(world, payload):
            answer = http.post("/query", json={"sql": statement, "params": params})
            assert answer.status_code in (200, 400, 404), answer.text
    assert fingerprint(db, world) == before


def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(server, db, name):
    db.create_collection(name, {"title": "text"}, dense="none", dim=2).add([{"id": "a", "title": "words", "vector": [1, 0]}])
    with client(server) as http:
        syntax = http.post("/query", json={"sql": f"SELECT id FROM {name} SEARCH SPARSE('x') LIMT 3"})
        assert syntax.status_code == 400
        error = syntax.json()["error"]
        assert error["kind"] == "syntax" and error["line"] == 1 and error["column"] > 1 and "^" in error["caret"]
        assert http.post("/query", content=b"{not json").status_code == 400
        assert http.post("/query", json={"params": {}}).status_code == 400  # no sql
        unknown = http.post("/query", json={"sql": f"SELECT nope FROM {name}"})
        assert unknown.status_code == 400 and "nope" in unknown.json()["error"]["message"]
        missing = http.post("/query", json={"sql": "SELECT id FROM no_such_collection"})
        assert missing.status_code == 404
        wrong_size = http.post("/query", json={"sql": f"SELECT id FROM {name} SEARCH DENSE(:v) LIMIT 1", "params": {"v": [1, 2, 3]}})
        assert wrong_size.status_code == 400 and "dimension" in wrong_size.json()["error"]["message"]
        nan = http.post("/query", content=b'{"sql": "SELECT id FROM ' + name.encode() + b' SEARCH DENSE(:v) LIMIT 1", "params": {"v": [NaN, 1]}}')
        assert nan.status_code == 400
        huge = http.post("/query", content=b'{"sql": "' + b"x" * (5 * 2**20) + b'"}')
        assert huge.status_code == 413
        assert http.post(f"/collections/{name}/documents?on_error=maybe", content=b"").status_code == 400
        assert http.post("/query", json={"sql": f"SELECT id FROM {name}"}).json()["rows"] == [{"id": "a"}]
        like = http.post("/query", json={"sql": f"SELECT id FROM {name} SEARCH DENSE(LIKE :ids) LIMIT 3", "params": {"ids": ["gone"]}})
        assert like.status_code == 400 and "LIKE names document 'gone'" in like.json()["error"]["message"]
        assert http.post("/query", json={"sql": f"SELECT id FROM {name} SEARCH DENSE(LIKE 'a', include_liked => true) LIMIT 3"}).json()["rows"] == [{"id": "a"}]
    with psycopg.connect(server.dsn(), autocommit=True) as conn:  # the wire door too
        assert conn.execute(f"SELECT id FROM {name}").fetchall() == [("a",)]


def test_phrases_syntax_and_field_weights_through_http_and_the_wire(server, db, name):
    db.create_collection(name, {"title": "text", "body": "text"}, dense="none", dim=2).add([
        {"id": "a", "title": "query expansion", "body": "with feedback", "vector": [1, 0]},
        {"id": "b", "title": "expansion of the query", "body": "medical query expansion", "vector": [0, 1]},
        {"id": "c", "title": "feedback", "body": "query and expansion", "vector": [1, 1]}])
    phrase = f"SELECT id FROM {name} SEARCH SPARSE(:q, syntax => 'web', fields => :w) LIMIT 5"
    params = {"q": '"query expansion" -medical', "w": {"title": 2.0, "body": 1.0}}
    expected = [r.id for r in db.query(phrase, **params)]
    assert expected == ["a"]
    with client(server) as http:
        assert [r["id"] for r in http.post("/query", json={"sql": phrase, "params": params}).json()["rows"]] == expected
        unclosed = http.post("/query", json={"sql": f"SELECT id FROM {name} SEARCH SPARSE('query \"expansion', syntax => 'web') LIMIT 3"})
        error = unclosed.json()["error"]
        assert unclosed.status_code == 400 and "never closed" in error["message"]
        assert error["column"] == len(f"SELECT id FROM {name} SEARCH SPARSE('query ") + 1
        plan = http.post("/query", json={"sql": "EXPLAIN " + phrase, "params": params}).json()["rows"]
        assert any("syntax: [sparse] requires" in str(r) for r in plan) and any("BM25F over title x 2, body x 1" in str(r) for r in plan)
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        got = conn.execute(f"SELECT id FROM {name} SEARCH SPARSE('\"query expansion\" -medical', syntax => 'web', "
                           "fields => (title => 2, body => 1)) LIMIT 5").fetchall()
        assert [r[0] for r in got] == expected


def test_metrics_parse_as_prometheus_text_and_move_with_queries(server, db, name):
    from prometheus_client.parser import text_string_to_metric_families

    db.create_collection(name, {"title": "text"}, dense="none", dim=2).add([{"id": "a", "title": "words", "vector": [1, 0]}])

    def scrape() -> dict:
        text = httpx.get(f"{server.http}/metrics", timeout=30).text
        out = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    before = scrape()
    with client(server) as http:
        for _ in range(3):
            assert http.post("/query", json={"sql": f"SELECT id FROM {name} SEARCH SPARSE('words') LIMIT 1"}).status_code == 200
        assert http.post("/query", json={"sql": "SELEC"}).status_code == 400
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f"SELECT id FROM {name} SEARCH SPARSE('words') LIMIT 1").fetchall()
    after = scrape()

    def moved(key) -> float:
        return after.get(key, 0) - before.get(key, 0)

    assert moved(("sparsesql_queries_total", (("door", "http"), ("kind", "search")))) == 3
    assert moved(("sparsesql_queries_total", (("door", "wire"), ("kind", "search")))) == 1
    assert moved(("sparsesql_errors_total", (("door", "http"), ("kind", "syntax")))) == 1
    assert moved(("sparsesql_stage_seconds_count", (("stage", "candidates"),))) >= 4
    assert moved(("sparsesql_query_seconds_count", (("door", "http"),))) == 3
    assert ("sparsesql_sessions", (("door", "wire"), ("state", "open"))) in after
    assert any(name == "sparsesql_tier_memory_bytes" for name, _ in after)


def test_the_openapi_document_and_its_browsable_docs(server):
    spec = httpx.get(f"{server.http}/openapi.json", timeout=30).json()
    assert {"/query", "/collections", "/collections/{name}/documents", "/collections/{name}/documents/{doc_id}", "/health", "/metrics"} <= set(spec["paths"])
    page = httpx.get(f"{server.http}/docs", timeout=30)
    assert page.status_code == 200 and "/swagger/swagger-ui-bundle.js" in page.text
    assert httpx.get(f"{server.http}/swagger/swagger-ui-bundle.js", timeout=30).status_code == 200


def test_a_client_that_hangs_up_mid_load_leaves_whole_batches(server, db, name):
    """Lines stream in; the client drops the connection after 1,200 of a promised body: the two
    batches of 500 that were complete are written, the 200 after them are not, and the server
    keeps serving."""
    import base64
    import socket
    import time

    db.create_collection(name, {"body": "text"}, dense="none", dim=2)
    auth = base64.b64encode(f"{server.user}:{server.password}".encode()).decode()
    body = "".join(json.dumps({"id": f"x{i}", "body": "words", "vector": [1, 0]}) + "\n" for i in range(1200)).encode()
    with socket.create_connection((server.host, server.http_port)) as raw:
        raw.sendall(f"POST /collections/{name}/documents HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n"
                    f"Content-Length: {10 * len(body)}\r\n\r\n".encode() + body)
        deadline = time.monotonic() + 30
        while db.collection(name).count() < 1000 and time.monotonic() < deadline:
            time.sleep(0.1)
    time.sleep(1.0)
    assert db.collection(name).count() == 1000
    assert db.conn.execute("SELECT n_docs FROM sparsesql.collections WHERE name = %s", (name,)).fetchone() == (1000,)
    with client(server) as http:
        assert http.get("/health").json()["status"] == "ok"
