"""The dialect end to end on small hand-made collections: rankings equal references computed
outside the database, filters never truncate, values are always bound, errors point at tokens."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

import sparsesql
from sparsesql.analysis import analyze

DIM = 8
TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "a fox in the henhouse is a fox too many",
    "dogs and cats living together in harmony",
    "brown bread with butter and honey",
    "the lazy afternoon of a sleepy cat",
    "quick sort beats bubble sort on large arrays",
    "jumping foxes and sleeping dogs in the forest",
    "honey bees make honey from flower nectar",
]


@pytest.fixture
def small(db, name):
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(len(TEXTS), DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    coll = db.create_collection(name, {"body": "text", "year": "int", "score_x": "real"}, dense="none", dim=DIM)
    coll.add([
        {
            "id": f"t{i}",
            "body": text,
            "year": 2015 + i,
            "score_x": i / 2 if i != 3 else None,
            "metadata": {"venue": ["SIGIR", "ECIR", "CIKM"][i % 3], "pages": 10 + i},
            "vector": vectors[i].tolist(),
        }
        for i, text in enumerate(TEXTS)
    ])
    return name, vectors


def bm25_reference(query: str, k1: float = 0.9, b: float = 0.4) -> dict[str, float]:
    docs = [Counter(analyze(t)) for t in TEXTS]
    lengths = [sum(d.values()) for d in docs]
    avgdl = sum(lengths) / len(docs)
    scores = {}
    for i, d in enumerate(docs):
        s = 0.0
        for term, qtf in Counter(analyze(query)).items():
            df = sum(term in x for x in docs)
            if term in d:
                idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
                tf = d[term]
                s += qtf * idf * tf / (tf + k1 * (1 - b + b * lengths[i] / avgdl))
        if s > 0:
            scores[f"t{i}"] = s
    return scores


def test_sparse_scores_equal_lucene_bm25(db, small):
    name, _ = small
    rows = db.query(f"SELECT id, score FROM {name} SEARCH SPARSE(:q) LIMIT 10", q="lazy fox dogs")
    expected = bm25_reference("lazy fox dogs")
    assert {r.id for r in rows} == set(expected)
    for r in rows:
        assert r.score == pytest.approx(expected[r.id], rel=1e-6)
    assert [r.score for r in rows] == sorted((r.score for r in rows), reverse=True)


def test_sparse_matches_bm25s(db, small):
    bm25s = pytest.importorskip("bm25s")
    import Stemmer

    name, _ = small
    retriever = bm25s.BM25(method="lucene", k1=0.9, b=0.4)
    retriever.index(bm25s.tokenize(TEXTS, stopwords="en", stemmer=Stemmer.Stemmer("english"), show_progress=False), show_progress=False)
    query = "honey and quick brown bread"
    docs, scores = retriever.retrieve(
        bm25s.tokenize([query], stopwords="en", stemmer=Stemmer.Stemmer("english"), show_progress=False), k=4, show_progress=False
    )
    rows = db.query(f"SELECT id, score FROM {name} SEARCH SPARSE(:q) LIMIT 4", q=query)
    assert [r.score for r in rows] == pytest.approx(scores[0].tolist(), rel=1e-5)


def test_dense_equals_numpy_cosine(db, small):
    name, vectors = small
    q = np.random.default_rng(1).normal(size=DIM)
    rows = db.query(f"SELECT id, score FROM {name} SEARCH DENSE(:v) LIMIT 8", v=q.tolist())
    sims = vectors @ (q / np.linalg.norm(q))
    order = np.argsort(-sims)
    assert [r.id for r in rows] == [f"t{i}" for i in order]
    assert [r.score for r in rows] == pytest.approx(sims[order].tolist(), abs=1e-5)


def test_hybrid_rrf_and_linear_fuse_both_lists(db, small):
    name, vectors = small
    q = vectors[2] + 0.1 * vectors[5]
    sparse = db.query(f"SELECT id, score FROM {name} SEARCH SPARSE('quick sort') LIMIT 8")
    dense = db.query(f"SELECT id, score FROM {name} SEARCH DENSE(:v) LIMIT 8", v=q.tolist())
    rrf = db.query(
        f"SELECT id, score FROM {name} SEARCH HYBRID(SPARSE('quick sort'), DENSE(:v), fusion => rrf(k => 60)) LIMIT 3",
        v=q.tolist(),
    )
    expected: dict[str, float] = {}
    for ranked in (sparse, dense):
        for rank, r in enumerate(ranked, start=1):
            expected[r.id] = expected.get(r.id, 0) + 1 / (60 + rank)
    top = sorted(expected.items(), key=lambda kv: -kv[1])[:3]
    assert [(r.id, pytest.approx(r.score)) for r in rrf] == [(i, pytest.approx(s)) for i, s in top]
    alpha = db.query(
        f"SELECT id FROM {name} SEARCH HYBRID(SPARSE('quick sort'), DENSE(:v), fusion => linear(alpha => 1.0)) LIMIT 1",
        v=q.tolist(),
    )
    assert alpha[0].id == sparse[0].id
    dense_only = db.query(
        f"SELECT id FROM {name} SEARCH HYBRID(SPARSE('quick sort'), DENSE(:v), fusion => linear(alpha => 0.0, norm => zscore)) LIMIT 1",
        v=q.tolist(),
    )
    assert dense_only[0].id == dense[0].id


def test_three_way_hybrid_equals_a_numpy_fusion_of_exact_lists(db, small):
    """HYBRID over three signals (two sparse queries and a dense one), by min-max linear fusion
    with weights and by RRF, equals the fusion computed here from reference scores: BM25 by
    hand, cosine by numpy, ties to the earlier document (the lower internal id). The sparse lists
    hold fewer documents than the candidates asked for, so they are exhaustive: min-max scales
    them from 0, the score of every document they lack."""
    name, vectors = small
    v = vectors[6] + 0.3 * vectors[0]
    cosine = vectors @ (v / np.linalg.norm(v))
    lists = []
    for scores in (bm25_reference("lazy dog"), bm25_reference("honey bread"), {f"t{i}": float(c) for i, c in enumerate(cosine)}):
        lists.append(sorted(scores.items(), key=lambda kv: (-kv[1], int(kv[0][1:]))))
    signals = "SPARSE('lazy dog'), SPARSE('honey bread'), DENSE(:v)"

    def fused(expected: dict[str, float]) -> list[tuple[str, float]]:
        return sorted(expected.items(), key=lambda kv: (-kv[1], int(kv[0][1:])))

    weights = [0.3, 0.3, 0.4]
    linear: dict[str, float] = {}
    normalised = []
    for i, ranked in enumerate(lists):
        values = np.array([x for _, x in ranked])
        low = 0.0 if i < 2 else values.min()
        normalised.append({d: (x - low) / (values.max() - low) for d, x in ranked})
    for doc in {d for ranked in lists for d, _ in ranked}:
        linear[doc] = sum(w * n.get(doc, 0.0) for w, n in zip(weights, normalised))
    got = db.query(f"SELECT id, score FROM {name} SEARCH HYBRID({signals}, fusion => linear(weights => [0.3, 0.3, 0.4], norm => minmax)) LIMIT 8", v=v.tolist())
    # pgvector computes cosine from float32 vectors: scores agree to about 1e-8
    assert [(r.id, pytest.approx(r.score, rel=1e-6)) for r in got] == [(d, pytest.approx(x, rel=1e-6)) for d, x in fused(linear)[:8]]

    rrf: dict[str, float] = {}
    for ranked in lists:
        for rank, (doc, _) in enumerate(ranked, start=1):
            rrf[doc] = rrf.get(doc, 0.0) + 1 / (60 + rank)
    got = db.query(f"SELECT id, score FROM {name} SEARCH HYBRID({signals}, fusion => rrf()) LIMIT 8", v=v.tolist())
    assert [(r.id, pytest.approx(r.score, rel=1e-12)) for r in got] == [(d, pytest.approx(x, rel=1e-12)) for d, x in fused(rrf)[:8]]
    assert len({r.id for r in got} & set(dict(lists[0]))) and len({r.id for r in got} & set(dict(lists[1])))


@pytest.mark.parametrize(
    "where, expected",
    [
        ("year >= 2020", {"t5", "t6", "t7"}),
        ("year BETWEEN_NOT_SUPPORTED", None),
        ("metadata->>'venue' IN ('SIGIR', 'CIKM') AND year < 2018", {"t0", "t2"}),
        ("NOT (metadata->>'venue' = 'SIGIR') AND (metadata->>'pages')::int > 15", {"t7"}),
        ("metadata->>'pages' >= 16", {"t6", "t7"}),
        ("score_x IS NULL", {"t3"}),
        ("body LIKE '%honey%' OR id = 't0'", {"t0", "t3", "t7"}),
        ("body ILIKE 'THE%' AND year != 2015", {"t4"}),
        ("id IN ('t1', 't2')", {"t1", "t2"}),
    ],
)
def test_where_filters(db, small, where, expected):
    name, _ = small
    if expected is None:
        with pytest.raises(sparsesql.QuerySyntaxError):
            db.query(f"SELECT id FROM {name} WHERE {where}")
        return
    rows = db.query(f"SELECT id FROM {name} WHERE {where} LIMIT 100")
    assert {r.id for r in rows} == expected


def test_selective_filter_still_returns_limit_rows(db, name):
    n = 400
    rng = np.random.default_rng(3)
    coll = db.create_collection(name, {"body": "text", "shard": "int"}, dense="none", dim=DIM)
    coll.add([
        {"id": f"x{i}", "body": f"common words here {'rare' if i % 100 == 0 else 'filler'}", "shard": i % 100,
         "vector": rng.normal(size=DIM).tolist()}
        for i in range(n)
    ])
    q = rng.normal(size=DIM).tolist()
    for search in ("SPARSE('common words')", "DENSE(:v)", "HYBRID(SPARSE('common words'), DENSE(:v))",
                   "HYBRID(SPARSE('common'), DENSE(:v), fusion => rrf(), candidates => 4)"):
        rows = db.query(f"SELECT id, shard FROM {name} SEARCH {search} WHERE shard = 7 LIMIT 4", v=q)
        assert len(rows) == 4, search
        assert all(r.shard == 7 for r in rows)


def test_values_are_bound_never_spliced(db, small):
    name, _ = small
    statements = []
    evil = "x'); DROP TABLE sparsesql.collections; --"
    traced = sparsesql.connect(db.dsn, trace=lambda text, params: statements.append(text))
    rows = traced.query(
        f"SELECT id FROM {name} SEARCH HYBRID(SPARSE(:q), DENSE(:v)) WHERE metadata->>'venue' = :q OR body <> 'it''s' LIMIT 3",
        q=evil,
        v=[1.0] * DIM,
    )
    traced.close()
    assert len(rows) == 3
    assert statements and all(evil not in s and "it's" not in s and "venue" not in s for s in statements)
    assert db.query("SHOW COLLECTIONS")


def test_errors_point_at_the_token_and_run_nothing(db, small):
    name, _ = small
    statements = []
    traced = sparsesql.connect(db.dsn, trace=lambda text, params: statements.append(text))
    cases = [
        (f"SELECT id FROM {name}\nWHERE colour = 'red'", sparsesql.CheckError, 2, 7, "unknown field 'colour'"),
        ("SELECT id FROM nowhere SEARCH SPARSE('x')", sparsesql.CheckError, 1, 16, "collection 'nowhere' does not exist"),
        (f"SELECT id FROM {name} WHERE year = 'abc'", sparsesql.CheckError, 1, None, "cannot compare number with text"),
        (f"SELECT id FROM {name} SEARCH DENSE(:v)", sparsesql.ParameterError, 1, None, "parameter :v is not bound"),
        (f"SELECT id FROM {name} SEARCH HYBRID(SPARSE('a'), SPARSE('b'), fusion => rrf(q => 1))", sparsesql.CheckError, 1, None, "unknown argument 'q' for rrf"),
        (f"SELECT id FROM {name} LIMIT 100000", sparsesql.CheckError, 1, None, "exceeds the maximum"),
        (f"SELECT id FROM {name} SEARCH DENSE('text')", sparsesql.CheckError, 1, None, "no dense model"),
        (f"SELECT id FROM {name} SEARCH DENSE('[1..2, 0]')", sparsesql.CheckError, 1, None, "vector text holds something that is not a number"),
    ]
    for text, kind, line, column, message in cases:
        with pytest.raises(kind) as info:
            traced.query(text)
        assert message in str(info.value)
        assert info.value.line == line
        if column is not None:
            assert info.value.column == column
        assert "^" in str(info.value)
    for text, message in (("nul\x00", "NUL character"), ("\ud800", "not valid Unicode"), ("x" * 100_001, "too long")):
        with pytest.raises(sparsesql.CheckError, match=message):
            traced.query(f"SELECT id FROM {name} SEARCH SPARSE(:q) WHERE body <> :q", q=text)
    # A vector written as text (pgvector's form or an array's) is the same search as one bound.
    items = ", ".join(["0.5"] * DIM)
    found = [[r.id for r in db.query(f"SELECT id FROM {name} SEARCH DENSE({q}) LIMIT 3", v=[0.5] * DIM)]
             for q in (f"'[{items}]'", f"'{{{items}}}'", ":v")]
    assert found[0] == found[1] == found[2] and len(found[0]) == 3
    for bad in ([1.0] * (DIM - 1), [math.nan] * DIM):
        with pytest.raises(sparsesql.CheckError, match="dimensions|NaN"):
            traced.query(f"SELECT id FROM {name} SEARCH DENSE(:v)", v=bad)
    traced.close()
    assert statements == []


def test_limit_zero_and_explain(db, small):
    name, _ = small
    assert db.query(f"SELECT id FROM {name} SEARCH SPARSE('fox') LIMIT 0") == []
    plan = db.explain(f"SELECT id FROM {name} SEARCH HYBRID(SPARSE('fox'), DENSE(:v)) LIMIT 2", v=[1.0] * DIM)
    assert "candidates [sparse] (SQL)" in plan and "fuse (Python)" in plan and "time=" not in plan
    analyzed = db.query(f"EXPLAIN ANALYZE SELECT id FROM {name} SEARCH HYBRID(SPARSE('fox'), DENSE(:v)) LIMIT 2", v=[1.0] * DIM)
    text = "\n".join(r.plan for r in analyzed)
    assert "rows=" in text and "time=" in text and "SELECT d.doc_id" in text


def test_ddl_through_the_dialect(db, name):
    db.query(f"CREATE COLLECTION {name} (title text, year int) WITH (dense => 'none', dim => 3)")
    with pytest.raises(sparsesql.CheckError, match="already exists"):
        db.query(f"CREATE COLLECTION {name} (title text)")
    db.query(f"CREATE COLLECTION IF NOT EXISTS {name} (title text)")
    shown = {r.name: r for r in db.query("SHOW COLLECTIONS")}
    assert shown[name].dim == 3 and shown[name].fields == "title text, year integer"
    with pytest.raises(sparsesql.CheckError, match="unknown type 'blob'") as info:
        db.query("CREATE COLLECTION other (title blob)")
    assert info.value.column == 26
    db.query(f"DROP COLLECTION {name}")
    assert name not in {r.name for r in db.query("SHOW COLLECTIONS")}
    db.query(f"DROP COLLECTION IF EXISTS {name}")


def test_lost_connection_is_reported_and_the_next_query_works(db, small):
    name, _ = small
    pid = db.conn.info.backend_pid
    with sparsesql.connect(db.dsn) as other:
        other.conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(sparsesql.DatabaseError, match="connection"):
        db.query(f"SELECT id FROM {name} SEARCH SPARSE('fox')")
    assert db.query(f"SELECT id FROM {name} SEARCH SPARSE('fox') LIMIT 1")


def test_any_parameter_name_can_be_bound(db, small):
    name, _ = small
    rows = db.query(f"SELECT id FROM {name} SEARCH SPARSE(:text) WHERE year > :self LIMIT 1", text="honey", self=2016)
    assert [r.id for r in rows] == ["t7"]


def test_positional_parameters_bind_from_numbered_keys(db, small):
    """`$n`, as a PostgreSQL client writes parameters, binds params["n"]; messages spell it `$n`."""
    name, _ = small
    text = f"SELECT id, score FROM {name} SEARCH SPARSE($1) WHERE year > $2 LIMIT $10"
    rows = db.query(text, **{"1": "honey fox", "2": 2016, "10": 3})
    assert rows == db.query(f"SELECT id, score FROM {name} SEARCH SPARSE(:q) WHERE year > :y LIMIT :n", q="honey fox", y=2016, n=3)
    assert len(rows) == 3
    with pytest.raises(sparsesql.ParameterError) as info:
        db.query(text, **{"1": "honey", "10": 3, "x": 1})
    assert info.value.message == "parameter $2 is not bound (bound: :x, $1, $10)"
    assert info.value.column == text.index("$2") + 1
    with pytest.raises(sparsesql.ParameterError, match=r"parameter \$1 must be a scalar here, got list"):
        db.query(f"SELECT id FROM {name} WHERE year = $1", **{"1": [2016]})
    with pytest.raises(sparsesql.ParameterError, match=r"parameter :y is nan"):
        db.query(f"SELECT id FROM {name} WHERE year = :y", y=math.nan)


@pytest.mark.parametrize(
    "statement, message, column",
    [
        ("CREATE COLLECTION c1 (t text) WITH (dense => 'none', dim => 'abc')", "dim => expects an integer", 54),
        ("CREATE COLLECTION c1 (t text) WITH (dense => 'none', dim => 3.5)", "dim => expects an integer", 54),
        ("CREATE COLLECTION c1 (t text) WITH (k1 => true)", "k1 => expects a number", 37),
        ("CREATE COLLECTION c1 (t text) WITH (text_fields => 5)", "text_fields => expects a field name", 37),
        ("CREATE COLLECTION c1 (t text) WITH (b => 1.5)", "b => is out of range", 37),
        ("CREATE COLLECTION c1 (t text) WITH (colour => 'red')", "unknown option colour =>", 37),
        ("CREATE COLLECTION c1 (t text, t int)", "field 't' is declared twice", 31),
    ],
)
def test_collection_options_are_checked_where_written(db, statement, message, column):
    with pytest.raises(sparsesql.CheckError, match=message) as info:
        db.query(statement)
    assert info.value.column == column
    assert "c1" not in {c.name for c in db.collections()}


def test_bad_values_in_search_and_metadata(db, small):
    name, _ = small
    with pytest.raises(sparsesql.CheckError, match="all zeros"):
        db.query(f"SELECT id FROM {name} SEARCH DENSE(:v)", v=[0.0] * DIM)
    with pytest.raises(sparsesql.CheckError, match="weight >= 0"):
        db.query(f"SELECT id FROM {name} SEARCH SPARSE(:q)", q={"fox": -1.0})
    with pytest.raises(sparsesql.CheckError, match="IN list mixes"):
        db.query(f"SELECT id FROM {name} WHERE metadata->>'pages' IN (10, 'x')")
    import datetime

    coll = db.collection(name)
    with pytest.raises(sparsesql.IngestError, match="'metadata' is not JSON"):
        coll.add([{"id": "m", "body": "x", "vector": [1.0] * DIM, "metadata": {"when": datetime.date.today()}}])
    assert coll.delete("t1") == 1 and coll.get("t1") is None and coll.count() == len(TEXTS) - 1
    coll.add([{"id": "odd", "body": "odd one", "vector": [1.0] * DIM, "metadata": {"pages": "n/a", "open": "maybe"}}])
    rows = db.query(f"SELECT id FROM {name} WHERE metadata->>'pages' >= 16 OR metadata->>'open' = TRUE LIMIT 20")
    assert {r.id for r in rows} == {"t6", "t7"}


def test_the_checker_notes_each_where_operands_kind_for_the_compiler(db, name):
    """Every operand of a checked WHERE carries its kind, so the SQL compiler reads it instead of
    working it out again; a metadata key holding NUL is refused as any text is."""
    db.create_collection(name, {"title": "text", "year": "int"}, dense="none", dim=2)
    q = db.check(f"SELECT id FROM {name} WHERE year > :y AND metadata->>'venue' IN ('SIGIR', :v) AND title LIKE 'a%'", y=2000, v="ECIR")
    kinds = {type(op).__name__ + ":" + str(getattr(op, "name", getattr(op, "value", ""))): kind for op, kind in q.where_kinds.items()}
    assert kinds == {"Column:year": "number", "Param:y": "number", "Column:metadata": "jsonb", "JsonPath:": "jsontext",
                     "Literal:SIGIR": "text", "Param:v": "text", "Column:title": "text", "Literal:a%": "text"}
    with pytest.raises(sparsesql.CheckError, match="metadata key contains a NUL character"):
        db.query(f"SELECT id FROM {name} WHERE metadata->'\x00' IS NULL")
