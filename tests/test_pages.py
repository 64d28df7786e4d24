"""Pages of a search: `LIMIT n OFFSET m` is rows [m, m + n) of the ranking `LIMIT m + n` returns,
for every kind of search, so pages laid end to end are the ranking, neither repeating nor
skipping a document (issue 34)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as strat

import sparsesql
from sparsesql.lang.check_page import MAX_LIMIT

WORDS = "ranking retrieval sparse dense fusion query expansion feedback index posting vector graph coverage".split()
DIM = 8
N = 150
SEARCHES = [
    "SPARSE(:q)",
    "DENSE(:v)",
    "HYBRID(SPARSE(:q), DENSE(:v))",
    "HYBRID(SPARSE(:q), DENSE(:v), fusion => rrf(k => 60))",
    "HYBRID(SPARSE(:q), DENSE(:v)) WITH PRF",
    "SPARSE(:q) WITH PRF(depth => 3)",
    "HYBRID(SPARSE(:q), DENSE(:v)) DIVERSIFY BY MMR(lambda => 0.7)",
]


@pytest.fixture(scope="module")
def papers(dsn):
    """150 documents of three to six words of a small vocabulary (many tie on BM25), random
    vectors, and a year to filter on."""
    rng = np.random.default_rng(11)
    db = sparsesql.connect(dsn, sparse_tier=False)
    db.drop_collection("pages_papers", if_exists=True)
    docs = []
    for i in range(N):
        words = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 7))))
        docs.append({"id": f"p{i:03d}", "title": words, "year": int(2010 + i % 12), "vector": rng.standard_normal(DIM).tolist()})
    db.create_collection("pages_papers", {"title": "text", "year": "int"}, dense="none", dim=DIM).add(docs)
    yield db, "pages_papers"
    db.drop_collection("pages_papers", if_exists=True)
    db.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    search=strat.sampled_from(SEARCHES),
    where=strat.sampled_from(["", " WHERE year >= 2015", " WHERE year IN (2011, 2013, 2017)"]),
    size=strat.integers(1, 12),
    pages=strat.integers(1, 5),
    words=strat.lists(strat.sampled_from(WORDS), min_size=1, max_size=3),
    seed=strat.integers(0, 1000),
)
def test_pages_laid_end_to_end_are_the_ranking(papers, search, where, size, pages, words, seed):
    db, name = papers
    params = {"q": " ".join(words), "v": np.random.default_rng(seed).standard_normal(DIM).tolist()}
    used = {k: v for k, v in params.items() if f":{k}" in search}
    whole = db.query(f"SELECT id, score FROM {name} SEARCH {search}{where} LIMIT {size * pages}", **used)
    laid = []
    for page in range(pages):
        laid += db.query(f"SELECT id, score FROM {name} SEARCH {search}{where} LIMIT {size} OFFSET {page * size}", **used)
    assert [(r.id, r.score) for r in laid] == [(r.id, r.score) for r in whole]
    assert len({r.id for r in laid}) == len(laid)


def test_offset_without_a_search_and_in_either_order(papers):
    db, name = papers
    everything = [r.id for r in db.query(f"SELECT id FROM {name} WHERE year = 2012 LIMIT 100")]
    assert everything == sorted(everything) and len(everything) > 6
    assert [r.id for r in db.query(f"SELECT id FROM {name} WHERE year = 2012 OFFSET 2 LIMIT 3")] == everything[2:5]
    assert [r.id for r in db.query(f"SELECT id FROM {name} WHERE year = 2012 LIMIT 3 OFFSET :m", m=4)] == everything[4:7]
    assert [r.id for r in db.query(f"SELECT id FROM {name} WHERE year = 2012 OFFSET 5")] == everything[5:15]  # LIMIT 10 by default
    assert db.query(f"SELECT id FROM {name} SEARCH SPARSE('ranking') LIMIT 5 OFFSET {N}") == []  # past the last match


def test_a_page_of_a_diversified_search_grows_its_candidate_pool(papers):
    """DIVERSIFY's default pool (100) grows to the page's end; a pool given explicitly must hold it."""
    db, name = papers
    search = "HYBRID(SPARSE('ranking fusion'), DENSE(:v)) DIVERSIFY BY MMR"
    v = [1.0] * DIM
    assert len(db.query(f"SELECT id FROM {name} SEARCH {search} LIMIT 10 OFFSET 100", v=v)) == 10
    with pytest.raises(sparsesql.CheckError, match=r"DIVERSIFY chooses 60 documents \(LIMIT \+ OFFSET\) from 50 candidates; raise candidates => to at least 60"):
        db.query(f"SELECT id FROM {name} SEARCH HYBRID(SPARSE('x'), DENSE(:v)) DIVERSIFY BY MMR(candidates => 50) LIMIT 10 OFFSET 50", v=v)


@pytest.mark.parametrize(
    "tail, error, where",
    [
        (f"LIMIT 10 OFFSET {MAX_LIMIT - 5}", f"LIMIT 10 OFFSET {MAX_LIMIT - 5} reads to row {MAX_LIMIT + 5} of the ranking, past its end at row {MAX_LIMIT} (the result window)", str(MAX_LIMIT - 5)),
        ("LIMIT 10 OFFSET -1", "OFFSET must not be negative (got -1)", "-1"),
        ("LIMIT -3 OFFSET 1", "LIMIT must not be negative (got -3)", "-3"),
        ("LIMIT 5 OFFSET 2.5", "OFFSET expects an integer, got 2.5", "2.5"),
        ("LIMIT 5 OFFSET 1 OFFSET 2", "OFFSET is given twice", "OFFSET 2"),
        ("LIMIT 5 OFFSET", "OFFSET needs a number or a parameter", None),
        ("LIMIT 5 OFFSET 'x'", "OFFSET needs a number or a parameter", "'x'"),
    ],
)
def test_bad_pages_are_refused_where_they_are_written(papers, tail, error, where):
    db, name = papers
    text = f"SELECT id FROM {name} SEARCH SPARSE('ranking') {tail}"
    with pytest.raises(sparsesql.Error, match=error.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")) as info:
        db.query(text)
    if where is not None:
        assert info.value.column == text.rindex(where) + 1


# ----------------------------------------------------------------------------- cursors


def pages_by_cursor(db, text: str, size: int, pages: int, **params) -> list:
    """Read `pages` pages of `size` rows, each AFTER the last row's cursor of the one before."""
    laid, cursor = [], None
    for _ in range(pages):
        after = " AFTER :cursor" if cursor else ""
        rows = db.query(f"{text} LIMIT {size}{after}", **params, **({"cursor": cursor} if cursor else {}))
        laid += rows
        if not rows:
            break
        cursor = rows[-1].cursor
    return laid


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    search=strat.sampled_from(SEARCHES),
    where=strat.sampled_from(["", " WHERE year >= 2015"]),
    size=strat.integers(1, 9),
    pages=strat.integers(1, 5),
    words=strat.lists(strat.sampled_from(WORDS), min_size=1, max_size=3),
    seed=strat.integers(0, 1000),
)
def test_pages_after_each_cursor_are_the_ranking(papers, search, where, size, pages, words, seed):
    db, name = papers
    params = {"q": " ".join(words), "v": np.random.default_rng(seed).standard_normal(DIM).tolist()}
    used = {k: v for k, v in params.items() if f":{k}" in search}
    text = f"SELECT id, score, cursor FROM {name} SEARCH {search}{where}"
    whole = db.query(f"{text} LIMIT {size * pages}", **used)
    laid = pages_by_cursor(db, text, size, pages, **used)
    assert [(r.id, r.score) for r in laid] == [(r.id, r.score) for r in whole]
    assert [r.cursor for r in laid] == [r.cursor for r in whole]  # a row's cursor is the same on every page


