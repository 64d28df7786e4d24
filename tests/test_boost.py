"""Score boosts (issue 35): `ORDER BY <expression of score and fields>` reorders a search's top
candidates. Every order is checked against the unboosted candidates sorted here by the formula
written out in Python (Elasticsearch's decay functions from their definitions)."""

from __future__ import annotations

import math
import re
from datetime import date

import numpy as np
import pytest

import sparsesql

WORDS = "sparse dense retrieval fusion query expansion feedback index posting vector graph coverage ranking".split()
DIM = 4
ORIGIN = date(2024, 3, 1)


@pytest.fixture(scope="module")
def papers(dsn):
    rng = np.random.default_rng(8)
    docs = [{"id": f"b{i:03d}", "title": " ".join(rng.choice(WORDS, size=int(rng.integers(3, 8)))),
             "cites": None if i % 6 == 0 else int(rng.integers(0, 500)), "rating": float(rng.integers(1, 10)) / 2,
             "day": date.fromordinal(ORIGIN.toordinal() + int(rng.integers(-200, 200))).isoformat(),
             "vector": rng.standard_normal(DIM).tolist()} for i in range(250)]
    with sparsesql.connect(dsn, sparse_tier=False) as db:
        db.drop_collection("boost_papers", if_exists=True)
        db.create_collection("boost_papers", {"title": "text", "cites": "int", "rating": "double", "day": "date"}, dense="none", dim=DIM).add(docs)
        doc_ids = dict(db.conn.execute('SELECT id, doc_id FROM sparsesql."boost_papers__docs"').fetchall())
        yield {d["id"]: {**d, "doc_id": doc_ids[d["id"]], "day": date.fromisoformat(d["day"])} for d in docs}
        db.drop_collection("boost_papers", if_exists=True)


def exp_decay(x, origin, scale, offset=0.0, decay=0.5):
    return math.exp(math.log(decay) / scale * max(0.0, abs(x - origin) - offset))


def gauss_decay(x, origin, scale, offset=0.0, decay=0.5):
    sigma2 = -scale**2 / (2 * math.log(decay))
    return math.exp(-max(0.0, abs(x - origin) - offset) ** 2 / (2 * sigma2))


def linear_decay(x, origin, scale, offset=0.0, decay=0.5):
    s = scale / (1 - decay)
    return max(0.0, (s - max(0.0, abs(x - origin) - offset)) / s)


def days(d: date) -> float:
    return float((d - date(1970, 1, 1)).days)


FORMULAS = [
    ("score * (1 + 0.1 * ln(1 + cites))", lambda s, d: None if d["cites"] is None else s * (1 + 0.1 * math.log(1 + d["cites"]))),
    ("score * (1 + 0.1 * ln(1 + coalesce(cites, 0)))", lambda s, d: s * (1 + 0.1 * math.log(1 + (d["cites"] or 0)))),
    ("score + rating / 10 - 2 ^ -rating", lambda s, d: s + d["rating"] / 10 - 2 ** -d["rating"]),
    ("score * gauss_decay(day, '2024-03-01', 30)", lambda s, d: s * gauss_decay(days(d["day"]), days(ORIGIN), 30)),
    ("score * exp_decay(day, '2024-03-01', 60, 7, 0.3)", lambda s, d: s * exp_decay(days(d["day"]), days(ORIGIN), 60, 7, 0.3)),
    ("score * linear_decay(rating, 3, 2)", lambda s, d: s * linear_decay(d["rating"], 3, 2)),
    ("greatest(score, least(cites, 2) / 100) + sqrt(abs(rating - 2))",
     lambda s, d: max(s, min(x for x in (d["cites"], 2) if x is not None) / 100) + math.sqrt(abs(d["rating"] - 2))),
    ("-log(rating) * power(score, 2) DESC", lambda s, d: -math.log10(d["rating"]) * s**2),
]


@pytest.mark.parametrize("tier", [False, True], ids=["sql", "memory tier"])
@pytest.mark.parametrize("search", ["SPARSE('retrieval fusion')", "DENSE(:v)", "HYBRID(SPARSE('retrieval fusion'), DENSE(:v))"])
@pytest.mark.parametrize("formula, reference", FORMULAS, ids=[f for f, _ in FORMULAS])
def test_the_order_is_the_candidates_sorted_by_the_formula(dsn, papers, tmp_path, monkeypatch, tier, search, formula, reference):
    monkeypatch.setenv("SPARSESQL_HOME", str(tmp_path))
    v = [0.5, -1.0, 0.3, 0.8]
    params = {"v": v} if ":v" in search else {}
    with sparsesql.connect(dsn, sparse_tier=tier, dense_tier=tier) as db:
        for where in ("", " WHERE rating >= 2"):
            candidates = db.query(f"SELECT id, score FROM boost_papers SEARCH {search}{where} LIMIT 200", **params)
            expected = []
            for row in candidates:
                value = reference(row.score, papers[row.id])
                expected.append((value is None, -(value or 0.0), papers[row.id]["doc_id"], row.id, value))
            expected.sort()
            got = db.query(f"SELECT id, score FROM boost_papers SEARCH {search}{where} ORDER BY {formula} LIMIT 30", **params)
            assert [r.id for r in got] == [e[3] for e in expected[:30]], (formula, where)
            assert [r.score for r in got] == pytest.approx([e[4] for e in expected[:30]], rel=1e-9)
            pages = [r.id for m in (0, 10, 20) for r in db.query(
                f"SELECT id FROM boost_papers SEARCH {search}{where} ORDER BY {formula} LIMIT 10 OFFSET {m}", **params)]
            assert pages == [r.id for r in got]


