"""WITH PRF: each variant does what its paper says, on a tiny hand-made collection, and PRF
costs at most one extra round trip per side."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

import sparsesql
from sparsesql.analysis import analyze

DIM = 6
TEXTS = [
    "solar panels convert sunlight into electricity",
    "photovoltaic cells and solar inverters",
    "wind turbines generate electricity from wind",
    "inverters for photovoltaic systems and batteries",
    "battery storage for solar and wind farms",
    "gardening tips for sunny balconies",
    "electric cars and their batteries",
    "sunlight and vitamin d for health",
]


@pytest.fixture
def tiny(db, name):
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(len(TEXTS), DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    coll = db.create_collection(name, {"body": "text"}, dense="none", dim=DIM)
    coll.add([{"id": f"e{i}", "body": t, "vector": vectors[i].tolist()} for i, t in enumerate(TEXTS)])
    return name, vectors


def ranking(db, statement: str, **params) -> list[tuple[str, float]]:
    return [(r.id, r.score) for r in db.query(statement, **params)]


def test_rocchio_with_beta_zero_is_the_plain_dense_query(db, tiny):
    name, vectors = tiny
    v = vectors[0] + 0.3 * vectors[4]
    plain = ranking(db, f"SELECT id, score FROM {name} SEARCH DENSE(:v) LIMIT 8", v=v.tolist())
    prf = ranking(db, f"SELECT id, score FROM {name} SEARCH DENSE(:v) WITH PRF(depth => 3, dense => rocchio(alpha => 1, beta => 0)) LIMIT 8", v=v.tolist())
    assert [i for i, _ in prf] == [i for i, _ in plain]
    assert [s for _, s in prf] == pytest.approx([s for _, s in plain], abs=1e-6)


def test_vector_prf_moves_the_query_to_the_feedback_centroid(db, tiny):
    name, vectors = tiny
    q = vectors[0] / np.linalg.norm(vectors[0])
    first = [i for i, _ in ranking(db, f"SELECT id, score FROM {name} SEARCH DENSE(:v) LIMIT 8", v=q.tolist())]
    fb = vectors[[int(i[1:]) for i in first[:3]]]
    for clause, moved in (
        ("average", q + fb.sum(axis=0)),
        ("rocchio(alpha => 1, beta => 2)", q + 2 * fb.mean(axis=0)),
    ):
        got = ranking(db, f"SELECT id, score FROM {name} SEARCH DENSE(:v) WITH PRF(depth => 3, dense => {clause}) LIMIT 8", v=q.tolist())
        sims = vectors @ (moved / np.linalg.norm(moved))
        order = np.argsort(-sims)
        assert [i for i, _ in got] == [f"e{j}" for j in order]
        assert [s for _, s in got] == pytest.approx(sims[order].tolist(), abs=1e-5)


def test_rm3_with_weight_one_is_the_plain_sparse_query(db, tiny):
    name, _ = tiny
    plain = ranking(db, f"SELECT id, score FROM {name} SEARCH SPARSE('solar electricity') LIMIT 8")
    prf = ranking(db, f"SELECT id, score FROM {name} SEARCH SPARSE('solar electricity') WITH PRF(depth => 2, sparse => rm3(weight => 1.0)) LIMIT 8")
    assert prf == [(i, pytest.approx(s)) for i, s in plain]


def rm3_reference(query: str, first: list[tuple[str, float]], depth: int, terms: int, weight: float, max_df: float, min_docs: int) -> dict[str, float]:
    """BM25 scores of every document under the RM3-expanded query, computed from the texts."""
    docs = [Counter(analyze(t)) for t in TEXTS]
    n, avgdl = len(docs), sum(sum(d.values()) for d in docs) / len(docs)
    df = Counter(t for d in docs for t in d)
    idf = {t: math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in df}
    top = first[:depth]
    total = sum(s for _, s in top)
    rel: Counter = Counter()
    seen: Counter = Counter()
    for doc_id, score in top:
        d = docs[int(doc_id[1:])]
        for t, tf in d.items():
            rel[t] += score / total * tf / sum(d.values())
            seen[t] += 1
    kept = [t for t in rel if df[t] <= max_df * n and seen[t] >= min_docs]
    kept = sorted(kept, key=lambda t: -rel[t])[:terms]
    original = {t: w for t, w in Counter(analyze(query)).items() if t in df}
    mass = sum(w * idf[t] for t, w in original.items())
    spread = sum(rel[t] * idf[t] for t in kept)
    q = Counter({t: weight * w for t, w in original.items()})
    for t in kept:
        q[t] += (1 - weight) * mass * rel[t] / spread
    scores = {}
    for i, d in enumerate(docs):
        length = sum(d.values())
        s = sum(w * idf[t] * d[t] / (d[t] + 0.9 * (1 - 0.4 + 0.4 * length / avgdl)) for t, w in q.items() if t in d)
        if any(t in d for t in q):
            scores[f"e{i}"] = s
    return scores


@pytest.mark.parametrize("max_df, min_docs", [(1.0, 1), (1.0, 2), (0.3, 1)])
def test_rm3_scores_equal_a_reference_computed_from_the_texts(db, tiny, max_df, min_docs):
    """Expansion terms are the feedback documents' heaviest terms by P(w|d) P(d|q), skipping
    those in more than max_df of the collection or fewer than min_docs feedback documents; the
    expansion takes (1 - weight) of the query's idf mass."""
    name, _ = tiny
    query = "solar electricity"
    first = ranking(db, f"SELECT id, score FROM {name} SEARCH SPARSE(:q) LIMIT 8", q=query)
    clause = f"rm3(terms => 50, weight => 0.6, max_df => {max_df}, min_docs => {min_docs}, selective => false)"
    got = dict(ranking(db, f"SELECT id, score FROM {name} SEARCH SPARSE(:q) WITH PRF(depth => 3, sparse => {clause}) LIMIT 8", q=query))
    expected = rm3_reference(query, first, 3, 50, 0.6, max_df, min_docs)
    assert got == pytest.approx(expected, rel=1e-9)


