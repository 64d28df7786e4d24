"""Bad and extreme values each get a clear error naming what is wrong (or a well-defined empty
answer), and the database is unchanged."""

from __future__ import annotations

import math

import pytest

import sparsesql


@pytest.fixture
def coll(db, name):
    c = db.create_collection(name, {"body": "text"}, dense="none", dim=3)
    c.add([{"id": f"l{i}", "body": f"word{i % 4} common", "vector": [1, i, 0]} for i in range(12)])
    return name


@pytest.mark.parametrize(
    "clause, params, error",
    [
        ("SEARCH DENSE(:v) LIMIT 3", {"v": [math.inf, 0, 0]}, "NaN or infinite"),
        ("SEARCH DENSE(:v) LIMIT 3", {"v": [-math.inf, 1, 0]}, "NaN or infinite"),
        ("SEARCH DENSE(:v) LIMIT 3", {"v": [1, 0]}, "has 2 dimensions; collection .* stores 3"),
        ("SEARCH SPARSE('x') LIMIT -1", {}, "LIMIT"),
        ("SEARCH SPARSE('x') LIMIT 10001", {}, "exceeds the maximum of 10000"),
        ("SEARCH SPARSE('x') LIMIT :n", {"n": 10**12}, "exceeds the maximum"),
        ("SEARCH SPARSE('x') WITH PRF(depth => 100000) LIMIT 3", {}, "depth => 100000 is out of range"),
        ("SEARCH SPARSE('x') DIVERSIFY BY COVERAGE(candidates => 20000) LIMIT 3", {}, "candidates => 20000 is out of range"),
        ("SEARCH SPARSE('x', frobnicate => 1) LIMIT 3", {}, "unknown argument 'frobnicate'"),
        ("SEARCH HYBRID(SPARSE('x'), DENSE(:v), fusion => magic()) LIMIT 3", {"v": [1, 0, 0]}, "magic"),
    ],
)
def test_bad_values_are_refused_and_change_nothing(db, coll, clause, params, error):
    version = db.collection(coll).info.version
    with pytest.raises(sparsesql.Error, match=error):
        db.query(f"SELECT id FROM {coll} {clause}", **params)
    assert db.collection(coll).info.version == version and db.collection(coll).count() == 12


@pytest.mark.parametrize(
    "search",
    [
        "SPARSE('')",
        "SPARSE('the of and')",  # stopwords only: no terms
        "SPARSE('zzzunknown')",
        "SPARSE('') WITH PRF DIVERSIFY BY COVERAGE",
    ],
)
def test_queries_without_usable_terms_return_no_rows(db, coll, search):
    assert db.query(f"SELECT id FROM {coll} SEARCH {search} LIMIT 5") == []


def test_prf_and_diversify_beyond_the_collection(db, coll):
    rows = db.query(
        f"SELECT id FROM {coll} SEARCH HYBRID(SPARSE('word1'), DENSE(:v)) WITH PRF(depth => 1000) "
        f"DIVERSIFY BY COVERAGE(candidates => 10000) LIMIT 10000",
        v=[1, 2, 0],
    )
    assert sorted(r.id for r in rows) == sorted(f"l{i}" for i in range(12))