def test_a_cursor_is_opaque_signed_and_belongs_to_its_search(papers):
    db, name = papers
    db.drop_collection("pages_other", if_exists=True)
    db.create_collection("pages_other", {"title": "text"}, dense="none", dim=DIM).add([{"id": "o", "title": "ranking", "vector": [1.0] * DIM}])
    text = f"SELECT id, cursor FROM {name} SEARCH SPARSE(:q)"
    first = db.query(f"{text} LIMIT 3", q="ranking")
    cursor = first[-1].cursor
    assert isinstance(cursor, str) and cursor.startswith("c1.") and len(cursor) < 200 and "ranking" not in cursor
    # the columns: cursor is a column like score, not part of *
    assert "cursor" not in db.query(f"SELECT * FROM {name} SEARCH SPARSE('ranking') LIMIT 1")[0]
    # another search (other text, other parameter values) refuses it
    for other, params in ((f"SELECT id FROM {name} SEARCH SPARSE(:q) WHERE year > 2000", {"q": "ranking"}),
                          (text, {"q": "fusion"}),
                          (f"SELECT id FROM {name} SEARCH DENSE(:v)", {"v": [1.0] * DIM}),
                          ("SELECT id FROM pages_other SEARCH SPARSE(:q)", {"q": "ranking"})):  # another collection
        with pytest.raises(sparsesql.CheckError, match="this cursor comes from another search") as info:
            db.query(f"{other} LIMIT 3 AFTER :c", c=cursor, **params)
        assert info.value.column == len(other) + len(" LIMIT 3 AFTER ") + 1
    # the same search with other LIMIT, and the select list, takes it
    assert [r.id for r in db.query(f"SELECT id FROM {name} SEARCH SPARSE(:q) LIMIT 2 AFTER :c", q="ranking", c=cursor)] == \
        [r.id for r in db.query(f"{text} LIMIT 2 OFFSET 3", q="ranking")]
    # altered, damaged, or not a cursor at all
    head, payload, mac = cursor.split(".")
    forged = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    cases = [
        (f"{head}.{payload}.{mac[::-1]}", "the cursor was altered, or made by another database"),
        (f"{head}.{forged}.{mac}", "the cursor was altered|the cursor is damaged|comes from another search"),
        (f"{head}.@@@.{mac}", "the cursor is damaged: its content cannot be read"),
        ("page-2", "this is not a cursor sparsesql made: take it from a row's cursor column"),
        ("c1." + "x" * 600, "a cursor is at most 512 characters, this one 603"),
        (42, "a cursor is the text of a row's cursor column, got int"),
    ]
    for bad, message in cases:
        with pytest.raises(sparsesql.Error, match=message):
            db.query(f"{text} LIMIT 3 AFTER :c", q="ranking", c=bad)
    db.drop_collection("pages_other")


