"""The in-memory sparse tier: the same top-k and scores as the SQL scorer (on the shared sets and
on random postings), current after every committed write (also under concurrent
writers), snapshots that a new process loads and catches up from, and SQL whenever it cannot serve."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

import sparsesql
from sparsesql.eval.beir import test_queries
from sparsesql.eval.run import load_beir
from sparsesql.tier.cache import Tiers
from sparsesql.tier.changes import TierAhead
from sparsesql.tier.index import QueryTerm, Scoring, SparseIndex
from tests.conftest import beir_dir


def ranked(db, text: str, **params) -> list[tuple[str, float]]:
    return [(r["id"], r["score"]) for r in db.query(text, **params)]


def same(a: list[tuple[str, float]], b: list[tuple[str, float]], tol: float = 1e-9) -> bool:
    """Equal rankings up to float summation order: position by position the scores agree, every
    document shared by both has the same score, and the two differ only in the order of tied
    documents or in which of the documents tied at the last place made the cut."""
    if len(a) != len(b) or any(abs(x - y) > tol * max(1.0, abs(x)) for (_, x), (_, y) in zip(a, b)):
        return False
    score_b = dict(b)
    if any(abs(s - score_b[d]) > tol * max(1.0, abs(s)) for d, s in a if d in score_b):
        return False
    last = a[-1][1] if a else 0.0

    def above(rows: list[tuple[str, float]]) -> set[str]:
        return {d for d, s in rows if s > last + tol * max(1.0, abs(last))}

    return above(a) == above(b)


def while_writing(write, stop: threading.Event, search, seconds: float = 3) -> int:
    """Run `write` in a thread (until `stop` is set) while `search` runs over and over; how many searches ran."""
    thread = threading.Thread(target=write)
    thread.start()
    done = 0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            search()
            done += 1
    finally:
        stop.set()
        thread.join()
    return done


# ----------------------------------------------------------------------------- the shared sets


@pytest.mark.parametrize("set_name", ["cisi", "limit-small"])
def test_memory_tier_ranks_exactly_as_sql_on_the_shared_sets(session_db, tier_db, set_name):
    folder = beir_dir(set_name)
    name = load_beir(session_db, folder)
    for q in list(test_queries(folder).values())[:60]:
        for k in (10, 100):
            text = f"SELECT id, score FROM {name} SEARCH SPARSE(:q) LIMIT {k}"
            assert same(ranked(tier_db, text, q=q), ranked(session_db, text, q=q)), (q, k)
    q = next(iter(test_queries(folder).values()))
    text = f"SELECT id, score FROM {name} SEARCH HYBRID(SPARSE(:q), DENSE(:q), fusion => rrf()) WITH PRF LIMIT 10"
    assert same(ranked(tier_db, text, q=q), ranked(session_db, text, q=q))
    plan = tier_db.explain(text, analyze=True, q=q)
    assert "candidates [sparse] (memory tier)" in plan and "MB in memory" in plan


# ----------------------------------------------------------------------------- the index alone


def reference(postings: dict[int, dict[int, int]], lengths: dict[int, int], terms: list[QueryTerm], s: Scoring, k: int):
    """Brute-force BM25 over Python dicts, summing in query-term order."""
    scores: dict[int, float] = {}
    for q in terms:
        idf = np.log(1 + (s.n_docs - q.df + 0.5) / (q.df + 0.5))
        for d, tf in sorted(postings.get(q.term_id, {}).items()):
            if d in lengths:
                scores[d] = scores.get(d, 0.0) + q.weight * idf * tf / (tf + s.k1 * (1 - s.b + s.b * lengths[d] / s.avgdl))
    best = sorted(scores.items(), key=lambda x: (-x[1], x[0]))[:k]
    return [d for d, _ in best], np.array([x for _, x in best])


@settings(max_examples=150, deadline=None)
@given(
    hs.lists(hs.tuples(hs.integers(0, 12), hs.integers(1, 80), hs.integers(1, 6)), min_size=1, max_size=300),
    hs.lists(hs.integers(1, 80), max_size=20),
    hs.lists(hs.tuples(hs.integers(0, 12), hs.integers(81, 120), hs.integers(1, 6)), max_size=60),
    hs.lists(hs.tuples(hs.integers(0, 12), hs.integers(1, 3)), min_size=1, max_size=6, unique_by=lambda t: t[0]),
    hs.integers(1, 15),
)
def test_top_k_equals_brute_force(base, deleted, added, query, k):
    postings: dict[int, dict[int, int]] = {}
    for t, d, tf in base:
        postings.setdefault(t, {})[d] = tf
    lengths = {d: 1 + (d * 7) % 23 for _, d, _ in base}
    triples = sorted((t, d, tf) for t, by_doc in postings.items() for d, tf in by_doc.items())
    index = SparseIndex.build(
        np.array([t for t, _, _ in triples]), np.array([d for _, d, _ in triples]), np.array([tf for _, _, tf in triples], dtype=float),
        (np.array(sorted(lengths)), np.array([lengths[d] for d in sorted(lengths)])), integer=True,
    )
    index.remove(np.array(deleted, dtype=np.int64))
    for d in deleted:
        lengths.pop(d, None)
    extra: dict[int, dict[int, int]] = {}
    for t, d, tf in added:
        extra.setdefault(t, {})[d] = tf
    new = sorted((t, d, tf) for t, by_doc in extra.items() for d, tf in by_doc.items())
    new_lengths = {d: 1 + d % 17 for _, d, _ in new}
    if new:
        index.add(np.array([t for t, _, _ in new]), np.array([d for _, d, _ in new]), np.array([tf for _, _, tf in new], dtype=float),
                  np.array(sorted(new_lengths)), np.array([new_lengths[d] for d in sorted(new_lengths)]))
    for t, by_doc in extra.items():
        postings.setdefault(t, {}).update(by_doc)
    lengths.update(new_lengths)
    live = {t: {d: tf for d, tf in by_doc.items() if d in lengths} for t, by_doc in postings.items()}
    n = len(lengths)
    s = Scoring(True, 0.9, 0.4, float(n), sum(lengths.values()) / max(n, 1))
    terms = [QueryTerm(t, float(w), max(1, len(live.get(t, {})))) for t, w in query]
    want_docs, want_scores = reference(postings, lengths, terms, s, k)
    for candidate in (index, index.compact()):
        docs, scores, _ = candidate.top_k(terms, s, k)
        assert docs.tolist() == want_docs
        np.testing.assert_allclose(scores, want_scores, rtol=1e-12)


# ----------------------------------------------------------------------------- writes


def test_every_committed_write_is_seen_by_the_next_query(db, tier_db, name):
    coll = db.create_collection(name, {"body": "text"}, dense="none", dim=2)
    coll.add([{"id": f"d{i}", "body": f"alpha {'beta ' * i}", "vector": [1, i]} for i in range(5)])
    text = f"SELECT id, score FROM {name} SEARCH SPARSE(:q) LIMIT 10"
    assert same(ranked(tier_db, text, q="beta"), ranked(db, text, q="beta"))
    coll.delete(["d4"])
    coll.add([{"id": "d3", "body": "gamma only", "vector": [1, 0]}, {"id": "d9", "body": "beta beta beta beta beta beta beta", "vector": [0, 1]}])
    got = ranked(tier_db, text, q="beta")
    assert same(got, ranked(db, text, q="beta"))
    assert "d4" not in {i for i, _ in got} and "d3" not in {i for i, _ in got} and got[0][0] == "d9"
    assert [i for i, _ in ranked(tier_db, text, q="gamma")] == ["d3"]


def test_statistics_come_from_memory_until_a_write_changes_them(db, tier_db, name):
    """With every query term known at the catalog's version, a search reads no statistics; a write
    (new version, new df) sends the next search back to the statement, and scores stay SQL's."""
    coll = db.create_collection(name, {"body": "text"}, dense="none", dim=2)
    coll.add([{"id": f"d{i}", "body": f"alpha {'beta ' * i}", "vector": [1, i]} for i in range(6)])
    text = f"SELECT id, score FROM {name} SEARCH SPARSE(:q) LIMIT 10"
    statements: list[str] = []
    tier_db.trace = lambda sql_text, params: statements.append(sql_text)

    def tier_detail(q: str) -> str:
        plan = tier_db.explain(text, analyze=True, q=q)
        return next(line for line in plan.splitlines() if "MB in memory" in line)

    assert "statistics from memory" not in tier_detail("alpha")  # the first search loads the index
    assert "statistics from memory" in tier_detail("alpha beta")  # with its whole vocabulary
    statements.clear()
    assert same(ranked(tier_db, text, q="beta zeta"), ranked(db, text, q="beta zeta"))
    assert not any("df" in s for s in statements)  # an unknown term is known to be absent
    coll.add([{"id": "n1", "body": "beta zeta zeta", "vector": [0, 1]}])
    assert "statistics from memory" not in tier_detail("beta zeta")
    assert same(ranked(tier_db, text, q="beta zeta"), ranked(db, text, q="beta zeta"))
    assert "statistics from memory" in tier_detail("beta zeta")
    assert "statistics from memory" not in tier_detail("alpha")  # read at the old version: stale
    assert same(ranked(tier_db, text, q="alpha"), ranked(db, text, q="alpha"))