def test_selective_rm3_scales_the_expansion_by_the_first_pass_entropy(db, tiny):
    name, _ = tiny
    query = "solar electricity"
    first = ranking(db, f"SELECT id, score FROM {name} SEARCH SPARSE(:q) LIMIT 8", q=query)
    p = np.array([s for _, s in first[:3]])
    p = p / p.sum()
    h = -(p * np.log(p)).sum() / np.log(3)
    weight = 1 - (1 - 0.6) * h * h
    clause = "rm3(terms => 50, weight => 0.6, max_df => 1, min_docs => 1, selective => true)"
    got = dict(ranking(db, f"SELECT id, score FROM {name} SEARCH SPARSE(:q) WITH PRF(depth => 3, sparse => {clause}) LIMIT 8", q=query))
    assert got == pytest.approx(rm3_reference(query, first, 3, 50, weight, 1.0, 1), rel=1e-9)
    assert 0.6 < weight < 1
    # EXPLAIN ANALYZE says what the predictor decided for this query, and from what
    plan = "\n".join(r.plan for r in db.query(f"EXPLAIN ANALYZE SELECT id FROM {name} SEARCH SPARSE(:q) WITH PRF(depth => 3, sparse => {clause}) LIMIT 8", q=query))
    assert f"selective: the query keeps {weight:.3f} of its weight against the expansion (weight => 0.6; flatness {h:.3f} of its top 3 first-pass scores)" in plan
    lone = "\n".join(r.plan for r in db.query(f"EXPLAIN ANALYZE SELECT id FROM {name} SEARCH SPARSE('electricity') WITH PRF(depth => 1, sparse => {clause}) LIMIT 8"))
    assert "keeps 1.000 of its weight against the expansion (weight => 0.6; fewer than two first-pass matches)" in lone


@pytest.mark.parametrize(
    "scores, expected",
    [([2.0, 2.0, 2.0, 2.0], 0.5), ([5.0], 1.0), ([], 1.0), ([1e6, 1e-6, 1e-6], pytest.approx(1.0, abs=1e-3))],
)
def test_selective_weight(scores, expected):
    from sparsesql.retrieval.prf import selective_weight

    assert selective_weight(scores, 0.5) == expected


def test_rm3_filters_change_the_expansion(db, tiny):
    """The filters are not idle on this collection: each setting gives different scores."""
    name, _ = tiny
    results = set()
    for max_df, min_docs in ((1.0, 1), (1.0, 2), (0.3, 1)):
        clause = f"rm3(terms => 50, weight => 0.6, max_df => {max_df}, min_docs => {min_docs}, selective => false)"
        rows = ranking(db, f"SELECT id, score FROM {name} SEARCH SPARSE('solar electricity') WITH PRF(depth => 3, sparse => {clause}) LIMIT 8")
        results.add(tuple((i, round(s, 9)) for i, s in rows))
    assert len(results) == 3


def _stage_names(db, statement: str, **params) -> list[str]:
    lines = db.explain(statement, **params).splitlines()[1:]
    return [line.split(":")[0].split(". ", 1)[1] for line in lines if line[:1].isdigit()]


@pytest.mark.parametrize(
    "interpolate, stages",
    [
        ("after", ["candidates [sparse] (SQL)", "candidates [dense] (SQL)", "prf [sparse_prf] (SQL)", "prf [dense_prf] (SQL)", "fuse (Python)", "fetch (SQL)"]),
        ("before", ["candidates [sparse] (SQL)", "candidates [dense] (SQL)", "fuse (Python)", "prf [sparse_prf] (SQL)", "prf [dense_prf] (SQL)", "fuse (Python)", "fetch (SQL)"]),
        ("both", ["candidates [sparse] (SQL)", "candidates [dense] (SQL)", "fuse (Python)", "prf [sparse_prf] (SQL)", "prf [dense_prf] (SQL)", "fuse (Python)", "fuse (Python)", "fetch (SQL)"]),
    ],
)
def test_interpolation_runs_stages_in_the_stated_order(db, tiny, interpolate, stages):
    name, vectors = tiny
    statement = f"SELECT id FROM {name} SEARCH HYBRID(SPARSE('solar'), DENSE(:v)) WITH PRF(depth => 2, interpolate => {interpolate}) LIMIT 3"
    assert _stage_names(db, statement, v=vectors[1].tolist()) == stages
    plan = db.explain(statement, v=vectors[1].tolist())
    source = "first" if interpolate != "after" else "sparse"
    assert f"from the top 2 of {source}" in plan


