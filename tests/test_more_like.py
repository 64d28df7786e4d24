"""More like this (issue 35): `DENSE(LIKE id)`, `SPARSE(LIKE id)`, several ids, UNLIKE, and the
examples left out of the results unless asked; checked against searches with the vector or the
terms computed here from the documents themselves, in SQL and from the memory tier."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
import pytest

import sparsesql
from sparsesql.analysis import analyze

WORDS = "sparse dense retrieval fusion query expansion feedback index posting vector graph coverage ranking".split()
DIM = 6


@pytest.fixture(scope="module")
def docs(dsn):
    rng = np.random.default_rng(21)
    out = [{"id": f"m{i:02d}", "title": " ".join(rng.choice(WORDS, size=int(rng.integers(3, 9)))), "year": 2010 + i % 10,
            "vector": rng.standard_normal(DIM).tolist()} for i in range(80)]
    with sparsesql.connect(dsn, sparse_tier=False) as db:
        db.drop_collection("mlt_papers", if_exists=True)
        db.create_collection("mlt_papers", {"title": "text", "year": "int"}, dense="none", dim=DIM).add(out)
        yield out
        db.drop_collection("mlt_papers", if_exists=True)


def connect(dsn: str, tier: bool, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSESQL_HOME", str(tmp_path))
    return sparsesql.connect(dsn, sparse_tier=tier, dense_tier=tier)


def top_terms(docs: list[dict], liked: list[str], unliked: list[str], n: int, k1: float = 0.9, b: float = 0.4) -> dict[str, float]:
    """Lucene-MoreLikeThis-style terms written from the definition: each term's BM25 weight in
    each example (idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avglen))), summed over the
    liked and less the unliked, positive, held by another document too, best n (ties by term)."""
    analysed = {d["id"]: Counter(analyze(d["title"])) for d in docs}
    df = Counter(t for counts in analysed.values() for t in counts)
    avg = sum(sum(c.values()) for c in analysed.values()) / len(docs)
    score: Counter = Counter()
    for doc_id, sign in [(i, 1) for i in liked] + [(i, -1) for i in unliked]:
        counts = analysed[doc_id]
        length = sum(counts.values())
        for term, tf in counts.items():
            idf = math.log(1 + (len(docs) - df[term] + 0.5) / (df[term] + 0.5))
            score[term] += sign * idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / avg))
    best = sorted(((-w, t) for t, w in score.items() if w > 1e-12 and df[t] > 1))[:n]
    return {t: 1.0 for _, t in best}


@pytest.mark.parametrize("tier", [False, True], ids=["sql", "memory tier"])
@pytest.mark.parametrize("where", ["", " WHERE year >= 2013"])
def test_like_equals_the_search_by_the_examples_own_vector_or_terms_minus_them(dsn, docs, tmp_path, monkeypatch, tier, where):
    by_id = {d["id"]: d for d in docs}
    with connect(dsn, tier, tmp_path, monkeypatch) as db:
        for liked in (["m03"], ["m04", "m17"]):
            ids = tuple(liked)
            like = f"LIKE {ids[0]!r}" if len(ids) == 1 else f"LIKE {tuple(ids)!r}"
            # DENSE: one example is its own vector; several, the mean of their unit vectors
            units = [np.asarray(by_id[i]["vector"]) / np.linalg.norm(by_id[i]["vector"]) for i in liked]
            vector = by_id[liked[0]]["vector"] if len(liked) == 1 else np.mean(units, axis=0).tolist()
            got = db.query(f"SELECT id, score FROM mlt_papers SEARCH DENSE({like}){where} LIMIT 10")
            plain = [r for r in db.query(f"SELECT id, score FROM mlt_papers SEARCH DENSE(:v){where} LIMIT 12", v=vector) if r.id not in ids][:10]
            assert [r.id for r in got] == [r.id for r in plain] and len(got) == 10
            if len(liked) == 1:
                assert [r.score for r in got] == [r.score for r in plain]
            # SPARSE: the examples' top terms, each with weight 1
            terms = top_terms(docs, liked, [], 5)
            got = db.query(f"SELECT id, score FROM mlt_papers SEARCH SPARSE({like}, terms => 5){where} LIMIT 10")
            plain = [r for r in db.query(f"SELECT id, score FROM mlt_papers SEARCH SPARSE(:m){where} LIMIT 12", m=terms) if r.id not in ids][:10]
            assert [(r.id, round(r.score, 9)) for r in got] == [(r.id, round(r.score, 9)) for r in plain]
            plan = db.explain(f"SELECT id FROM mlt_papers SEARCH SPARSE({like}, terms => 5){where} LIMIT 10")
            assert f"like: SPARSE LIKE {', '.join(ids)}: searches with {', '.join(terms)} (their top 5 by BM25 weight)" in plan
            assert f"leave out: the {len(ids)} documents LIKE and UNLIKE name" in plan


def test_unlike_pushes_away_and_include_liked_keeps_the_examples(db, docs):
    by_id = {d["id"]: d for d in docs}
    unit = {i: np.asarray(by_id[i]["vector"]) / np.linalg.norm(by_id[i]["vector"]) for i in ("m05", "m06", "m07")}
    vector = (2 * np.mean([unit["m05"], unit["m06"]], axis=0) - unit["m07"]).tolist()
    got = db.query("SELECT id FROM mlt_papers SEARCH DENSE(LIKE (:a, 'm06') UNLIKE :u) LIMIT 8", a="m05", u=["m07"])
    plain = [r.id for r in db.query("SELECT id FROM mlt_papers SEARCH DENSE(:v) LIMIT 11", v=vector) if r.id not in ("m05", "m06", "m07")]
    assert [r.id for r in got] == plain[:8]
    terms = top_terms(docs, ["m05"], ["m07"], 25)
    got = db.query("SELECT id FROM mlt_papers SEARCH SPARSE(LIKE 'm05' UNLIKE 'm07') LIMIT 8")
    plain = [r.id for r in db.query("SELECT id FROM mlt_papers SEARCH SPARSE(:m) LIMIT 10", m=terms) if r.id not in ("m05", "m07")]
    assert [r.id for r in got] == plain[:8]
    kept = db.query("SELECT id, score FROM mlt_papers SEARCH DENSE(LIKE 'm05', include_liked => true) LIMIT 3")
    assert kept[0].id == "m05" and kept[0].score == pytest.approx(1.0)
    # HYBRID: no example in any list, and the page still fills; pages of it are one ranking
    hybrid = "SELECT id FROM mlt_papers SEARCH HYBRID(SPARSE(LIKE :ids), DENSE(LIKE :ids UNLIKE 'm09'))"
    whole = [r.id for r in db.query(f"{hybrid} LIMIT 10", ids=["m05", "m06"])]
    assert len(whole) == 10 and not {"m05", "m06", "m09"} & set(whole)
    assert [r.id for m in (0, 5) for r in db.query(f"{hybrid} LIMIT 5 OFFSET {m}", ids=["m05", "m06"])] == whole
    facets = db.query("SELECT year, count(*) FROM mlt_papers SEARCH DENSE(LIKE 'm05') GROUP BY year LIMIT 20")
    assert sum(r.count for r in facets) == 79  # the top 200 candidates: every document but the example


@pytest.mark.parametrize(
    "search, params, message, where",
    [
        ("SPARSE(LIKE 'nope')", {}, "LIKE names document 'nope', and collection 'mlt_papers' has no document with that id", "'nope'"),
        ("DENSE(LIKE ('m01', :b) UNLIKE :c)", {"b": "m02", "c": ["m03", "gone"]}, "LIKE names document 'gone'", ":c"),
        ("DENSE(LIKE ('m01', 'm02') UNLIKE 'm01')", {}, "document 'm01' is both liked and unliked", "'m01')"),
        ("SPARSE(LIKE :ids)", {"ids": [1, 2]}, "LIKE takes document ids (text), got 1", ":ids"),
        ("SPARSE(LIKE :ids)", {"ids": []}, "LIKE needs at least one document id", "LIKE"),
        ("SPARSE(LIKE 'm01', terms => 0)", {}, "terms => 0 is out of range [1, 1000]", "0) LIMIT"),
        ("DENSE(LIKE 'm01', include_liked => 'yes')", {}, "include_liked => expects true or false, got 'yes'", "'yes'"),
        ("DENSE(LIKE 'm01', terms => 3)", {}, "unknown argument 'terms' for DENSE", "terms"),
        ("SPARSE(LIKE 5)", {}, "expected one of", "5"),
        ("SPARSE('text', include_liked => true)", {}, "unknown argument 'include_liked' for SPARSE", "include_liked"),
    ],
)
def test_like_errors_say_what_and_where(db, docs, search, params, message, where):
    text = f"SELECT id FROM mlt_papers SEARCH {search} LIMIT 3"
    with pytest.raises(sparsesql.Error, match=re.escape(message)) as info:
        db.query(text, **params)
    assert info.value.column == text.index(where) + 1, info.value