def test_concurrent_writers_never_make_the_tier_serve_old_content(db, dsn, tier_db, name):
    """Documents flip between 'alpha' and 'omega' bodies; a search for alpha whose rows (fetched in
    the plan's snapshot) say omega would be the tier scoring a replaced document."""
    db.create_collection(name, {"body": "text"}, dense="none", dim=2).add(
        [{"id": f"d{i}", "body": "alpha words here", "vector": [1, 0]} for i in range(30)]
    )
    stop, errors = threading.Event(), []

    def write() -> None:
        with sparsesql.connect(dsn) as writer:
            coll, rng, flip = writer.collection(name), np.random.default_rng(0), 0
            while not stop.is_set():
                ids = rng.choice(30, size=5, replace=False)
                flip += 1
                coll.add([{"id": f"d{i}", "body": f"{'alpha' if (flip + i) % 2 else 'omega'} words {flip}", "vector": [1, flip]} for i in ids])
                if flip % 3 == 0:
                    coll.delete([f"d{ids[0]}"])

    def search() -> None:
        errors.extend(dict(r) for r in tier_db.query(f"SELECT id, body, score FROM {name} SEARCH SPARSE('alpha') LIMIT 30")
                      if "alpha" not in r["body"])

    assert while_writing(write, stop, search) > 20 and errors == []
    text = f"SELECT id, score FROM {name} SEARCH SPARSE('alpha') LIMIT 30"
    assert same(ranked(tier_db, text), ranked(db, text))


