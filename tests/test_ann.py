"""DENSE(..., ef_search => n): candidates from the collection's pgvector HNSW index, with
ef_search at least k, iterative scans under a filter, exact scores for what it returns, and the
exact path unchanged without the argument."""

from __future__ import annotations

import numpy as np
import pytest

import sparsesql


@pytest.fixture
def indexed(db, name):
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(20, 16))
    vectors = centres[rng.integers(0, 20, 3000)] + 0.4 * rng.normal(size=(3000, 16))
    coll = db.create_collection(name, {"body": "text", "year": "int"}, dense="none", dim=16)
    coll.add([{"id": f"d{i}", "body": f"word{i % 50}", "year": 2000 + i % 20, "vector": v.tolist()} for i, v in enumerate(vectors)], batch_size=1000)
    db.conn.execute(f'CREATE INDEX {name}_hnsw ON sparsesql."{name}__dense" USING hnsw (embedding vector_cosine_ops)')
    return name, centres[rng.integers(0, 20, 30)] + 0.4 * rng.normal(size=(30, 16))  # queries like the documents


def index_scans(db, name: str) -> int:
    return db.conn.execute("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = %s", (f"{name}_hnsw",)).fetchone()[0]


def test_ann_finds_nearly_what_exact_finds_with_exact_scores(db, indexed):
    name, queries = indexed
    recalls = []
    before = index_scans(db, name)
    for v in queries:
        exact = {r.id: r.score for r in db.query(f"SELECT id, score FROM {name} SEARCH DENSE(:v) LIMIT 10", v=v)}
        ann = db.query(f"SELECT id, score FROM {name} SEARCH DENSE(:v, ef_search => 100) LIMIT 10", v=v)
        assert len(ann) == 10 and [r.score for r in ann] == sorted((r.score for r in ann), reverse=True)
        for r in ann:
            if r.id in exact:
                assert r.score == pytest.approx(exact[r.id], abs=1e-6)
        recalls.append(len(set(exact) & {r.id for r in ann}) / 10)
    assert np.mean(recalls) >= 0.95
    db.conn.execute("SELECT pg_stat_force_next_flush()")
    assert index_scans(db, name) >= before + len(queries)
    plan = db.explain(f"SELECT id FROM {name} SEARCH DENSE(:v, ef_search => 40) LIMIT 60", v=queries[0])
    assert "hnsw.ef_search = 60" in plan  # raised to LIMIT: HNSW returns at most ef_search rows


def test_ann_with_a_filter_still_returns_k_matching_rows(db, indexed):
    name, queries = indexed
    rows = db.query(f"SELECT id, year FROM {name} SEARCH DENSE(:v, ef_search => 40) WHERE year = 2003 LIMIT 20", v=queries[1])
    assert len(rows) == 20 and {r.year for r in rows} == {2003}
    assert "hnsw.iterative_scan = relaxed_order" in db.explain(
        f"SELECT id FROM {name} SEARCH DENSE(:v, ef_search => 40) WHERE year = 2003 LIMIT 20", v=queries[1]
    )


def test_hybrid_with_ann_dense_and_the_memory_tier(db, dsn, indexed, tmp_path, monkeypatch):
    name, queries = indexed
    monkeypatch.setenv("SPARSESQL_HOME", str(tmp_path))
    text = f"SELECT id, score FROM {name} SEARCH HYBRID(SPARSE('word7 word9'), DENSE(:v, ef_search => 200), fusion => rrf()) LIMIT 10"
    exact = f"SELECT id, score FROM {name} SEARCH HYBRID(SPARSE('word7 word9'), DENSE(:v), fusion => rrf()) LIMIT 10"
    with sparsesql.connect(dsn, sparse_tier=True) as tiered:
        overlap = [len({r.id for r in tiered.query(text, v=v)} & {r.id for r in db.query(exact, v=v)}) / 10 for v in queries[:10]]
        plan = tiered.explain(text, analyze=True, v=queries[0])
    assert np.mean(overlap) >= 0.9
    assert "memory tier" in plan and "hnsw.ef_search = 200" in plan


def test_bad_ef_search(db, indexed):
    name, queries = indexed
    for bad in ("0", "1001", "2.5", "'x'"):
        with pytest.raises(sparsesql.CheckError, match="ef_search"):
            db.query(f"SELECT id FROM {name} SEARCH DENSE(:v, ef_search => {bad})", v=queries[0])
    with pytest.raises(sparsesql.CheckError, match="unknown argument 'ef'"):
        db.query(f"SELECT id FROM {name} SEARCH DENSE(:v, ef => 10)", v=queries[0])


def test_an_index_never_makes_the_exact_path_approximate(db, indexed):
    """Regression: ORDER BY embedding <=> q, doc_id let PostgreSQL walk the HNSW index with an
    incremental sort on top, so "exact" DENSE silently returned ef_search (40) approximate rows."""
    name, queries = indexed
    rows = db.conn.execute(f'SELECT d.id, e.embedding FROM sparsesql."{name}__dense" e JOIN sparsesql."{name}__docs" d USING (doc_id)').fetchall()
    ids = [r[0] for r in rows]
    matrix = np.array([np.asarray(r[1].to_numpy() if hasattr(r[1], "to_numpy") else r[1]) for r in rows], dtype=np.float64)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    before = index_scans(db, name)
    for v in queries[:5]:
        sims = matrix @ (v / np.linalg.norm(v))
        want = [ids[i] for i in np.argsort(-sims, kind="stable")[:100]]
        got = db.query(f"SELECT id, score FROM {name} SEARCH DENSE(:v) LIMIT 100", v=v)
        assert [r.id for r in got] == want
        hybrid = db.query(f"SELECT id FROM {name} SEARCH HYBRID(SPARSE('word3'), DENSE(:v), candidates => 100) LIMIT 100", v=v)
        assert len(hybrid) == 100
    db.conn.execute("SELECT pg_stat_force_next_flush()")
    assert index_scans(db, name) == before


def test_the_orm_asks_for_the_index_the_same_way(dsn, indexed):
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from sparsesql.orm import database_url, dense, search
    from tests.test_orm import mapped

    name, queries = indexed
    Doc = mapped(name, body="str | None", year="int | None")
    engine = create_engine(database_url(dsn))
    with sparsesql.connect(dsn) as db, Session(engine) as session:
        stmt = search(select(Doc).where(Doc.year >= 2005), dense(queries[2], ef_search=64)).limit(10)
        assert "DENSE(:q0, ef_search => :a0)" in stmt.dialect
        got = [(d.id, s) for d, s in stmt.execute(session)]
        want = [(r.id, r.score) for r in db.query(f"SELECT id, score FROM {name} SEARCH DENSE(:v, ef_search => 64) WHERE year >= 2005 LIMIT 10", v=queries[2])]
    engine.dispose()
    assert got == want and len(got) == 10
