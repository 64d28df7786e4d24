"""Per-field weights, `SPARSE(:q, fields => (title => 2.0, body => 1.0))` (issue 35): BM25F scores
equal a reference written here from Robertson and Zaragoza's formula, on two fields small enough
to check by hand; with one field and weight 1 they are today's BM25; the statistics stay exact
under writes and deletes; the errors say what is wrong."""

from __future__ import annotations

import math

import psycopg
import pytest

import sparsesql
from sparsesql.analysis import analyze
from sparsesql.errors import CheckError

K1, B = 0.9, 0.4
DOCS = [
    {"id": "a", "title": "sparse retrieval", "body": "dense vectors and a graph", "vector": [1, 0]},
    {"id": "b", "title": "graph search", "body": "sparse sparse sparse retrieval with postings", "vector": [0, 1]},
    {"id": "c", "title": "", "body": "retrieval of retrieval", "vector": [1, 1]},
    {"id": "d", "title": "postings", "body": "", "vector": [1, 2]},
]


def bm25f(docs: list[dict], query: str, weights: dict[str, float]) -> dict[str, float]:
    """The formula, field by field: tf~ = sum_f w_f * tf_f / (1 - b + b * len_f / avglen_f),
    score = sum_t idf(t) * tf~ / (k1 + tf~), idf = ln(1 + (N - df + 0.5) / (df + 0.5)), df over
    whole documents, avglen_f over all N documents."""
    n = len(docs)
    terms = {d["id"]: {f: analyze(d[f]) for f in ("title", "body")} for d in docs}
    avg = {f: sum(len(t[f]) for t in terms.values()) / n for f in ("title", "body")}
    scores = {}
    for d in docs:
        total, hit = 0.0, False
        for term, count in ((t, analyze(query).count(t)) for t in dict.fromkeys(analyze(query))):
            df = sum(1 for t in terms.values() if term in t["title"] or term in t["body"])
            if df == 0:
                continue
            tf = sum(w * terms[d["id"]][f].count(term) / (1 - B + B * len(terms[d["id"]][f]) / avg[f])
                     for f, w in weights.items() if terms[d["id"]][f].count(term))
            hit = hit or any(term in terms[d["id"]][f] for f in ("title", "body"))
            total += count * math.log(1 + (n - df + 0.5) / (df + 0.5)) * tf / (K1 + tf)
        if hit:
            scores[d["id"]] = total
    return scores


