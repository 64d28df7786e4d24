"""Facets: GROUP BY over a search's hits (issue 34). Every count is checked against PostgreSQL's
own GROUP BY over the same documents: the ids the search returns with a LIMIT of all of them
(SPARSE: every match; DENSE and HYBRID: the top 200 candidates), with the memory tier and without."""

from __future__ import annotations

import re
from datetime import date, timedelta

import numpy as np
import pytest

import sparsesql

WORDS = "sparse dense retrieval fusion query expansion feedback index".split()


@pytest.fixture(scope="module")
def facet_docs(dsn):
    rng = np.random.default_rng(5)
    db = sparsesql.connect(dsn, sparse_tier=False)
    db.drop_collection("facet_papers", if_exists=True)
    docs = []
    for i in range(300):
        docs.append({
            "id": f"f{i:03d}",
            "title": " ".join(rng.choice(WORDS, size=int(rng.integers(2, 5)))),
            "venue": [None, "SIGIR", "ECIR", "CIKM"][i % 4],
            "year": int(2012 + rng.integers(0, 10)),
            "pages": float(rng.integers(4, 30)),
            "day": (date(2020, 1, 1) + timedelta(days=int(rng.integers(0, 700)))).isoformat(),
            "rating": None if i % 7 == 0 else float(rng.integers(0, 50)) / 8,
            "open": bool(i % 3),
            "vector": rng.standard_normal(4).tolist(),
        })
    db.create_collection("facet_papers", {"title": "text", "venue": "text", "year": "int", "pages": "real", "day": "date",
                                          "rating": "double", "open": "bool"}, dense="none", dim=4, text_fields=["title"])
    db.collection("facet_papers").add(docs)
    yield "facet_papers"
    db.drop_collection("facet_papers", if_exists=True)
    db.close()


def rounded(rows: list[tuple]) -> list[tuple]:
    """Float aggregates to 9 digits: PostgreSQL sums in the order it reads the rows."""
    return [tuple(round(v, 9) if isinstance(v, float) else v for v in row) for row in rows]


def reference(db, name: str, ids: list[str], select: str, group: str, order: str) -> list[tuple]:
    """PostgreSQL's GROUP BY over the given documents, read from the collection's table."""
    return [tuple(r) for r in db.conn.execute(
        f'SELECT {select} FROM sparsesql."{name}__docs" AS d WHERE d.id = ANY(%s) GROUP BY {group} ORDER BY {order}', (ids,)
    ).fetchall()]


@pytest.mark.parametrize("tier", [False, True], ids=["sql", "memory tier"])
@pytest.mark.parametrize(
    "search, depth",
    [("SPARSE('retrieval fusion')", None), ("SPARSE(:q)", None), ("DENSE(:v)", 200), ("HYBRID(SPARSE(:q), DENSE(:v))", 200),
     ("HYBRID(SPARSE(:q), DENSE(:v), candidates => 250)", 250), ("HYBRID(SPARSE(:q), DENSE(:v)) WITH PRF", 200)],
)
def test_counts_equal_a_group_by_over_the_same_documents(dsn, facet_docs, tmp_path, monkeypatch, tier, search, depth):
    monkeypatch.setenv("SPARSESQL_HOME", str(tmp_path))
    params = {"q": "query expansion", "v": [0.3, -1.0, 0.2, 0.5]}
    used = {k: v for k, v in params.items() if f":{k}" in search}
    with sparsesql.connect(dsn, sparse_tier=tier, dense_tier=tier) as db:
        for where in ("", " WHERE year >= 2015"):
            everything = db.query(f"SELECT id FROM {facet_docs} SEARCH {search}{where} LIMIT {depth or 10000}", **used)
            ids = [r.id for r in everything]
            assert ids and (depth is None or len(ids) == depth or where)
            got = db.query(f"SELECT venue, count(*), min(year), max(day), avg(pages), sum(pages) FROM {facet_docs} SEARCH {search}{where} GROUP BY venue LIMIT 100", **used)
            expected = reference(db, facet_docs, ids, "d.venue, count(*), min(d.year), max(d.day), avg(d.pages), sum(d.pages)", "d.venue", "2 DESC, 1 ASC")
            assert rounded([tuple(r.values()) for r in got]) == rounded(expected), (search, where)
            assert list(got[0]) == ["venue", "count", "min_year", "max_day", "avg_pages", "sum_pages"]
            assert sum(r.count for r in got) == len(ids)