def test_cursor_errors_name_what_is_wrong(papers):
    db, name = papers
    cursor = db.query(f"SELECT cursor FROM {name} SEARCH SPARSE('ranking') LIMIT 1")[0].cursor
    cases = [
        (f"SELECT id, cursor FROM {name} LIMIT 3", "cursor needs a SEARCH clause: it names a row of the ranking"),
        (f"SELECT id FROM {name} LIMIT 3 AFTER :c", "cursors name rows of a ranking: AFTER and the cursor column need a SEARCH clause"),
        (f"SELECT id FROM {name} SEARCH SPARSE('ranking') LIMIT 3 OFFSET 3 AFTER :c", "OFFSET and AFTER both say where the page starts; give one"),
        (f"SELECT id FROM {name} SEARCH SPARSE('ranking') LIMIT {MAX_LIMIT + 1} AFTER :c", f"LIMIT {MAX_LIMIT + 1} exceeds the maximum of {MAX_LIMIT}"),
        (f"SELECT id FROM {name} SEARCH SPARSE('ranking') AFTER :missing", "parameter :missing is not bound"),
    ]
    for text, message in cases:
        with pytest.raises(sparsesql.Error, match=message.replace("(", r"\(").replace(")", r"\)")):
            db.query(text, c=cursor)


