"""Several sparse fields in one collection (issue 9): BM25 beside a learned field encoded by a
local SPLADE-style model (the tiny random BERT of conftest), and dense. Every signal alone equals
a numpy reference over the same vectors; fusing three equals the fusion of those references;
the memory tier and PRF serve the learned field like BM25; writes keep every field's postings
exact; wrong input is refused where it is written."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from sparsesql.analysis import analyze
from sparsesql.encoders.sparse import load_sparse_encoder
from sparsesql.errors import CheckError, IngestError
from tests.test_ingest import assert_exact_stats

DIM = 4
TEXTS = [
    "sparse retrieval with term weight",
    "dense vector search over a postgres index",
    "hybrid fusion of sparse and dense rank",
    "query expansion for sparse search",
    "model weight and vector index",
    "postgres search index for hybrid query",
    "term rank fusion model",
    "dense retrieval model with query expansion",
]


@pytest.fixture
def three(db, name, tiny_splade):
    """BM25 + learned ('splade', encoded at ingest by the tiny model) + dense vectors supplied."""
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(len(TEXTS), DIM))
    coll = db.create_collection(name, {"body": "text"}, sparse=["bm25", "splade"], sparse_model=str(tiny_splade), dense="none", dim=DIM)
    coll.add([{"id": f"t{i}", "body": t, "vector": vectors[i].tolist()} for i, t in enumerate(TEXTS)])
    return name, vectors, load_sparse_encoder(tiny_splade)


def ordered(scores: dict[str, float]) -> list[tuple[str, float]]:
    """Best first, ties to the earlier document (the lower internal id), as the engine breaks them."""
    return sorted(scores.items(), key=lambda kv: (-kv[1], int(kv[0][1:])))


def bm25_reference(query: str, k1: float = 0.9, b: float = 0.4) -> dict[str, float]:
    docs = [Counter(analyze(t)) for t in TEXTS]
    avgdl = sum(sum(d.values()) for d in docs) / len(docs)
    scores = {}
    for i, d in enumerate(docs):
        s = 0.0
        for term, qtf in Counter(analyze(query)).items():
            if term in d:
                df = sum(term in x for x in docs)
                s += qtf * math.log(1 + (len(docs) - df + 0.5) / (df + 0.5)) * d[term] / (d[term] + k1 * (1 - b + b * sum(d.values()) / avgdl))
        if s > 0:
            scores[f"t{i}"] = s
    return scores


def learned_reference(encoder, query: dict[str, float], idf: bool = False) -> dict[str, float]:
    """Dot products with the documents' vectors as stored (float32); inference-free queries
    weight each token by Lucene's idf over the field's df."""
    docs = [{t: float(np.float32(w)) for t, w in v.items()} for v in encoder.encode(TEXTS)]
    scores = {}
    for i, d in enumerate(docs):
        s = 0.0
        for term, w in sorted(query.items()):
            if term in d:
                df = sum(term in x for x in docs)
                s += w * (math.log(1 + (len(docs) - df + 0.5) / (df + 0.5)) if idf else 1.0) * d[term]
        if s > 0:
            scores[f"t{i}"] = s
    return scores


def ranking(db, text: str, **params) -> list[tuple[str, float]]:
    return [(r.id, r.score) for r in db.query(text, **params)]


def approx(pairs: list[tuple[str, float]], rel: float = 1e-9) -> list:
    return [(d, pytest.approx(s, rel=rel)) for d, s in pairs]


def test_each_signal_alone_equals_its_numpy_reference(db, three):
    name, vectors, encoder = three
    query = "sparse query expansion"
    assert ranking(db, f"SELECT id, score FROM {name} SEARCH SPARSE(:q) LIMIT 8", q=query) == approx(ordered(bm25_reference(query)))
    full = learned_reference(encoder, encoder.encode([query])[0])
    got = ranking(db, f"SELECT id, score FROM {name} SEARCH SPARSE(:q, field => 'splade') LIMIT 8", q=query)
    assert got == approx(ordered(full)[:8], rel=1e-6)
    tokens = {t: float(n) for t, n in Counter(encoder.tokens(query)).items()}
    free = learned_reference(encoder, tokens, idf=True)
    got = ranking(db, f"SELECT id, score FROM {name} SEARCH SPARSE(:q, field => splade, mode => inference_free) LIMIT 8", q=query)
    assert got == approx(ordered(free)[:8], rel=1e-6)
    assert ordered(free) != ordered(full)  # the two modes are different queries
    v = vectors[2] + 0.5 * vectors[5]
    cosine = {f"t{i}": float(c) for i, c in enumerate(vectors @ v / np.linalg.norm(vectors, axis=1) / np.linalg.norm(v))}
    got = ranking(db, f"SELECT id, score FROM {name} SEARCH DENSE(:v) LIMIT 8", v=v.tolist())
    assert got == approx(ordered(cosine), rel=1e-5)
    mapping = {"sparse": 1.5, "fusion": 0.5}  # a {token: weight} query is used as given
    got = ranking(db, f"SELECT id, score FROM {name} SEARCH SPARSE(:q, field => 'splade') LIMIT 8", q=mapping)
    assert got == approx(ordered(learned_reference(encoder, mapping))[:8], rel=1e-6)


def test_three_way_fusion_of_bm25_learned_and_dense(db, three):
    name, vectors, encoder = three
    query = "hybrid dense search"
    v = vectors[1] - 0.3 * vectors[6]
    cosine = vectors @ v / np.linalg.norm(vectors, axis=1) / np.linalg.norm(v)
    lists = [
        ordered(bm25_reference(query)),
        ordered(learned_reference(encoder, encoder.encode([query])[0])),
        ordered({f"t{i}": float(c) for i, c in enumerate(cosine)}),
    ]
    signals = "SPARSE(:q), SPARSE(:q, field => 'splade'), DENSE(:v)"
    normalised = []
    for i, ranked in enumerate(lists):
        values = np.array([x for _, x in ranked])
        low = 0.0 if i < 2 else values.min()  # the sparse lists are exhaustive here: scaled from 0
        normalised.append({d: (x - low) / (values.max() - low) for d, x in ranked})
    weights = [0.3, 0.3, 0.4]
    linear = {doc: sum(w * n.get(doc, 0.0) for w, n in zip(weights, normalised)) for doc in {d for r in lists for d, _ in r}}
    got = ranking(db, f"SELECT id, score FROM {name} SEARCH HYBRID({signals}, fusion => linear(weights => [0.3, 0.3, 0.4], norm => minmax)) LIMIT 6", q=query, v=v.tolist())
    assert got == approx(ordered(linear)[:6], rel=1e-5)
    rrf: dict[str, float] = {}
    for ranked in lists:
        for rank, (doc, _) in enumerate(ranked, start=1):
            rrf[doc] = rrf.get(doc, 0.0) + 1 / (60 + rank)
    got = ranking(db, f"SELECT id, score FROM {name} SEARCH HYBRID({signals}, fusion => rrf()) LIMIT 6", q=query, v=v.tolist())
    assert got == approx(ordered(rrf)[:6], rel=1e-12)
    explained = db.explain(f"SELECT id FROM {name} SEARCH HYBRID({signals}, fusion => rrf()) LIMIT 6", q=query, v=v.tolist())
    assert "sparse_splade" in explained


def test_memory_tier_and_prf_serve_the_learned_field(db, three):
    name, _, encoder = three
    query = "sparse retrieval model"
    searches = [
        f"SELECT id, score FROM {name} SEARCH SPARSE(:q, field => 'splade') LIMIT 10",
        f"SELECT id, score FROM {name} SEARCH SPARSE(:q, field => 'splade', mode => 'inference_free') LIMIT 10",
        f"SELECT id, score FROM {name} SEARCH SPARSE(:q) LIMIT 10",
    ]
    in_sql = [ranking(db, s, q=query) for s in searches]
    db.query("SET sparse_tier = on")
    try:
        for search, expected in zip(searches, in_sql):
            assert ranking(db, search, q=query) == expected  # scores to the bit
            assert "memory tier not used" not in db.explain(search, analyze=True, q=query)
        db.collection(name).delete(["t0"])
        db.collection(name).add([{"id": "t9", "body": "sparse sparse model", "vector": [1.0, 0, 0, 0]}])
        tiered = [ranking(db, s, q=query) for s in searches]
    finally:
        db.query("SET sparse_tier = off")
    assert tiered == [ranking(db, s, q=query) for s in searches]
    assert all("t0" not in dict(r) and "t9" in dict(r) for r in tiered)
    plain = ranking(db, searches[0], q=query)
    unchanged = ranking(db, searches[0].replace("LIMIT", "WITH PRF(depth => 3, sparse => rm3(weight => 1.0)) LIMIT"), q=query)
    assert unchanged == approx(plain, rel=1e-12)  # weight 1.0 is the original query, scores included
    expanded = ranking(db, searches[0].replace("LIMIT", "WITH PRF(depth => 3, sparse => rm3(weight => 0.5, max_df => 1.0, min_docs => 1)) LIMIT"), q=query)
    assert expanded and expanded != plain


def test_writes_keep_every_fields_postings_exact(db, three):
    name, _, encoder = three
    coll = db.collection(name)
    assert_exact_stats(db, name, 0)
    assert_exact_stats(db, name, 1)
    coll.add([{"id": "t3", "body": "rank fusion rank", "vector": [0, 1.0, 0, 0]}, {"id": "t8", "body": "index", "vector": [0, 0, 1.0, 0]}])
    coll.delete(["t1", "t5"])
    assert_exact_stats(db, name, 0)
    assert_exact_stats(db, name, 1)
    stored = db.conn.execute(
        f'SELECT v.term, d.w FROM sparsesql."{name}__docs" AS x, unnest(x.term_ids__1, x.weights__1) AS d(t, w) '
        f'JOIN sparsesql."{name}__vocab__1" AS v ON v.term_id = d.t WHERE x.id = %s',
        ("t3",),
    ).fetchall()
    # Ingest encoded t3 in a batch with t8: matrix products of another shape sum float32s in
    # another order, a unit or two in the last place (1.5e-7 relative seen).
    expected = encoder.encode(["rank fusion rank"])[0]
    assert dict(stored) == pytest.approx({t: float(np.float32(w)) for t, w in expected.items()}, rel=1e-6)
    assert coll.add([{"id": "t3", "body": "rank fusion rank", "vector": [0, 1.0, 0, 0]}]).unchanged == 1


def test_pruned_learned_field_and_supplied_vectors_beyond_16k(db, name, tiny_splade):
    """sparse_top_k keeps each document's k heaviest model weights; a field without a model
    takes supplied vectors, with no cap on their size (pgvector's sparsevec stops at 16,000)."""
    coll = db.create_collection(
        name, {"body": "text"}, sparse=["splade", "bm25", "lsr"], sparse_model=[str(tiny_splade), "none"],
        sparse_top_k=5, dense="none", dim=2,
    )
    wide = {f"w{j}": 1.0 + j / 20000 for j in range(20000)}
    coll.add([
        {"id": "a", "body": TEXTS[0], "vector": [1, 0], "sparse": {"lsr": wide}},
        {"id": "b", "body": TEXTS[1], "vector": [0, 1], "sparse": {"lsr": {"w7": 30.0}}},
    ])
    counts = db.conn.execute(f'SELECT id, cardinality(term_ids), cardinality(term_ids__1), cardinality(term_ids__2) FROM sparsesql."{name}__docs" ORDER BY id').fetchall()
    assert counts[0][1] == len(analyze(TEXTS[0]))  # slot 0 is BM25 whatever the order declared
    assert [c[2] for c in counts] == [5, 5] and [c[3] for c in counts] == [20000, 1]
    got = ranking(db, f"SELECT id, score FROM {name} SEARCH SPARSE(:q, field => 'lsr') LIMIT 5", q={"w7": 2.0, "w19999": 1.0})
    assert got == approx([("b", 60.0), ("a", 2.0 * np.float32(1 + 7 / 20000) + np.float32(1 + 19999 / 20000))], rel=1e-6)
    first = ranking(db, f"SELECT id, score FROM {name} SEARCH SPARSE('sparse retrieval') LIMIT 5")  # the first declared: splade
    full = load_sparse_encoder(tiny_splade).encode(TEXTS[:2], top_k=5)
    q = load_sparse_encoder(tiny_splade).encode(["sparse retrieval"])[0]
    expected = {f"{d}": sum(w * float(np.float32(v[t])) for t, w in sorted(q.items()) if t in v) for d, v in zip("ab", full)}
    assert dict(first) == pytest.approx({d: s for d, s in expected.items() if s > 0}, rel=1e-6)
    shown = {r.name: r.sparse for r in db.query("SHOW COLLECTIONS")}
    assert shown[name] == "splade, bm25, lsr"
    db.drop_collection(name)
    left = db.conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'sparsesql' AND tablename LIKE %s", (f"{name}__%",)).fetchone()[0]
    assert left == 0


@pytest.mark.parametrize(
    "options, message",
    [
        ({"sparse": ["bm25", "bm25"]}, "names field 'bm25' twice"),
        ({"sparse": ["bm25", "Bad Name"]}, "invalid sparse field name"),
        ({"sparse": []}, "expects a name or a non-empty list"),
        ({"sparse": ["bm25"], "sparse_model": "/x"}, "needs a learned sparse field"),
        ({"sparse": ["bm25", "a", "b"], "sparse_model": "/x"}, "gives 1 model(s) for 2 learned field(s)"),
        ({"sparse": ["bm25", "splade"], "sparse_model": "/no/such/model"}, "for field 'splade': sparse model folder '/no/such/model' does not exist"),
        ({"sparse": ["bm25", "lsr"], "sparse_top_k": 10}, "no field has a sparse_model"),
        ({"sparse": [f"f{i}" for i in range(9)]}, "at most 8"),
    ],
)
def test_sparse_field_options_are_checked(db, name, options, message):
    with pytest.raises(CheckError, match=message.replace("(", r"\(").replace(")", r"\)")):
        db.create_collection(name, {"body": "text"}, dense="none", dim=2, **options)
    assert name not in {c.name for c in db.collections()}


def test_create_collection_in_the_dialect_with_a_model(db, name, tiny_splade):
    db.query(f"CREATE COLLECTION {name} (body text) WITH (sparse => ['bm25', 'splade'], sparse_model => :m, dense => 'none', dim => 2)", m=str(tiny_splade))
    info = db.collection(name).info
    assert [(f.name, f.kind, f.slot) for f in info.sparse_fields] == [("bm25", "bm25", 0), ("splade", "learned", 1)]
    assert info.sparse_field("splade").model == str(tiny_splade.resolve())
    text = f"CREATE COLLECTION {name}_x (body text) WITH (sparse => ['bm25', 'splade'], sparse_model => '/nowhere', dense => 'none', dim => 2)"
    column = text.index("sparse_model") + 1
    with pytest.raises(CheckError, match=rf"option sparse_model => for field 'splade'.*does not exist .* at line 1, column {column}\n"):
        db.query(text)


def test_wrong_queries_and_documents_are_refused(db, three):
    name, _, _ = three
    cases = [
        ("SPARSE(:q, field => 'colbert')", "has no sparse field 'colbert' (sparse fields: bm25, splade)"),
        ("SPARSE(:q, mode => 'full')", "'bm25' is a BM25 field"),
        ("SPARSE(:q, field => 'splade', mode => 'lazy')", "mode => expects one of full, inference_free"),
        ("SPARSE(:q, field => 3)", "field => expects a sparse field's name"),
        ("SPARSE(:q, depth => 3)", "unknown argument 'depth' for SPARSE"),
    ]
    for search, message in cases:
        with pytest.raises(CheckError, match=message.replace("(", r"\(").replace(")", r"\)")):
            db.query(f"SELECT id FROM {name} SEARCH {search} LIMIT 3", q="sparse")
    with pytest.raises(CheckError, match="a {term: weight} mapping is used as given"):
        db.query(f"SELECT id FROM {name} SEARCH SPARSE(:q, field => 'splade', mode => 'full') LIMIT 3", q={"sparse": 1.0})
    coll = db.collection(name)
    with pytest.raises(IngestError, match="'sparse' names field 'bm25'; collection .* has learned sparse fields splade"):
        coll.add([{"id": "n1", "body": "x", "vector": [1, 0, 0, 0], "sparse": {"bm25": {"x": 1.0}}}])
    with pytest.raises(IngestError, match=r"document 1 \(id 'n2'\), field 'splade': 'sparse' weight of 'x' is -1.0"):
        coll.add([{"id": "n2", "body": "x", "vector": [1, 0, 0, 0], "sparse": {"splade": {"x": -1.0}}}])
    assert db.collection(name).info.n_docs == len(TEXTS) and not db.query(f"SELECT id FROM {name} WHERE id IN ('n1', 'n2') LIMIT 5")


def test_autogenerate_options_recreate_the_same_fields(tiny_splade):
    """What autogenerate writes into a reversible drop_collection creates the same sparse fields."""
    from sparsesql.db.catalog import creation_options, settings_from_json, settings_json
    from sparsesql.db.schema import make_fields, make_settings

    fields = make_fields({"body": "text"})
    for options in (
        {"sparse": ["splade", "bm25", "lsr"], "sparse_model": [str(tiny_splade), "none"], "sparse_top_k": 7, "dense": "none", "dim": 2},
        {"sparse": "precomputed", "dense": "none", "dim": 2},
        {"dense": "none", "dim": 2},
    ):
        settings = make_settings(fields, options)
        assert settings_from_json(settings_json(settings)) == settings
        assert make_settings(fields, creation_options(settings)) == settings
    legacy = settings_from_json({"sparse": "precomputed", "dense": "none", "dim": 2, "k1": 0.9, "b": 0.4, "text_fields": ["body"]})
    assert creation_options(legacy)["sparse"] == "precomputed"


def test_learned_field_in_diversified_search_with_graph_hops(db, three):
    """DIVERSIFY over a fusion with the learned field: without hops the chosen documents keep the
    search's scores; with hops the graph's newcomers are rescored by every fused list, the
    learned field's included, and the selection still returns LIMIT distinct documents."""
    name, vectors, _ = three
    db.query(f"BUILD GRAPH ON {name} WITH (k => 3)")
    search = "SEARCH HYBRID(SPARSE(:q, field => 'splade'), DENSE(:v), fusion => rrf()) "
    params = {"q": "sparse search", "v": vectors[0].tolist()}
    plain = {r.id: r.score for r in db.query(f"SELECT id, score FROM {name} {search} LIMIT 8", **params)}
    chosen = db.query(f"SELECT id, score FROM {name} {search} DIVERSIFY BY COVERAGE(candidates => 4) LIMIT 3", **params)
    assert len(chosen) == 3 and all(r.score == plain[r.id] for r in chosen)
    widened = db.query(f"SELECT id, score FROM {name} {search} DIVERSIFY BY COVERAGE(candidates => 4, hops => 1) LIMIT 3", **params)
    assert len({r.id for r in widened}) == 3 and all(r.score > 0 for r in widened)
    explained = db.explain(f"SELECT id FROM {name} {search} DIVERSIFY BY COVERAGE(candidates => 4, hops => 1) LIMIT 3", analyze=True, **params)
    assert "sparse_splade" in explained and "diversify" in explained