def test_buckets_order_and_pages_of_groups(db, facet_docs):
    search = f"FROM {facet_docs} SEARCH SPARSE('retrieval')"
    ids = [r.id for r in db.query(f"SELECT id {search} LIMIT 10000")]
    widths = db.query(f"SELECT width_bucket(pages, 0, 30, 6), count(*) {search} GROUP BY 1 ORDER BY pages LIMIT 100")
    assert [tuple(r.values()) for r in widths] == reference(db, facet_docs, ids, "width_bucket(d.pages, 0, 30, 6), count(*)", "1", "1")
    months = db.query(f"SELECT date_trunc('quarter', day), count(*) {search} GROUP BY 1 ORDER BY 1 DESC LIMIT 100")
    assert [tuple(r.values()) for r in months] == reference(db, facet_docs, ids, "date_trunc('quarter', d.day), count(*)", "1", "1 DESC")
    years = [tuple(r.values()) for r in db.query(f"SELECT year, count(*) {search} GROUP BY year LIMIT 100")]
    assert years == reference(db, facet_docs, ids, "d.year, count(*)", "d.year", "2 DESC, 1 ASC")  # biggest first, then by value
    pages = [tuple(r.values()) for m in (0, 3, 6) for r in db.query(f"SELECT year, count(*) {search} GROUP BY year LIMIT 3 OFFSET {m}")]
    assert pages == years[:9]
    plan = db.explain(f"SELECT year, count(*) {search} GROUP BY year")
    assert "GROUP BY over every document the search matches" in plan


MEMORY_FACETS = [
    ("venue, count(*), count(rating), min(year), max(day), min(venue), max(rating), sum(year), avg(rating), sum(rating)", "d.venue",
     "2 DESC, 1"),
    ("year, count(*), max(venue)", "d.year", "1 DESC"),
    ("day, count(*)", "d.day", "2 DESC, 1"),
    ("rating, count(*), sum(year)", "d.rating", "2 DESC, 1"),
    ("open, count(*), min(pages)", "d.open", "2 DESC, 1"),
    ("width_bucket(rating, 0, 6, 4), count(*)", "1", "1"),
    ("width_bucket(pages, 4.5, 29, 7), count(*), min(pages)", "1", "2 DESC, 1"),
    ("width_bucket(year, 2012.5, 2021, 3), count(*)", "1", "1"),
]


def facet_detail(db) -> str:
    return next(s.detail for s in db.last_stages if s.stage == "facets")


@pytest.mark.parametrize("search", ["", "SEARCH SPARSE('retrieval fusion')", "SEARCH HYBRID(SPARSE(:q), DENSE(:v))"])
@pytest.mark.parametrize("select, group, order", MEMORY_FACETS)
def test_the_memory_tier_groups_its_filter_columns_as_postgresql_does(dsn, facet_docs, tmp_path, monkeypatch, search, select, group, order):
    """With every column in memory the facet never reaches PostgreSQL's GROUP BY, and its rows
    (types included) are the SQL's over the same documents; NULL keys are one group, last."""
    monkeypatch.setenv("SPARSESQL_HOME", str(tmp_path))
    params = {"q": "query expansion", "v": [0.3, -1.0, 0.2, 0.5]}
    used = {k: v for k, v in params.items() if f":{k}" in search}
    order_by = "" if order.startswith("2 DESC") else f" ORDER BY {order.split()[0]}{' DESC' if 'DESC' in order else ''}"
    with sparsesql.connect(dsn, sparse_tier=True, dense_tier=True) as db:
        for where in ("", " WHERE year >= 2015 AND venue <> 'ECIR'", " WHERE rating IS NULL OR open = true"):
            ids = [r.id for r in db.query(f"SELECT id FROM {facet_docs} {search}{where} LIMIT {200 if 'HYBRID' in search else 10000}", **used)]
            got = db.query(f"SELECT {select} FROM {facet_docs} {search}{where} GROUP BY 1{order_by} LIMIT 1000", **used)
            assert facet_detail(db).startswith("grouped in memory"), facet_detail(db)
            cast = select.replace("width_bucket(rating,", "width_bucket(rating::float8,").replace("width_bucket(year,", "width_bucket(year::float8,")
            cast = cast.replace("width_bucket(pages,", "width_bucket(pages::float8,")
            expected = reference(db, facet_docs, ids, re.sub(r"\b(venue|year|day|rating|open|pages)\b", r"d.\1", cast), group, order)
            rows = [tuple(r.values()) for r in got]
            assert rounded(rows) == rounded(expected), (search, where)
            assert [tuple(map(type, r)) for r in rows] == [tuple(map(type, r)) for r in expected]