def test_after_writes_the_page_starts_past_the_cursors_row_wherever_it_went(db, name):
    """Nothing written: AFTER is OFFSET. A row written before the cursor's moves it down: the
    page starts past it, nothing repeated. The cursor's row deleted: the page starts past where
    its score and document would rank (search_after)."""
    db.create_collection(name, {"title": "text"}, dense="none", dim=2)
    coll = db.collection(name)
    coll.add([{"id": f"d{i}", "title": " ".join(["apple"] * (10 - i) + ["pear"] * i), "vector": [1.0, float(i)]} for i in range(10)])
    text = f"SELECT id, cursor FROM {name} SEARCH SPARSE('apple')"
    first = db.query(f"{text} LIMIT 3")
    assert [r.id for r in first] == ["d0", "d1", "d2"]
    cursor = first[-1].cursor
    coll.add([{"id": "new", "title": "apple apple apple apple apple apple apple apple apple apple apple", "vector": [1.0, 0.0]}])
    assert [r.id for r in db.query(f"{text} LIMIT 3", )][:1] == ["new"]  # d2 is now fourth
    assert [r.id for r in db.query(f"{text} LIMIT 3 AFTER :c", c=cursor)] == ["d3", "d4", "d5"]
    coll.delete(["d2"])
    assert [r.id for r in db.query(f"{text} LIMIT 3 AFTER :c", c=cursor)] == ["d3", "d4", "d5"]


# ----------------------------------------------------------------------------- collapse


@pytest.mark.parametrize("tier", [False, True], ids=["sql", "memory tier"])
@pytest.mark.parametrize("where", ["", " WHERE year >= 2015"])
def test_a_sparse_search_pages_past_the_window_by_cursor(dsn, papers, tmp_path, monkeypatch, tier, where):
    """Past the result window (made 12 rows here), a SPARSE search's cursor pages seek: each is
    the top of the documents ranking after the cursor's (score, doc id), so pages laid end to end
    are the whole ranking (ties on BM25 included), in memory and in SQL; other searches, and
    OFFSET, stop at the window with an error that says how to go on."""
    from sparsesql.lang import check_page

    monkeypatch.setenv("SPARSESQL_HOME", str(tmp_path))
    _, name = papers
    text = f"SELECT id, score, cursor FROM {name} SEARCH SPARSE('ranking fusion'){where}"
    with sparsesql.connect(dsn, sparse_tier=tier) as db:
        whole = db.query(f"{text} LIMIT 1000")
        assert 40 < len(whole) < N
        monkeypatch.setattr(check_page, "MAX_LIMIT", 12)
        laid = pages_by_cursor(db, text, 5, 100)
        assert [(r.id, r.score) for r in laid] == [(r.id, r.score) for r in whole]
        assert tier or any("sparse_after_score" in (s.params or {}) for s in db.last_stages)  # the seek ran in SQL
        assert "past the result window: the ranking starts after that row's document" in db.explain(f"{text} LIMIT 5 AFTER :c", c=laid[29].cursor)
        deep = db.query(f"{text} LIMIT 5 AFTER :c", c=laid[29].cursor)
        assert [r.id for r in deep] == [r.id for r in whole[30:35]]
        assert [r.id for r in db.query(f"{text} LIMIT 5 AFTER :c", c=deep[-1].cursor)] == [r.id for r in whole[35:40]]
        with pytest.raises(sparsesql.CheckError, match="past its end at row 12 \\(the result window\\); page past it by cursor"):
            db.query(f"{text} LIMIT 5 OFFSET 10")
        hybrid = f"SELECT id, cursor FROM {name} SEARCH HYBRID(SPARSE('ranking'), DENSE(:v))"
        rows = pages_by_cursor(db, hybrid, 5, 2, v=[1.0] * DIM)
        with pytest.raises(sparsesql.CheckError, match="only a SPARSE search \\(without PRF, DIVERSIFY or DISTINCT ON\\) pages past it"):
            db.query(f"{hybrid} LIMIT 5 AFTER :c", c=rows[-1].cursor, v=[1.0] * DIM)