# ----------------------------------------------------------------------------- snapshots, budget, fallbacks


def test_a_new_process_loads_the_snapshot_and_catches_up(db, dsn, tmp_path, monkeypatch, name):
    monkeypatch.setenv("SPARSESQL_HOME", str(tmp_path))
    coll = db.create_collection(name, {"body": "text"}, dense="none", dim=2)
    coll.add([{"id": f"d{i}", "body": f"term{i % 7} common text", "vector": [1, i]} for i in range(200)])
    text = f"SELECT id, score FROM {name} SEARCH SPARSE(:q) LIMIT 20"
    with sparsesql.connect(dsn, sparse_tier=True) as first:
        assert "(from postings in" in first.explain(text, analyze=True, q="term3 common")
    assert list((tmp_path / "tiers").glob(f"{name}-*/index.npz"))
    coll.delete([f"d{i}" for i in range(0, 200, 7)])
    coll.add([{"id": "new", "body": "term3 term3 term3", "vector": [0, 1]}])
    snapshot = next((tmp_path / "tiers").glob(f"{name}-*/index.npz"))
    on_disk = snapshot.read_bytes()
    with sparsesql.connect(dsn, sparse_tier=True) as second:
        plan = second.explain(text, analyze=True, q="term3 common")
        assert "(from snapshot in" in plan
        got = ranked(second, text, q="term3 common")
        index = second.tiers.loaded[(name, 0)].index
        assert isinstance(index.docs, np.memmap) and isinstance(index.weights, np.memmap)  # mapped, shared by the page cache
    assert same(got, ranked(db, text, q="term3 common")) and got[0][0] == "new"
    assert snapshot.read_bytes() == on_disk  # the catch-up's deletions wrote private pages, never the file
    db.drop_collection(name)
    db.create_collection(name, {"body": "text"}, dense="none", dim=2).add([{"id": "other", "body": "term3", "vector": [1, 0]}])
    with sparsesql.connect(dsn, sparse_tier=True) as third:
        assert "(from postings in" in third.explain(text, analyze=True, q="term3")  # a re-created namesake is not the snapshot's
        assert [i for i, _ in ranked(third, text, q="term3")] == ["other"]


def test_over_the_memory_budget_the_search_stays_in_sql_and_a_filter_reaches_the_tier(db, dsn, name):
    coll = db.create_collection(name, {"body": "text", "year": "int"}, dense="none", dim=2)
    coll.add([{"id": f"d{i}", "body": f"word{i % 5} shared", "year": 2000 + i, "vector": [1, i]} for i in range(300)])
    db.conn.execute(f'ANALYZE sparsesql."{name}__postings"')
    text = f"SELECT id, score FROM {name} SEARCH SPARSE('shared word2') LIMIT 10"
    with sparsesql.connect(dsn, sparse_tier=True, sparse_tier_memory="1KB") as small:
        assert "memory tier not used: its postings need about" in small.explain(text, analyze=True)
        assert same(ranked(small, text), ranked(db, text))
    with sparsesql.connect(dsn, sparse_tier=True) as tiered:
        filtered = f"SELECT id, score FROM {name} SEARCH SPARSE('shared word2') WHERE year > 2100 LIMIT 10"
        assert "filter keeps 199 documents" in tiered.explain(filtered, analyze=True)
        assert same(ranked(tiered, filtered), ranked(db, filtered))
    with pytest.raises(sparsesql.CheckError, match="not a size"):
        sparsesql.connect(dsn, sparse_tier=True, sparse_tier_memory="lots")