@pytest.mark.parametrize("select, why", [("avg(pages)", "avg(pages) over real is numeric"), ("avg(year)", "avg(year) over integer is numeric"),
                                         ("sum(pages)", "sum(pages) over real is real"), ("count(title)", "'title' is analysed for search")])
def test_what_the_filter_columns_cannot_compute_is_grouped_in_sql(dsn, facet_docs, tmp_path, monkeypatch, select, why):
    monkeypatch.setenv("SPARSESQL_HOME", str(tmp_path))
    with sparsesql.connect(dsn, sparse_tier=True) as db:
        got = db.query(f"SELECT venue, count(*), {select} FROM {facet_docs} SEARCH SPARSE('retrieval') GROUP BY venue")
        assert facet_detail(db).startswith("grouped in SQL") and why in facet_detail(db), facet_detail(db)
        ids = [r.id for r in db.query(f"SELECT id FROM {facet_docs} SEARCH SPARSE('retrieval') LIMIT 10000")]
        assert sum(r.count for r in got) == len(ids)
        db.query(f"SELECT date_trunc('month', day), count(*) FROM {facet_docs} GROUP BY 1")
        assert "date_trunc runs in SQL" in facet_detail(db)
        db.query(f"SELECT venue, count(*) FROM {facet_docs} SEARCH SPARSE('retrieval') WHERE venue LIKE 'S%' GROUP BY venue")
        assert "LIKE is evaluated in SQL" in facet_detail(db)
        assert "(memory tier)" in db.explain(f"SELECT venue, count(*) FROM {facet_docs} SEARCH SPARSE('retrieval') GROUP BY venue")


def test_width_bucket_in_memory_is_postgresql_float8_formula(db):
    """Values on and beside every bucket edge, where a float formula could round either way."""
    from sparsesql.tier.groups import width_bucket

    rng = np.random.default_rng(3)
    for low, high, count in [(0, 1, 10), (0.1, 0.7, 3), (-5, 3.3, 7), (2012.5, 2021, 3), (0, 100, 10_000)]:
        edges = low + (high - low) * np.arange(count + 1) / count
        x = np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf), rng.uniform(low - 1, high + 1, 500), [-np.inf, np.inf]])
        expected = [r[0] for r in db.conn.execute("SELECT width_bucket(x, %s::float8, %s::float8, %s) FROM unnest(%s::float8[]) AS x",
                                                  (low, high, count, x.tolist())).fetchall()]
        assert width_bucket(x, low, high, count).tolist() == expected, (low, high, count)


@pytest.mark.parametrize(
    "text, message, where",
    [
        ("SELECT year, count(*) FROM {n} SEARCH SPARSE('x')", "count(...) needs GROUP BY", "count"),
        ("SELECT id FROM {n} ORDER BY year", "ORDER BY orders a search's rows by an expression of its score (or the groups of a GROUP BY)", "year"),
        ("SELECT year, count(*) FROM {n} GROUP BY year ORDER BY year * 2", "ORDER BY of a GROUP BY names the result's columns (year, count)", "year *"),
        ("SELECT year, count(*) FROM {n} SEARCH SPARSE('x') GROUP BY venue", "GROUP BY venue is not the select list's grouped field; write GROUP BY year", "venue"),
        ("SELECT year, venue, count(*) FROM {n} GROUP BY year", "GROUP BY groups by one field", "venue,"),
        ("SELECT id, count(*) FROM {n} GROUP BY 1", "with GROUP BY the select list holds the grouped field and aggregates, not 'id'", "id,"),
        ("SELECT year, avg(venue) FROM {n} GROUP BY year", "avg(venue) needs a number; 'venue' is text", "avg"),
        ("SELECT year, count(*) FROM {n} GROUP BY 2", "GROUP BY 2 names an aggregate", "2"),
        ("SELECT year, count(*) FROM {n} GROUP BY 7", "a position in the select list is a whole number from 1 to 2", "7"),
        ("SELECT year, count(*) FROM {n} GROUP BY year ORDER BY total", "ORDER BY total: the result's columns are year, count", "total"),
        ("SELECT width_bucket(venue, 0, 1, 2), count(*) FROM {n} GROUP BY 1", "width_bucket(venue, ...) needs a number", "width_bucket"),
        ("SELECT width_bucket(year, 2020, 2010, 2), count(*) FROM {n} GROUP BY 1", "the low one first; got 2020 and 2010", "2020"),
        ("SELECT date_trunc('fortnight', day), count(*) FROM {n} GROUP BY 1", "date_trunc's unit is one of year, quarter", "'fortnight'"),
        ("SELECT width_bucket(year, 2010, 2020, 5), count(*) FROM {n} GROUP BY year", "write GROUP BY 1 (its position)", "year"),
        ("SELECT DISTINCT ON (venue) year, count(*) FROM {n} GROUP BY year", "DISTINCT ON does not go with GROUP BY", "venue"),
        ("SELECT year, count(*) FROM {n} SEARCH SPARSE('x') DIVERSIFY BY MMR GROUP BY year", "DIVERSIFY does not go with GROUP BY", "DIVERSIFY"),
        ("SELECT year, HIGHLIGHT(title) FROM {n} SEARCH SPARSE('x') GROUP BY year", "HIGHLIGHT does not go with GROUP BY", "HIGHLIGHT"),
        ("SELECT year, count(year, day) FROM {n} GROUP BY year", "count(...) is written count(*) or count(field)", "count"),
        ("SELECT publisher, count(*) FROM {n} SEARCH SPARSE('x') GROUP BY publisher", "unknown field 'publisher'", "publisher"),
    ],
)
def test_facet_errors_say_what_and_where(db, facet_docs, text, message, where):
    text = text.format(n=facet_docs)
    with pytest.raises(sparsesql.Error, match=re.escape(message)) as info:
        db.query(text)
    assert info.value.column == text.rindex(where) + 1 if where in ("2", "7", "year") else text.index(where) + 1, info.value


