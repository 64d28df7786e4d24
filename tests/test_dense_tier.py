"""The dense half of the memory tier: candidates from compressed codes, every score exact from
the tier's full vectors, so results equal the SQL path's on the shared sets; current after every committed
write (also under a concurrent writer), snapshots a new process loads and catches up from, and SQL
whenever the codes cannot serve (budget, off, the caller's transaction); filters as doc-id sets."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import sparsesql
from sparsesql.eval.beir import test_queries
from sparsesql.eval.run import load_beir
from sparsesql.tier import dense as dense_codes
from sparsesql.tier.dense import DenseCodes
from tests.conftest import beir_dir
from tests.test_tier import ranked, same, while_writing


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# ----------------------------------------------------------------------------- the shared sets


@pytest.mark.parametrize("set_name", ["cisi", "med"])
def test_dense_and_hybrid_from_the_codes_equal_the_sql_path(session_db, tier_db, set_name):
    folder = beir_dir(set_name)
    name = load_beir(session_db, folder)
    queries = list(test_queries(folder).values())[:40]
    texts = {
        "dense": f"SELECT id, score FROM {name} SEARCH DENSE(:q) LIMIT 10",
        "hybrid": f"SELECT id, score FROM {name} SEARCH HYBRID(SPARSE(:q), DENSE(:q)) LIMIT 10",
    }
    equal = {kind: 0 for kind in texts}
    for q in queries:
        for kind, text in texts.items():
            equal[kind] += same(ranked(tier_db, text, q=q), ranked(session_db, text, q=q), tol=1e-6)
    assert equal["dense"] >= 0.95 * len(queries) and equal["hybrid"] >= 0.95 * len(queries), equal
    plan = tier_db.explain(texts["hybrid"], analyze=True, q=queries[0])
    assert "candidates [dense] (memory tier)" in plan and "candidates from the codes" in plan
    assert "more from sparse" in plan and "scored exactly from full vectors" in plan


# ----------------------------------------------------------------------------- the codes alone


@pytest.mark.parametrize("flat_max", [dense_codes.FLAT_MAX, 100])
def test_codes_find_the_nearest_and_follow_adds_and_removes(monkeypatch, flat_max):
    monkeypatch.setattr(dense_codes, "FLAT_MAX", flat_max)
    x = unit_rows(3000, 32, 0)
    ids = np.arange(10, 3010)
    codes = DenseCodes.build(ids, x, 32)
    assert codes.kind == ("flat" if flat_max > 3000 else "ivf") and codes.count == 3000
    rng = np.random.default_rng(1)
    hits = 0
    for i in rng.choice(3000, 50, replace=False):
        query = x[i] + 0.05 * rng.standard_normal(32).astype(np.float32)
        hits += ids[i] in set(codes.search(query, 100).tolist())
    assert hits >= 48
    kept = ids[ids % 2 == 1]  # a filter keeping half: past brute force (1,000) for k = 200
    found_kept = found_all = 0  # of the exact top 10 among the kept documents, among all
    for i in rng.choice(3000, 20, replace=False):
        query = x[i] + 0.05 * rng.standard_normal(32).astype(np.float32)
        got = codes.candidates(query, 200, kept)
        assert len(got) == 200 and set(got.tolist()) <= set(kept.tolist())
        exact = kept[np.argsort(-(x[kept - 10] @ query))[:10]]  # ids start at 10
        found_kept += len(set(exact.tolist()) & set(got.tolist()))
        found_all += len(set(ids[np.argsort(-(x @ query))[:10]].tolist()) & set(codes.search(query, 200).tolist()))
    assert found_kept >= 0.95 * found_all  # a filter costs the candidates no recall
    codes.remove(ids[:1000])
    codes.add(np.array([99_999]), x[:1])
    assert codes.count == 2001
    found = codes.search(x[0], 100)
    assert 99_999 in found and not set(found.tolist()) & set(ids[:1000].tolist())
    again = DenseCodes.from_bytes(codes.to_bytes(), 32)
    assert again.kind == codes.kind and np.array_equal(np.sort(again.search(x[5], 50)), np.sort(codes.search(x[5], 50)))
    assert DenseCodes.build(np.zeros(0, dtype=np.int64), np.zeros((0, 32)), 32).search(x[0], 10).tolist() == []


def test_codes_of_minilm_sized_vectors_take_at_most_an_eighth_of_the_floats():
    x = unit_rows(1000, 384, 5)
    codes = DenseCodes.build(np.arange(1000), x, 384)
    assert codes.memory_bytes() * 8 <= x.nbytes
    assert "RaBitQ" in codes.describe() and "124 B a vector" in codes.describe()


# ----------------------------------------------------------------------------- writes


def test_every_committed_write_is_seen_by_the_next_dense_query(db, tier_db, name):
    coll = db.create_collection(name, {"body": "text"}, dense="none", dim=8)
    x = unit_rows(300, 8, 2)
    coll.add([{"id": f"d{i}", "body": "words", "vector": x[i].tolist()} for i in range(300)])
    text = f"SELECT id, score FROM {name} SEARCH DENSE(:v) LIMIT 5"
    assert same(ranked(tier_db, text, v=x[7].tolist()), ranked(db, text, v=x[7].tolist()), tol=1e-6)
    coll.delete(["d7"])
    coll.add([{"id": "d8", "body": "moved", "vector": (-x[7]).tolist()}, {"id": "new", "body": "n", "vector": x[7].tolist()}])
    got = ranked(tier_db, text, v=x[7].tolist())
    assert got[0][0] == "new" and "d7" not in {i for i, _ in got} and "d8" not in {i for i, _ in got}
    assert same(got, ranked(db, text, v=x[7].tolist()), tol=1e-6)
    assert ranked(tier_db, text, v=(-x[7]).tolist())[0][0] == "d8"


def test_concurrent_writers_never_make_the_codes_serve_old_vectors(db, dsn, tier_db, name):
    """Documents flip between a vector near the query (body 'near') and its opposite ('far'); a
    DENSE search whose rows say 'far' among the top would be the codes serving a replaced vector."""
    q = np.zeros(4, dtype=np.float32)
    q[0] = 1
    db.create_collection(name, {"body": "text"}, dense="none", dim=4).add(
        [{"id": f"d{i}", "body": "near", "vector": [1, 0.01 * i, 0, 0]} for i in range(30)]
    )
    stop, errors = threading.Event(), []

    def write() -> None:
        with sparsesql.connect(dsn) as writer:
            coll, rng, flip = writer.collection(name), np.random.default_rng(0), 0
            while not stop.is_set():
                flip += 1
                docs = [
                    {"id": f"d{i}", "body": "near" if (flip + i) % 2 else "far", "vector": [1 if (flip + i) % 2 else -1, 0.01 * i, 0, 0]}
                    for i in rng.choice(30, size=5, replace=False)
                ]
                coll.add(docs)

    def search() -> None:
        rows = tier_db.query(f"SELECT id, body, score FROM {name} SEARCH DENSE(:v) LIMIT 10", v=q.tolist())
        errors.extend(dict(r) for r in rows if (r["body"] == "near") != (r["score"] > 0))

    assert while_writing(write, stop, search) > 20 and errors == []
    text = f"SELECT id, score FROM {name} SEARCH DENSE(:v) LIMIT 30"
    assert same(ranked(tier_db, text, v=q.tolist()), ranked(db, text, v=q.tolist()), tol=1e-6)


# ----------------------------------------------------------------------------- snapshots, budget, fallbacks


def test_a_new_process_loads_the_codes_snapshot_and_catches_up(db, dsn, tmp_path, monkeypatch, name):
    monkeypatch.setenv("SPARSESQL_HOME", str(tmp_path))
    x = unit_rows(200, 8, 3)
    coll = db.create_collection(name, {"body": "text"}, dense="none", dim=8)
    coll.add([{"id": f"d{i}", "body": "b", "vector": x[i].tolist()} for i in range(200)])
    text = f"SELECT id, score FROM {name} SEARCH DENSE(:v) LIMIT 10"
    with sparsesql.connect(dsn, sparse_tier=True) as first:
        assert "(from vectors in" in first.explain(text, analyze=True, v=x[0].tolist())
    assert list((tmp_path / "tiers").glob(f"{name}-*/dense.npz"))
    coll.delete([f"d{i}" for i in range(0, 200, 3)])
    coll.add([{"id": "new", "body": "n", "vector": x[3].tolist()}])
    with sparsesql.connect(dsn, sparse_tier=True) as second:
        assert "(from snapshot in" in second.explain(text, analyze=True, v=x[3].tolist())
        got = ranked(second, text, v=x[3].tolist())
    assert got[0][0] == "new" and "d3" not in {i for i, _ in got}
    assert same(got, ranked(db, text, v=x[3].tolist()), tol=1e-6)
    db.drop_collection(name)
    db.create_collection(name, {"body": "text"}, dense="none", dim=8).add([{"id": "other", "body": "o", "vector": x[3].tolist()}])
    with sparsesql.connect(dsn, sparse_tier=True) as third:
        assert "(from vectors in" in third.explain(text, analyze=True, v=x[3].tolist())  # not the dropped namesake's snapshot
        assert [i for i, _ in ranked(third, text, v=x[3].tolist())] == ["other"]


def test_budget_off_and_callers_transaction_stay_in_sql_and_a_filter_reaches_the_codes(db, dsn, tmp_path, monkeypatch, name):
    monkeypatch.setenv("SPARSESQL_HOME", str(tmp_path))
    x = unit_rows(300, 8, 4)
    db.create_collection(name, {"body": "text", "year": "int"}, dense="none", dim=8).add(
        [{"id": f"d{i}", "body": "b", "year": 2000 + i, "vector": x[i].tolist()} for i in range(300)]
    )
    v = x[11].tolist()
    text = f"SELECT id, score FROM {name} SEARCH DENSE(:v) LIMIT 10"
    plain = ranked(db, text, v=v)
    with sparsesql.connect(dsn, sparse_tier=True, dense_tier_memory="1KB") as small:
        assert "memory tier not used: its dense codes need about" in small.explain(text, analyze=True, v=v)
        assert same(ranked(small, text, v=v), plain, tol=1e-6)
    with sparsesql.connect(dsn, sparse_tier=True) as tiered:
        assert "candidates from the codes" in tiered.explain(text, analyze=True, v=v)
        assert tiered.query("SET dense_tier_memory = '1KB'")[0]["value"] == 1024
        assert not tiered.tiers.dense.loaded  # over the new budget: dropped
        tiered.query("SET dense_tier_memory = none")
        assert tiered.query("SET dense_tier = off")[0]["value"] == "off"
        assert "memory tier" not in tiered.explain(text, analyze=True, v=v)
        assert same(ranked(tiered, text, v=v), plain, tol=1e-6)
        tiered.query("SET dense_tier = on")
        filtered = f"SELECT id, score FROM {name} SEARCH DENSE(:v) WHERE year > 2100 LIMIT 10"
        assert "filter keeps 199 documents (evaluated in memory" in tiered.explain(filtered, analyze=True, v=v)
        assert same(ranked(tiered, filtered, v=v), ranked(db, filtered, v=v), tol=1e-6)
        with tiered.conn.transaction():
            plan = tiered.explain(text, analyze=True, v=v)
        assert "memory tier not used: the search runs inside the caller's transaction" in plan
        for bad, message in (("SET dense_tier = maybe", "dense_tier takes on or off"), ("SET dense_tier_memory = 'lots'", "a size")):
            with pytest.raises(sparsesql.CheckError, match=message):
                tiered.query(bad)
    with sparsesql.connect(dsn, sparse_tier=True, dense_tier=False) as no_codes:
        assert "memory tier" not in no_codes.explain(text, analyze=True, v=v)
        assert "candidates [sparse] (memory tier)" in no_codes.explain(f"SELECT id FROM {name} SEARCH HYBRID(SPARSE('b'), DENSE(:v)) LIMIT 3", v=v)


# ----------------------------------------------------------------------------- filters


def test_filtered_searches_from_memory_equal_the_sql_path(db, tier_db, name):
    """A WHERE reaches the tier as the doc ids it keeps (one statement in the search's snapshot):
    SPARSE is exactly the SQL path's, DENSE and HYBRID too (few kept: every one scored exactly;
    many: the codes asked deeper), and LIMIT rows come back whenever that many documents match."""
    rng = np.random.default_rng(6)
    x = unit_rows(3000, 64, 7)
    words = ["alpha", "beta", "gamma", "delta", "omega"]
    coll = db.create_collection(name, {"body": "text", "year": "int", "tag": "text"}, dense="none", dim=64)
    coll.add([
        {"id": f"d{i}", "body": " ".join(rng.choice(words, 6)), "year": 1900 + i % 100, "tag": "odd" if i % 2 else "even",
         "vector": x[i].tolist()}
        for i in range(3000)
    ])
    v = (x[5] + x[8]).tolist()
    for where in ("year = 1950", "year >= 1990 AND tag = 'odd'", "tag LIKE 'ev%'", "year > 1900 OR tag = 'odd'", "year > 3000"):
        for search in ("SPARSE('alpha omega')", "DENSE(:v)", "HYBRID(SPARSE('alpha omega'), DENSE(:v))"):
            text = f"SELECT id, score FROM {name} SEARCH {search} WHERE {where} LIMIT 20"
            got, want = ranked(tier_db, text, v=v), ranked(db, text, v=v)
            plan = tier_db.explain(text, analyze=True, v=v)
            assert "filter keeps" in plan and "memory tier" in plan, plan
            assert len(got) == min(20, len(want))
            if search.startswith("SPARSE") or "all scored exactly" in plan:
                assert same(got, want, tol=1e-6), (where, search)
            else:  # the codes asked deeper: approximate candidates, exact scores
                assert len({d for d, _ in got} & {d for d, _ in want}) >= 0.9 * len(want), (where, search)
                if search.startswith("DENSE"):
                    exact = dict(want)
                    assert all(abs(score - exact[d]) < 1e-6 for d, score in got if d in exact)
    assert "all scored exactly" in tier_db.explain(f"SELECT id FROM {name} SEARCH DENSE(:v) WHERE year = 1950 LIMIT 5", analyze=True, v=v)
    assert len(ranked(tier_db, f"SELECT id, score FROM {name} SEARCH DENSE(:v) WHERE year = 1950 LIMIT 50", v=v)) == 30


def test_a_partitioned_collection_is_served_and_followed_like_a_flat_one(db, tier_db, name, monkeypatch):
    """Past FLAT_MAX vectors the codes are IVF lists: the same exact scores, writes followed."""
    from benchmarks import synthetic

    monkeypatch.setattr(dense_codes, "FLAT_MAX", 500)
    x = synthetic.make_batch(0, 3000, model="calibrated").vectors  # clustered like real embeddings
    coll = db.create_collection(name, {"body": "text"}, dense="none", dim=synthetic.DIM)
    coll.add([{"id": f"d{i}", "body": "b", "vector": x[i].tolist()} for i in range(3000)])
    text = f"SELECT id, score FROM {name} SEARCH DENSE(:v) LIMIT 10"
    hits = 0
    for q in synthetic.queries(3000, 20, model="calibrated"):
        v = q["vector"].tolist()
        got, want = ranked(tier_db, text, v=v), ranked(db, text, v=v)
        exact = dict(want)
        assert all(abs(s - exact[d]) < 1e-6 for d, s in got if d in exact)
        hits += len({d for d, _ in got} & set(exact))
    assert hits >= 0.9 * 20 * 10
    assert "IVF" in tier_db.explain(text, analyze=True, v=x[0].tolist())
    coll.delete(["d0"])
    coll.add([{"id": "near", "body": "n", "vector": x[0].tolist()}])
    assert ranked(tier_db, text, v=x[0].tolist())[0][0] == "near"