def test_precomputed_weights_are_scored_exactly(db, tier_db, name):
    coll = db.create_collection(name, {"body": "text"}, sparse="precomputed", dense="none", dim=2)
    rng = np.random.default_rng(3)
    coll.add([
        {"id": f"d{i}", "body": "x", "vector": [1, i], "sparse": {f"t{j}": float(rng.random()) for j in rng.choice(40, 8, replace=False)}}
        for i in range(100)
    ])
    text = f"SELECT id, score FROM {name} SEARCH SPARSE(:q) LIMIT 15"
    query = {"t1": 0.7, "t5": 1.3, "t17": 0.2}
    assert same(ranked(tier_db, text, q=query), ranked(db, text, q=query))


def test_set_turns_the_tier_on_and_off_and_caps_its_memory(dsn, tmp_path, monkeypatch, name):
    monkeypatch.setenv("SPARSESQL_HOME", str(tmp_path))
    with sparsesql.connect(dsn) as default:  # on by default, under a quarter of the machine's memory
        assert default.tiers is not None and default.tiers.memory_limit == default.tiers.dense.memory_limit > 0
        assert default.query("SET sparse_tier_memory TO default")[0]["value"] == default.tiers.memory_limit
    with sparsesql.connect(dsn, sparse_tier=False) as db:
        db.create_collection(name, {"body": "text"}, dense="none", dim=2).add(
            [{"id": f"d{i}", "body": f"word{i % 9} shared", "vector": [1, i]} for i in range(300)]
        )
        text = f"SELECT id, score FROM {name} SEARCH SPARSE('shared word4') LIMIT 5"
        plain = ranked(db, text)
        assert "memory tier" not in db.explain(text)
        assert db.query("SET sparse_tier = on")[0]["value"] == "on"
        assert "MB in memory" in db.explain(text, analyze=True) and same(ranked(db, text), plain)
        assert db.query("SET sparse_tier_memory = '1KB'")[0]["value"] == 1024
        assert not db.tiers.loaded  # the loaded index is over the new budget: dropped
        assert "memory tier not used" in db.explain(text, analyze=True) and same(ranked(db, text), plain)
        db.query("SET sparse_tier_memory TO none")
        db.query("SET sparse_tier = off")
        assert db.tiers is None and "memory tier" not in db.explain(text)
        for bad, message in (("SET sparse_tier = maybe", "on or off"), ("SET sparse_tier_memory = 'lots'", "a size"),
                             ("SET sparse_tier_memory = -5", "a size"), ("SET tier = on", "unknown setting")):
            with pytest.raises(sparsesql.CheckError, match=message):
                db.query(bad)


def test_a_search_behind_the_shared_tier_starts_again_in_a_new_snapshot(db, tier_db, name, monkeypatch):
    """A server's sessions share one tier; a session whose snapshot is older than the tier's
    version (another session saw a later write first) starts its search again in a new snapshot
    instead of running it in SQL; only when the tier stays ahead does its last attempt use SQL."""
    coll = db.create_collection(name, {"body": "text"}, dense="none", dim=2)
    coll.add([{"id": f"d{i}", "body": f"alpha beta {'gamma ' * (i % 4)}", "vector": [1.0, float(i)]} for i in range(40)])
    text = f"SELECT id, score FROM {name} SEARCH SPARSE('alpha gamma') LIMIT 5"
    want = ranked(db, text)
    real, calls = Tiers.get, []

    def ahead_once(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise TierAhead("the index is at version 9, newer than this search's snapshot (8)")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Tiers, "get", ahead_once)
    assert same(ranked(tier_db, text), want) and len(calls) == 2
    assert "memory tier not used" not in tier_db.explain(text, analyze=True)

    def always_ahead(self, *args, **kwargs):
        raise TierAhead("the index is at version 9, newer than this search's snapshot (8)")

    monkeypatch.setattr(Tiers, "get", always_ahead)
    tier_db.tiers.loaded.clear()
    assert same(ranked(tier_db, text), want)
    assert "memory tier not used: the index is at version 9" in tier_db.explain(text, analyze=True)