def test_a_page_and_its_facets_search_once_until_a_write(db, name):
    """The facet statement after a page reuses the page's candidate lists (same collection
    version, search, filter and parameters); a write, another filter with the same values, or the
    caller's own transaction makes the search run again."""
    db.create_collection(name, {"title": "text", "year": "int"}, dense="none", dim=2)
    db.collection(name).add([{"id": f"d{i}", "title": "sparse retrieval" if i % 2 else "dense retrieval", "year": 2018 + i % 3,
                              "vector": [1.0, float(i)]} for i in range(20)])
    search = f"FROM {name} SEARCH HYBRID(SPARSE('retrieval'), DENSE(:v)) WHERE year > :y"

    def reused() -> bool:
        return any("the same list as an earlier search" in s.detail for s in db.last_stages)

    db.query(f"SELECT id {search} LIMIT 5", v=[1, 0], y=2018)
    assert not reused()
    facets = db.query(f"SELECT year, count(*) {search} GROUP BY year", v=[1, 0], y=2018)
    assert reused() and sum(r.count for r in facets) == 13
    db.query(f"SELECT year, count(*) FROM {name} SEARCH HYBRID(SPARSE('retrieval'), DENSE(:v)) WHERE year < :y GROUP BY year", v=[1, 0], y=2018)
    assert not reused()  # another filter, the same bound values
    db.collection(name).add([{"id": "new", "title": "retrieval", "year": 2020, "vector": [1.0, 0.5]}])
    after = db.query(f"SELECT year, count(*) {search} GROUP BY year", v=[1, 0], y=2018)
    assert not reused() and sum(r.count for r in after) == 14
    with db.conn.transaction():
        db.query(f"SELECT year, count(*) {search} GROUP BY year", v=[1, 0], y=2018)
        assert not reused()


def test_a_page_and_its_facets_read_one_snapshot_in_one_repeatable_read_transaction(db, dsn, name):
    """Asked in one REPEATABLE READ transaction, a results page and its facets see the same
    documents, whatever another session writes in between."""
    import psycopg

    db.create_collection(name, {"title": "text", "year": "int"}, dense="none", dim=2)
    db.collection(name).add([{"id": f"d{i}", "title": "sparse retrieval", "year": 2020 + i % 2, "vector": [1.0, float(i)]} for i in range(6)])
    with sparsesql.connect(dsn, sparse_tier=False) as other:
        db.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        try:
            with db.conn.transaction():
                page = db.query(f"SELECT id FROM {name} SEARCH SPARSE('retrieval') LIMIT 100")
                other.collection(name).add([{"id": "late", "title": "retrieval", "year": 2020, "vector": [1.0, 0.0]}])
                facets = db.query(f"SELECT year, count(*) FROM {name} SEARCH SPARSE('retrieval') GROUP BY year")
            assert len(page) == sum(r.count for r in facets) == 6
        finally:
            db.conn.isolation_level = None
    assert sum(r.count for r in db.query(f"SELECT year, count(*) FROM {name} SEARCH SPARSE('retrieval') GROUP BY year")) == 7