def test_null_values_rank_last_and_explain_shows_the_stage(db, papers):
    got = db.query("SELECT id, cites, score FROM boost_papers SEARCH SPARSE('retrieval') ORDER BY score * cites LIMIT 200")
    nulls = [i for i, r in enumerate(got) if r.cites is None]
    assert nulls and nulls == list(range(len(got) - len(nulls), len(got))) and all(got[i].score is None for i in nulls)
    plan = db.explain("SELECT id FROM boost_papers SEARCH SPARSE('retrieval') ORDER BY score * (1 + cites / 100) LIMIT 5")
    assert "boost (SQL + Python): ORDER BY score * (1 + (cites / 100)): the top 200 of sparse reordered by it" in plan
    cursor = db.query("SELECT id, cursor FROM boost_papers SEARCH SPARSE('retrieval') ORDER BY score * rating LIMIT 5")
    after = db.query("SELECT id FROM boost_papers SEARCH SPARSE('retrieval') ORDER BY score * rating LIMIT 5 AFTER :c", c=cursor[-1].cursor)
    assert [r.id for r in cursor + after] == [r.id for r in db.query(
        "SELECT id FROM boost_papers SEARCH SPARSE('retrieval') ORDER BY score * rating LIMIT 10")]
    with pytest.raises(sparsesql.CheckError, match="this cursor comes from another search"):  # the boost is part of the search
        db.query("SELECT id FROM boost_papers SEARCH SPARSE('retrieval') LIMIT 5 AFTER :c", c=cursor[-1].cursor)


@pytest.mark.parametrize(
    "order, message, where",
    [
        ("ORDER BY score ASC", "a search ranks its best rows first", "score"),
        ("ORDER BY title", "ORDER BY reads numbers and dates; 'title' is text", "title"),
        ("ORDER BY nope * score", "unknown field 'nope'", "nope"),
        ("ORDER BY day * score", "* takes numbers; a date enters a boost through exp_decay", "day"),
        ("ORDER BY score, cites", "a search orders by one expression of its score", "cites"),
        ("ORDER BY frob(score)", "unknown function frob(...) in ORDER BY", "frob"),
        ("ORDER BY ln(score, 2)", "ln(...) takes 1 arguments, got 2", "ln"),
        ("ORDER BY exp_decay(day, 'soon', 3)", "a date field's origin is a date ('2024-01-31'), a timestamp or now(), got 'soon'", "'soon'"),
        ("ORDER BY gauss_decay(rating, 3, 0)", "gauss_decay's scale must be above 0, got 0", "0)"),
        ("ORDER BY exp_decay(rating, 3, 1, 0, 1.5)", "exp_decay's decay must be between 0 and 1 (exclusive), got 1.5", "1.5"),
        ("ORDER BY ln(cites - 1000)", "ORDER BY: ln of zero or a negative number for document", "ln"),
        ("ORDER BY score / (rating - rating)", "ORDER BY: division by zero for document", "score /"),
        ("ORDER BY score * :w", "ORDER BY computes with numbers; True is not one", ":w"),
        ("ORDER BY 2", "not a position", "2"),
    ],
)
def test_bad_boosts_are_refused_where_they_are_written(db, papers, order, message, where):
    text = f"SELECT id FROM boost_papers SEARCH SPARSE('retrieval') {order} LIMIT 5"
    with pytest.raises(sparsesql.Error, match=re.escape(message)) as info:
        db.query(text, w=True)
    assert info.value.column == text.index(where, text.index("ORDER BY")) + 1, info.value
    assert "^" in str(info.value)


def test_order_by_without_a_search_or_with_diversify_is_refused(db, papers):
    with pytest.raises(sparsesql.CheckError, match="rows without a search come by insertion"):
        db.query("SELECT id FROM boost_papers ORDER BY cites")
    with pytest.raises(sparsesql.CheckError, match="ORDER BY does not go with DIVERSIFY"):
        db.query("SELECT id FROM boost_papers SEARCH HYBRID(SPARSE('x'), DENSE(:v)) DIVERSIFY BY MMR ORDER BY score LIMIT 3", v=[1, 0, 0, 0])


def test_with_the_memory_tier_the_fields_come_from_the_filter_columns(dsn, papers, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSESQL_HOME", str(tmp_path))
    with sparsesql.connect(dsn, sparse_tier=True, dense_tier=True) as db:
        db.query("SELECT id FROM boost_papers SEARCH SPARSE('retrieval') ORDER BY score * coalesce(cites, 1) * exp_decay(day, '2024-03-01', 30) LIMIT 5")
        detail = next(s.detail for s in db.last_stages if s.stage == "boost")
        assert detail == "fields from the filter columns in memory"
        with pytest.raises(sparsesql.CheckError, match=r"ORDER BY: ln of zero or a negative number for document 'b\d{3}'"):
            db.query("SELECT id FROM boost_papers SEARCH SPARSE('retrieval') ORDER BY ln(cites - 1000) LIMIT 5")
        db.query("SELECT id FROM boost_papers SEARCH SPARSE('retrieval') ORDER BY score * 2 LIMIT 5")
        assert next(s.detail for s in db.last_stages if s.stage == "boost") == "no field to read"