def test_interpolation_results_follow_the_definition(db, tiny):
    """`before` takes feedback from the fused first pass, `after` from each side's own list."""
    name, vectors = tiny
    v = vectors[5].tolist()
    fused = [i for i, _ in ranking(db, f"SELECT id, score FROM {name} SEARCH HYBRID(SPARSE('solar'), DENSE(:v), fusion => rrf()) LIMIT 2", v=v)]
    own = [i for i, _ in ranking(db, f"SELECT id, score FROM {name} SEARCH DENSE(:v) LIMIT 2", v=v)]
    assert set(fused) != set(own)  # the hand-made data separates the two feedback sets

    for how, fb_ids in (("before", fused), ("after", own)):
        traced: list[str] = []
        with sparsesql.connect(db.dsn, trace=lambda text, params, t=traced: t.append((text, params))) as tdb:
            tdb.query(
                f"SELECT id FROM {name} SEARCH HYBRID(SPARSE('solar'), DENSE(:v), fusion => rrf()) "
                f"WITH PRF(depth => 2, sparse => none, dense => average, interpolate => {how}) LIMIT 8",
                v=v,
            )
        dense_prf = [p for text, p in traced if "dense_fb_ids" in p]
        assert len(dense_prf) == 1
        ids = dense_prf[0]["dense_fb_ids"]
        got = db.conn.execute(f'SELECT id FROM sparsesql."{name}__docs" WHERE doc_id = ANY(%s)', (ids,)).fetchall()
        assert {g[0] for g in got} == set(fb_ids), how


def test_prf_adds_one_round_trip_per_side(db, tiny):
    name, vectors = tiny
    v = vectors[2].tolist()
    counts = {}
    for label, clause in (("plain", ""), ("prf", "WITH PRF(depth => 3)"), ("both", "WITH PRF(interpolate => both)")):
        statements: list[str] = []
        with sparsesql.connect(db.dsn, trace=lambda text, params, s=statements: s.append(text)) as tdb:
            tdb.query(f"SELECT id FROM {name} SEARCH HYBRID(SPARSE('solar wind'), DENSE(:v)) {clause} LIMIT 3", v=v)
        counts[label] = len(statements)
    # plain: the catalog read and the fetch (the dense list is scored from the tier's vectors)
    assert counts == {"plain": 2, "prf": 4, "both": 4}


@pytest.mark.parametrize(
    "clause, message",
    [
        ("WITH PRF(depth => 0)", "depth => 0 is out of range"),
        ("WITH PRF(sparse => rm4)", "sparse => expects rm3 | none"),
        ("WITH PRF(dense => rocchio(gamma => 1))", "unknown argument 'gamma' for rocchio"),
        ("WITH PRF(interpolate => sideways)", "not one of before, after, both"),
        ("WITH PRF(sparse => rm3(weight => 2))", "weight => 2 is out of range"),
        ("WITH PRF(sparse => rm3(max_df => 1.5))", "max_df => 1.5 is out of range"),
        ("WITH PRF(sparse => rm3(min_docs => 0))", "min_docs => 0 is out of range"),
        ("WITH PRF(sparse => rm3(selective => 3))", "selective => expects true or false"),
        ("WITH PRF(dense => rocchio(alpha => 0, beta => 0))", "leaves no query"),
        ("WITH PRF(colour => 1)", "unknown argument 'colour' for PRF"),
    ],
)
def test_bad_prf_arguments(db, tiny, clause, message):
    name, vectors = tiny
    with pytest.raises(sparsesql.CheckError, match=message):
        db.query(f"SELECT id FROM {name} SEARCH HYBRID(SPARSE('solar'), DENSE(:v)) {clause}", v=vectors[0].tolist())


def test_prf_sides_must_exist(db, tiny):
    name, _ = tiny
    with pytest.raises(sparsesql.CheckError, match="dense => applies to a DENSE signal"):
        db.query(f"SELECT id FROM {name} SEARCH SPARSE('solar') WITH PRF(dense => average)")
    with pytest.raises(sparsesql.CheckError, match="interpolate => applies to HYBRID"):
        db.query(f"SELECT id FROM {name} SEARCH SPARSE('solar') WITH PRF(interpolate => before)")
    with pytest.raises(sparsesql.CheckError, match="WITH PRF needs a SEARCH clause"):
        db.query(f"SELECT id FROM {name} WITH PRF")


def test_prf_with_a_filter_and_depth_beyond_the_collection(db, tiny):
    name, vectors = tiny
    rows = db.query(
        f"SELECT id FROM {name} SEARCH HYBRID(SPARSE('solar'), DENSE(:v)) WITH PRF(depth => 500) WHERE id <> 'e0' LIMIT 20",
        v=vectors[0].tolist(),
    )
    assert rows and all(r.id != "e0" for r in rows) and len({r.id for r in rows}) == len(rows)