@pytest.mark.parametrize("tier", [False, True], ids=["sql", "memory tier"])
def test_past_the_window_a_write_neither_repeats_nor_skips_a_row(dsn, name, monkeypatch, tmp_path, tier):
    """Seeking pages start after the cursor's row where it now ranks (writes change every BM25
    score through the collection's statistics): a document added before it is not shown, one
    added after it is, and no row repeats."""
    from sparsesql.lang import check_page

    monkeypatch.setenv("SPARSESQL_HOME", str(tmp_path))
    with sparsesql.connect(dsn, sparse_tier=tier) as db:
        db.create_collection(name, {"title": "text"}, dense="none", dim=2)
        db.collection(name).add([{"id": f"d{i:02d}", "title": "retrieval " + "filler " * i, "vector": [1.0, 0.0]} for i in range(30)])
        monkeypatch.setattr(check_page, "MAX_LIMIT", 8)
        text = f"SELECT id, cursor FROM {name} SEARCH SPARSE('retrieval')"
        first = db.query(f"{text} LIMIT 8")
        second = db.query(f"{text} LIMIT 8 AFTER :c", c=first[-1].cursor)
        db.collection(name).add([{"id": "short", "title": "retrieval", "vector": [1.0, 0.0]},
                                 {"id": "long", "title": "retrieval " + "filler " * 60, "vector": [1.0, 0.0]}])
        cursor, rest = second[-1].cursor, []
        while rows := db.query(f"{text} LIMIT 8 AFTER :c", c=cursor):
            rest += rows
            cursor = rows[-1].cursor
        ids = [r.id for r in first + second + rest]
        assert len(ids) == len(set(ids)) == 31 and "long" in ids and "short" not in ids
        db.drop_collection(name)


def collapse(rows, field: str) -> list:
    seen, out = set(), []
    for r in rows:
        if r[field] not in seen:
            seen.add(r[field])
            out.append(r)
    return out


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    search=strat.sampled_from(SEARCHES[:5]),
    where=strat.sampled_from(["", " WHERE year >= 2013"]),
    size=strat.integers(1, 4),
    pages=strat.integers(1, 4),
    words=strat.lists(strat.sampled_from(WORDS), min_size=1, max_size=3),
    seed=strat.integers(0, 1000),
)
def test_distinct_on_keeps_the_best_row_per_value_and_pages_never_repeat_one(papers, search, where, size, pages, words, seed):
    db, name = papers
    params = {"q": " ".join(words), "v": np.random.default_rng(seed).standard_normal(DIM).tolist()}
    used = {k: v for k, v in params.items() if f":{k}" in search}
    ranking = db.query(f"SELECT id, year, score FROM {name} SEARCH {search}{where} LIMIT 1000", **used)
    text = f"SELECT DISTINCT ON (year) id, year, score, cursor FROM {name} SEARCH {search}{where}"
    whole = db.query(f"{text} LIMIT {size * pages}", **used)
    assert [(r.id, r.score) for r in whole] == [(r.id, r.score) for r in collapse(ranking, "year")[: size * pages]]
    by_offset = [r for k in range(pages) for r in db.query(f"{text} LIMIT {size} OFFSET {k * size}", **used)]
    by_cursor = pages_by_cursor(db, text, size, pages, **used)
    for laid in (by_offset, by_cursor):
        assert [r.id for r in laid] == [r.id for r in whole]
        assert len({r.year for r in laid}) == len(laid)


def test_distinct_on_errors_and_explain(papers):
    db, name = papers
    with pytest.raises(sparsesql.CheckError, match="unknown field 'venue'.*DISTINCT ON takes id or a declared field") as info:
        db.query(f"SELECT DISTINCT ON (venue) id FROM {name} SEARCH SPARSE('ranking')")
    assert info.value.column == len("SELECT DISTINCT ON (") + 1
    # without a SEARCH: the first row per value in insertion order; the field need not be selected
    rows = db.query(f"SELECT DISTINCT ON (year) id FROM {name} LIMIT 20")
    assert [r.id for r in rows] == [f"p{i:03d}" for i in range(12)] and list(rows[0]) == ["id"]
    plan = db.explain(f"SELECT DISTINCT ON (year) id, HIGHLIGHT(title) FROM {name} SEARCH SPARSE('Ranking fusion') LIMIT 5 OFFSET 5")
    assert "collapse: DISTINCT ON (year): the best row per value among the ranking's first 1000 rows" in plan
    assert "page: OFFSET 5" in plan and "highlight: highlight_title (lexical, marking the stems fusion, rank)" in plan
