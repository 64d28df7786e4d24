"""DIVERSIFY BY COVERAGE / MMR in the dialect: the result is the selection computed from the
search's own candidates and vectors, hops bring in graph neighbours scored like the pool, and
EXPLAIN ANALYZE reports the pool."""

from __future__ import annotations

import numpy as np
import pytest

import sparsesql
from sparsesql.retrieval.diversify import coverage_select, mmr_select, relevance_scale, similarity

DIM = 8
N = 60


@pytest.fixture
def coll(db, name):
    rng = np.random.default_rng(21)
    centres = rng.normal(size=(4, DIM))
    v = np.array([centres[i % 4] + 0.3 * rng.normal(size=DIM) for i in range(N)])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    c = db.create_collection(name, {"body": "text", "year": "int"}, dense="none", dim=DIM)
    c.add([{"id": f"x{i}", "body": f"topic{i % 4} word{i % 7}", "year": 2000 + i % 10, "vector": v[i].tolist()} for i in range(N)])
    return name, v, c


def ids(rows) -> list[str]:
    return [r.id for r in rows]


@pytest.mark.parametrize("method, select", [("COVERAGE", coverage_select), ("MMR", mmr_select)])
def test_result_is_the_selection_over_the_search_candidates(db, coll, method, select):
    name, v, _ = coll
    q = v[0] + v[1]
    top = db.query(f"SELECT id, score FROM {name} SEARCH DENSE(:q) LIMIT 30", q=q.tolist())
    got = db.query(f"SELECT id, score FROM {name} SEARCH DENSE(:q) DIVERSIFY BY {method}(candidates => 30, lambda => 0.5) LIMIT 8", q=q.tolist())
    pool = [int(r.id[1:]) for r in top]
    relevance = relevance_scale(np.array([r.score for r in top]))
    expected = [top[i].id for i in select(relevance, similarity(v[pool]), 8, 0.5)]
    assert ids(got) == expected
    assert ids(got) != ids(top)[:8]  # the clusters make the selection differ from the top 8
    assert {r.id: r.score for r in got} == {r.id: r.score for r in top if r.id in set(expected)}


@pytest.mark.parametrize("method", ["COVERAGE", "MMR"])
def test_limit_decides_how_many_never_which_come_first(db, coll, method):
    """LIMIT 60's first 10 are LIMIT 10's, in order, at every lambda, with and without PRF."""
    name, v, _ = coll
    for q in (v[0] + v[1], v[7]):
        for lam in (0.3, 0.7):
            for search in ("DENSE(:q)", "HYBRID(SPARSE('topic1 word3'), DENSE(:q)) WITH PRF"):
                clause = f"SEARCH {search} DIVERSIFY BY {method}(candidates => 60, lambda => {lam})"
                long = db.query(f"SELECT id FROM {name} {clause} LIMIT 60", q=q.tolist())
                assert len(long) == 60
                for short in (1, 10, 25):
                    assert ids(db.query(f"SELECT id FROM {name} {clause} LIMIT {short}", q=q.tolist())) == ids(long)[:short]


def test_lambda_one_keeps_the_search_order(db, coll):
    name, v, _ = coll
    plain = db.query(f"SELECT id FROM {name} SEARCH HYBRID(SPARSE('topic1 word3'), DENSE(:q)) LIMIT 10", q=v[5].tolist())
    diverse = db.query(
        f"SELECT id FROM {name} SEARCH HYBRID(SPARSE('topic1 word3'), DENSE(:q)) DIVERSIFY BY COVERAGE(lambda => 1) LIMIT 10",
        q=v[5].tolist(),
    )
    assert ids(diverse) == ids(plain)


def test_diversify_after_prf_with_a_filter(db, coll):
    name, v, _ = coll
    rows = db.query(
        f"SELECT id, year FROM {name} SEARCH HYBRID(SPARSE('topic2'), DENSE(:q)) WITH PRF "
        f"DIVERSIFY BY COVERAGE WHERE year >= 2005 LIMIT 6",
        q=v[2].tolist(),
    )
    assert len(rows) == 6 and all(r.year >= 2005 for r in rows)