@pytest.fixture()
def db(dsn, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSESQL_HOME", str(tmp_path))
    with sparsesql.connect(dsn) as db:
        db.drop_collection("bm25f_docs", if_exists=True)
        db.create_collection("bm25f_docs", {"title": "text", "body": "text"}, dense="none", dim=2).add(DOCS)
        yield db
        db.drop_collection("bm25f_docs", if_exists=True)


def scores(db, query: str, fields: str) -> dict[str, float]:
    return {r.id: r.score for r in db.query(f"SELECT id, score FROM bm25f_docs SEARCH SPARSE(:q, fields => {fields}) LIMIT 100", q=query)}


def test_scores_equal_the_formula_by_hand(db):
    # "sparse": df 2 of N 4, idf = ln(1 + 2.5 / 2.5) = ln 2. Title lengths 2, 2, 0, 1 (avg 1.25); body 3, 5, 2, 0 (avg 2.5).
    # a: title tf 1, len 2: 1 / (0.6 + 0.4 * 2 / 1.25) = 0.8064516; weight 2: tf~ = 1.6129032, score ln2 * tf~ / (0.9 + tf~).
    idf = math.log(2)
    title = 2 * 1 / (0.6 + 0.4 * 2 / 1.25)
    assert scores(db, "sparse", "(title => 2, body => 1)")["a"] == pytest.approx(idf * title / (K1 + title), rel=1e-12)
    # b: body tf 3, len 5: 3 / (0.6 + 0.4 * 5 / 2.5) = 2.1428571, weight 1.
    body = 3 / (0.6 + 0.4 * 5 / 2.5)
    assert scores(db, "sparse", "(title => 2, body => 1)")["b"] == pytest.approx(idf * body / (K1 + body), rel=1e-12)


@pytest.mark.parametrize("query", ["sparse retrieval", "graph postings", "retrieval retrieval dense", "nothing here"])
@pytest.mark.parametrize("weights", [{"title": 2.0, "body": 1.0}, {"title": 1.0, "body": 1.0}, {"title": 0.0, "body": 3.5}, {"title": 1.0}])
def test_scores_equal_the_reference(db, query, weights):
    written = "(" + ", ".join(f"{f} => {w}" for f, w in weights.items()) + ")"
    expected = {i: s for i, s in bm25f(DOCS, query, {"title": 0.0, "body": 0.0, **weights}).items() if s > 0}
    got = scores(db, query, written)
    assert got == pytest.approx(expected, rel=1e-12)
    assert list(got) == sorted(got, key=lambda i: (-got[i], i))
    bound = {r.id: r.score for r in db.query("SELECT id, score FROM bm25f_docs SEARCH SPARSE(:q, fields => :w) LIMIT 100", q=query, w=weights)}
    assert bound == got
    terms = {}
    for term in analyze(query):
        terms[term] = terms.get(term, 0.0) + 1.0
    if terms:  # the same query as a {term: weight} mapping
        mapped = {r.id: r.score for r in db.query(f"SELECT id, score FROM bm25f_docs SEARCH SPARSE(:m, fields => {written}) LIMIT 100", m=terms)}
        assert mapped == pytest.approx(got, rel=1e-12)


def test_one_field_with_weight_one_is_todays_bm25(dsn, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSESQL_HOME", str(tmp_path))
    with sparsesql.connect(dsn) as db:
        db.drop_collection("bm25f_one", if_exists=True)
        db.create_collection("bm25f_one", {"body": "text"}, dense="none", dim=2).add([{k: d[k] for k in ("id", "body", "vector")} for d in DOCS])
        try:
            for query in ["sparse retrieval", "graph postings", "retrieval of retrieval"]:
                plain = db.query("SELECT id, score FROM bm25f_one SEARCH SPARSE(:q) LIMIT 100", q=query)
                weighed = db.query("SELECT id, score FROM bm25f_one SEARCH SPARSE(:q, fields => (body => 1)) LIMIT 100", q=query)
                assert [r.id for r in weighed] == [r.id for r in plain]
                assert [r.score for r in weighed] == pytest.approx([r.score for r in plain], rel=1e-12)
            with sparsesql.connect(dsn, sparse_tier=False) as plain:  # a weight w folded into k1 (k1 / w) by the tier
                for query in ["sparse retrieval", "graph postings", "retrieval of retrieval"]:
                    statement = "SELECT id, score FROM bm25f_one SEARCH SPARSE(:q, fields => (body => 2.5)) LIMIT 100"
                    got, expected = db.query(statement, q=query), plain.query(statement, q=query)
                    assert [r.id for r in got] == [r.id for r in expected]
                    assert [r.score for r in got] == pytest.approx([r.score for r in expected], rel=1e-12)
                assert "memory tier not used" not in db.explain(statement, analyze=True, q="sparse")
        finally:
            db.drop_collection("bm25f_one", if_exists=True)


def test_field_lengths_stay_exact_under_updates_and_deletes(db, dsn):
    papers = db.collection("bm25f_docs")
    papers.add([{"id": "e", "title": "new graph title here", "body": "short", "vector": [2, 1]},
                {"id": "a", "title": "sparse", "body": "changed body of a", "vector": [1, 0]}])
    db.query("DELETE FROM bm25f_docs WHERE id = 'b'")
    with psycopg.connect(dsn) as conn:
        kept = conn.execute("SELECT field_len FROM sparsesql.collections WHERE name = 'bm25f_docs'").fetchone()[0]
        summed = conn.execute("SELECT ARRAY[sum(field_lens[1]), sum(field_lens[2])] FROM sparsesql.bm25f_docs__docs").fetchone()[0]
    assert kept == summed == [sum(len(analyze(t)) for t in ("sparse", "", "postings", "new graph title here")),
                              sum(len(analyze(t)) for t in ("changed body of a", "retrieval of retrieval", "", "short"))]
    now = [{**d, "title": t, "body": b} for d, t, b in [(DOCS[0], "sparse", "changed body of a"), (DOCS[2], "", DOCS[2]["body"]),
                                                       (DOCS[3], "postings", ""), ({"id": "e"}, "new graph title here", "short")]]
    expected = {i: s for i, s in bm25f(now, "sparse graph", {"title": 2.0, "body": 1.0}).items() if s > 0}
    assert scores(db, "sparse graph", "(title => 2, body => 1)") == pytest.approx(expected, rel=1e-12)


def test_the_memory_tier_equals_sql_and_follows_writes(db, dsn, tmp_path, monkeypatch):
    """BM25F from the tier's field counts (two fields) and from its postings (one field's weight
    folded into k1) equals the SQL's, before and after documents are added, changed and deleted."""
    queries = ["sparse retrieval", "graph postings", "retrieval retrieval dense", "sparse graph with"]
    statements = ["SELECT id, score FROM bm25f_docs SEARCH SPARSE(:q, fields => (title => 2.5, body => 1)) WHERE id <> 'zz' LIMIT 5",
                  "SELECT id, score FROM bm25f_docs SEARCH SPARSE(:q, fields => (body => 3)) LIMIT 5",
                  "SELECT id, score FROM bm25f_docs SEARCH HYBRID(SPARSE(:q, fields => (title => 1, body => 0.5)), DENSE(:v)) LIMIT 5"]
    monkeypatch.setenv("SPARSESQL_HOME", str(tmp_path))
    with sparsesql.connect(dsn, sparse_tier=True, dense_tier=False) as memory, sparsesql.connect(dsn, sparse_tier=False, dense_tier=False) as plain:
        for round_ in range(2):
            for statement in statements:
                for query in queries:
                    got = memory.query(statement, q=query, v=[1, 0])
                    expected = plain.query(statement, q=query, v=[1, 0])
                    assert [r.id for r in got] == [r.id for r in expected], (statement, query)
                    assert [r.score for r in got] == pytest.approx([r.score for r in expected], rel=1e-12)
            text = memory.explain(statements[0], analyze=True, q="sparse retrieval")
            assert "fields: [sparse] BM25F over title x 2.5, body x 1" in text and "BM25F from field counts" in text, text
            assert "memory tier not used" not in text, text
            plain.collection("bm25f_docs").add([{"id": "e", "title": "sparse graph", "body": "retrieval with sparse postings", "vector": [2, 1]},
                                                {"id": "a", "title": "dense", "body": "sparse sparse graph", "vector": [1, 0]}])
            plain.query("DELETE FROM bm25f_docs WHERE id = 'c'")


@pytest.mark.parametrize("fields,message", [
    ("(abstract => 1)", "'abstract', which is not a text field"),
    ("(title => -1)", "a weight is a number from 0 to 1000"),
    ("(title => 'x')", "a weight is a number"),
    ("(title => 0)", "needs a field with a weight above 0"),
    ("(title => 1, title => 2)", "names 'title' twice"),
    ("[1, 2]", "expects (field => weight, ...)"),
])
def test_errors(db, fields, message):
    with pytest.raises(CheckError, match=message.replace("(", r"\(").replace(")", r"\)")):
        db.query(f"SELECT id FROM bm25f_docs SEARCH SPARSE('sparse', fields => {fields}) LIMIT 3")
    with pytest.raises(CheckError, match="syntax => applies to query text"):
        db.query("SELECT id FROM bm25f_docs SEARCH SPARSE(:m, syntax => 'web') LIMIT 3", m={"spars": 1.0})
    with pytest.raises(CheckError, match="WITH PRF expands"):
        db.query("SELECT id FROM bm25f_docs SEARCH SPARSE('sparse', fields => (title => 1)) WITH PRF LIMIT 3")