def test_hops_add_graph_neighbours_scored_like_the_pool(db, coll):
    """With lambda 1 the selection is by relevance, so the result is the best documents of the
    pool plus its graph neighbours: exact cosine over that union, computed here with numpy."""
    name, v, c = coll
    c.build_graph(k=3)
    q = v[7] + 0.5 * v[30]
    q = q / np.linalg.norm(q)
    top3 = [int(r.id[1:]) for r in db.query(f"SELECT id FROM {name} SEARCH DENSE(:q) LIMIT 3", q=q.tolist())]
    graph = db.conn.execute(
        f'SELECT s.id, d.id FROM sparsesql."{name}__graph" g JOIN sparsesql."{name}__docs" s ON s.doc_id = g.src '
        f'JOIN sparsesql."{name}__docs" d ON d.doc_id = g.dst'
    ).fetchall()
    neighbours = {int(d[1:]) for s, d in graph if int(s[1:]) in top3}
    union = sorted(set(top3) | neighbours)
    expected = [f"x{i}" for i in sorted(union, key=lambda i: -float(v[i] @ q))[:3]]
    got = db.query(f"SELECT id FROM {name} SEARCH DENSE(:q) DIVERSIFY BY COVERAGE(candidates => 3, lambda => 1, hops => 1) LIMIT 3", q=q.tolist())
    assert set(ids(got)) == set(expected)
    plan = db.explain(f"SELECT id FROM {name} SEARCH DENSE(:q) DIVERSIFY BY COVERAGE(candidates => 3, hops => 1) LIMIT 3", q=q.tolist(), analyze=True)
    assert f"pool={len(union)}, hops=1, added by graph={len(union) - 3}" in plan


def test_hops_through_hybrid_prf_rescore_every_list(db, coll):
    name, v, c = coll
    c.build_graph(k=4)
    statements: list[str] = []
    with sparsesql.connect(db.dsn, trace=lambda text, params: statements.append(text)) as tdb:
        rows = tdb.query(
            f"SELECT id, score FROM {name} SEARCH HYBRID(SPARSE('topic3'), DENSE(:q)) WITH PRF(interpolate => both) "
            f"DIVERSIFY BY COVERAGE(candidates => 5, hops => 2) LIMIT 5",
            q=v[3].tolist(),
        )
    assert len(rows) == 5
    rescored = [s for s in statements if "rescore_ids" in s]
    assert len(rescored) == 4  # sparse, dense, sparse_prf, dense_prf: all feed the final fusion


def test_explain_shows_the_selection(db, coll):
    name, v, _ = coll
    plan = db.explain(f"SELECT id FROM {name} SEARCH DENSE(:q) DIVERSIFY BY MMR(lambda => 0.3) LIMIT 4", q=v[0].tolist(), analyze=True)
    assert "diversify (SQL + Python): mmr(lambda => 0.3) chooses 4 of the top 100 of dense" in plan
    assert "pool=60, hops=0, added by graph=0, selection=" in plan


@pytest.mark.parametrize(
    "clause, message",
    [
        ("DIVERSIFY BY DISTANCE", "DIVERSIFY BY DISTANCE is not a method; use COVERAGE or MMR"),
        ("DIVERSIFY BY COVERAGE(lambda => 2)", "lambda => 2 is out of range"),
        ("DIVERSIFY BY COVERAGE(candidates => 5)", "chooses 10 documents \\(LIMIT \\+ OFFSET\\) from 5 candidates"),
        ("DIVERSIFY BY COVERAGE(hops => 1)", "has none; build it with BUILD GRAPH ON"),
        ("DIVERSIFY BY COVERAGE(hops => 9)", "hops => 9 is out of range"),
        ("DIVERSIFY BY MMR(width => 3)", "unknown argument 'width' for MMR"),
    ],
)
def test_bad_diversify(db, coll, clause, message):
    name, v, _ = coll
    with pytest.raises(sparsesql.CheckError, match=message):
        db.query(f"SELECT id FROM {name} SEARCH DENSE(:q) {clause} LIMIT 10", q=v[0].tolist())


def test_diversify_needs_a_search(db, coll):
    name, _, _ = coll
    with pytest.raises(sparsesql.CheckError, match="DIVERSIFY needs a SEARCH clause"):
        db.query(f"SELECT id FROM {name} DIVERSIFY BY COVERAGE LIMIT 3")


def test_graph_newcomers_pass_the_filter(db, coll):
    name, v, c = coll
    c.build_graph(k=6)
    rows = db.query(
        f"SELECT id, year FROM {name} SEARCH DENSE(:q) DIVERSIFY BY COVERAGE(candidates => 5, lambda => 0.2, hops => 2) "
        f"WHERE year >= :y LIMIT 5",
        q=v[4].tolist(),
        y=2007,
    )
    assert len(rows) == 5 and all(r.year >= 2007 for r in rows)
    plan = db.explain(
        f"SELECT id FROM {name} SEARCH DENSE(:q) DIVERSIFY BY COVERAGE(candidates => 5, hops => 2) WHERE year >= :y LIMIT 5",
        q=v[4].tolist(),
        y=2007,
        analyze=True,
    )
    added = int(plan.split("added by graph=")[1].split(",")[0])
    assert added > 0
