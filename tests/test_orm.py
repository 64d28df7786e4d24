"""The ORM client against a real server: the same ids and scores as the dialect (sync and async,
on the shared sets), filters translated faithfully, writes only through sparsesql, and clear
errors for what it cannot express."""

from __future__ import annotations

import asyncio
import json
from datetime import date

import pytest
from sqlalchemy import Date, cast, create_engine, func, not_, or_, select, Integer
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session

from sparsesql.errors import CheckError, Error, IngestError
from sparsesql.eval.beir import test_queries
from sparsesql.eval.run import load_beir
from sparsesql.orm import (
    like,
    Document,
    add,
    collection_spec,
    coverage,
    create_collection,
    dense,
    hybrid,
    linear,
    mmr,
    rm3,
    rrf,
    search,
    sparse,
)
from tests.conftest import beir_dir
from tests.test_injection import PAYLOADS, fingerprint


def url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+psycopg://", 1)


def mapped(collection: str, **columns):
    """A fresh declarative class for `collection` (own registry, so names never clash)."""

    class Base(DeclarativeBase):
        pass

    attrs = {"__collection__": collection, "__annotations__": {}}
    for field, annotation in columns.items():
        attrs["__annotations__"][field] = Mapped[annotation]
    return type(f"{collection.title()}Doc", (Document, Base), attrs)


@pytest.fixture(scope="module")
def engine(dsn):
    engine = create_engine(url(dsn))
    yield engine
    engine.dispose()


# ----------------------------------------------------------------------------- shared sets


SHAPES = [
    ("SPARSE(:q)", lambda q: sparse(q), lambda s: s),
    ("DENSE(:q)", lambda q: dense(q), lambda s: s),
    ("HYBRID(SPARSE(:q), DENSE(:q))", lambda q: hybrid(sparse(q), dense(q)), lambda s: s),
    (
        "HYBRID(SPARSE(:q), DENSE(:q), fusion => rrf(k => 60)) WITH PRF(depth => 5, sparse => rm3(terms => 20))",
        lambda q: hybrid(sparse(q), dense(q), fusion=rrf(k=60)),
        lambda s: s.with_prf(depth=5, sparse=rm3(terms=20)),
    ),
    (
        "HYBRID(SPARSE(:q), DENSE(:q), fusion => linear(alpha => 0.3, norm => zscore)) DIVERSIFY BY COVERAGE(lambda => 0.6)",
        lambda q: hybrid(sparse(q), dense(q), fusion=linear(alpha=0.3, norm="zscore")),
        lambda s: s.diversify(coverage(lambda_=0.6)),
    ),
    (
        "HYBRID(SPARSE(:q), DENSE(:q), fusion => linear(alpha => auto, norm => zscore), candidates => 50)",
        lambda q: hybrid(sparse(q), dense(q), fusion=linear(alpha="auto", norm="zscore"), candidates=50),
        lambda s: s,
    ),
]


@pytest.mark.parametrize("set_name", ["cisi", "limit-small"])
def test_orm_and_dialect_return_the_same_ids_and_scores(session_db, engine, dsn, set_name):
    folder = beir_dir(set_name)
    name = load_beir(session_db, folder)
    Doc = mapped(name, title="str | None", text="str | None")
    queries = list(test_queries(folder).values())[:12]

    def dialect(search_text: str, q: str) -> list[tuple[str, float]]:
        rows = session_db.query(f"SELECT id, score FROM {name} SEARCH {search_text} LIMIT 10", q=q)
        return [(r["id"], r["score"]) for r in rows]

    def orm_stmt(signal, extra, q):
        return extra(search(select(Doc), signal(q))).limit(10)

    expected = {(text, q): dialect(text, q) for text, _, _ in SHAPES for q in queries}
    with Session(engine) as session:
        for text, signal, extra in SHAPES:
            for q in queries:
                got = [(d.id, score) for d, score in orm_stmt(signal, extra, q).execute(session)]
                assert got == expected[(text, q)], (text, q)
                assert len(got) == 10

    async def run_async() -> dict:
        aengine = create_async_engine(url(dsn))
        out = {}
        async with AsyncSession(aengine) as session:
            for text, signal, extra in SHAPES:
                for q in queries:
                    hits = await orm_stmt(signal, extra, q).execute_async(session)
                    out[(text, q)] = [(d.id, score) for d, score in hits]
        await aengine.dispose()
        return out

    assert asyncio.run(run_async()) == expected


# ----------------------------------------------------------------------------- a tiny collection


@pytest.fixture
def papers(db, engine, name):
    Paper = mapped(name, title="str | None", year="int | None", day="date | None")
    Paper.__collection_options__ = {"dense": "none", "dim": 3}
    with Session(engine) as session:
        create_collection(session, Paper)
        report = add(
            session,
            [
                Paper(id="a", title="sparse retrieval with bm25", year=2019, day=date(2019, 5, 1), meta={"venue": "SIGIR", "n": 3}),
                Paper(id="b", title="dense retrieval of passages", year=2020, day=None, meta={"venue": "ECIR", "n": 10}),
                Paper(id="c", title="hybrid retrieval: sparse and dense", year=2021, day=date(2021, 1, 2), meta={"venue": "SIGIR"}),
                Paper(id="d", title="learned sparse retrieval", year=2022, day=None, meta={"venue": "it's", "n": "many"}),
            ],
            vectors={"a": [1, 0, 0], "b": [0, 1, 0], "c": [1, 1, 0], "d": [1, 0, 1]},
        )
        assert report.added == 4
        session.commit()
    return Paper


FILTERS = [
    (lambda P: P.year >= 2020, "year >= 2020"),
    (lambda P: P.year != 2020, "year != 2020"),
    (lambda P: P.year.in_([2019, 2022]), "year IN (2019, 2022)"),
    (lambda P: P.year.not_in([2019, 2022]), "year NOT IN (2019, 2022)"),
    (lambda P: P.title.like("%sparse%"), "title LIKE '%sparse%'"),
    (lambda P: P.title.ilike("%SPARSE%") & (P.year < 2022), "title ILIKE '%SPARSE%' AND year < 2022"),
    (lambda P: or_(P.year == 2019, P.day.is_(None)), "year = 2019 OR day IS NULL"),
    (lambda P: not_(P.day.is_(None)), "NOT day IS NULL"),
    (lambda P: P.day.is_not(None), "day IS NOT NULL"),
    (lambda P: P.meta["venue"].astext == "SIGIR", "metadata->>'venue' = 'SIGIR'"),
    (lambda P: P.meta["venue"].astext == "it's", "metadata->>'venue' = 'it''s'"),
    (lambda P: P.meta["n"].astext > 5, "metadata->>'n' > 5"),
    (lambda P: P.year.cast(Integer) > 2020, "year::int > 2020"),
    (lambda P: P.meta["venue"].astext.in_(["ECIR", "it's"]), "metadata->>'venue' IN ('ECIR', 'it''s')"),
    (lambda P: cast(P.day, Date) >= date(2020, 1, 1), "day >= '2020-01-01'::date"),
]


@pytest.mark.parametrize("build, dialect_where", FILTERS, ids=[f for _, f in FILTERS])
def test_filters_match_the_dialect(db, engine, papers, name, build, dialect_where):
    expected = [(r["id"], r["score"]) for r in db.query(f"SELECT id, score FROM {name} SEARCH SPARSE('retrieval') WHERE {dialect_where} LIMIT 10")]
    with Session(engine) as session:
        got = [(p.id, s) for p, s in search(select(papers).where(build(papers)), sparse("retrieval")).execute(session)]
    assert got == expected
    assert got, "each filter should keep at least one document"


def test_search_where_adds_to_the_selects_filter_and_results_are_mapped_instances(engine, papers):
    with Session(engine) as session:
        stmt = search(select(papers).where(papers.year >= 2020), hybrid(sparse("sparse retrieval"), dense([1, 0, 0]))).where(papers.year < 2022).limit(5)
        hits = stmt.execute(session)
        assert [h.entity.id for h in hits] == ["c", "b"] or {h.entity.id for h in hits} == {"b", "c"}
        assert all(isinstance(h.entity, papers) and h.entity in session for h in hits)
        assert all(2020 <= h.entity.year < 2022 for h in hits)
        assert hits == sorted(hits, key=lambda h: -h.score)
        assert ":q0" in stmt.dialect and "2020" not in stmt.dialect


def test_pages_through_offset_are_the_ranking(db, engine, papers, name):
    base = search(papers, hybrid(sparse("sparse retrieval"), dense([1, 0, 0])))
    with Session(engine) as session:
        whole = [(h.entity.id, h.score) for h in base.limit(4).execute(session)]
        pages = [(h.entity.id, h.score) for m in (0, 2) for h in base.limit(2).offset(m).execute(session)]
    assert pages == whole and len(whole) >= 3
    assert base.limit(2).offset(2).dialect.endswith("LIMIT :a0 OFFSET :a1")
    assert "OFFSET" not in base.limit(2).dialect
    with Session(engine) as session:
        first = base.limit(2).execute(session)
        after = base.limit(2).after(first[-1].cursor).execute(session)
    assert [(h.entity.id, h.score) for h in first + after] == whole
    assert all(h.cursor.startswith("c1.") for h in first + after) and base.after("x").offset(1).after_ is None
    # collapse and snippets: the best hit per value, each hit's snippet of its title
    snippets = base.limit(10).highlight("title", fragments=1, tags=("[", "]"), escape="html").distinct("day")
    assert 'DISTINCT ON ("day")' in snippets.dialect and 'HIGHLIGHT("title", fragments => :a0, tags => :a1, escape => html)' in snippets.dialect
    with Session(engine) as session:
        hits = snippets.execute(session)
    expected = db.query(f"SELECT DISTINCT ON (day) id, HIGHLIGHT(title, tags => ['[', ']']) FROM {name} "
                        "SEARCH HYBRID(SPARSE('sparse retrieval'), DENSE(:v)) LIMIT 10", v=[1, 0, 0])
    assert [(h.entity.id, h.highlights["title"]) for h in hits] == [(r.id, r.highlight_title) for r in expected]
    assert len({h.entity.day for h in hits}) == len(hits) == 3 and any("[sparse]" in h.highlights["title"] for h in hits)
    with pytest.raises(CheckError, match="has no column 'venue'"):
        base.distinct("venue")
    # facets: (value, count) over the hits; SPARSE counts every match
    facet = search(papers, sparse("retrieval")).group_by("year").limit(3)
    assert facet.dialect.endswith('GROUP BY "year" LIMIT :a0')
    with Session(engine) as session:
        counts = facet.execute(session)
    expected = db.query(f"SELECT year, count(*) FROM {name} SEARCH SPARSE('retrieval') GROUP BY year LIMIT 3")
    assert counts == [(r.year, r.count) for r in expected] and counts[0].count == 1 and len(counts) == 3
    # a boost of the score by a field, its values as parameters; the expression alone
    boosted = base.order_by("score * (1 + :w * year)", w=0.5).limit(3)
    assert boosted.dialect.endswith("ORDER BY score * (1 + :w * year) LIMIT :a0")
    with Session(engine) as session:
        hits = boosted.execute(session)
    expected = db.query(f"SELECT id, score FROM {name} SEARCH HYBRID(SPARSE('sparse retrieval'), DENSE(:v)) ORDER BY score * (1 + 0.5 * year) LIMIT 3",
                        v=[1, 0, 0])
    assert [(h.entity.id, h.score) for h in hits] == [(r.id, r.score) for r in expected]
    for bad in ("score LIMIT 1000", "score, year", "score) --"):
        with pytest.raises(Error, match="order_by|unexpected"):
            base.order_by(bad)
    with pytest.raises(CheckError, match="'a0' is one the ORM binds itself"):
        base.order_by("score * :a0", a0=1)
    # more like this: the examples' vector or top terms, the examples left out
    similar = search(papers, hybrid(sparse(like("a"), terms=3), dense(like("a", "c", unlike=["b"])))).limit(3)
    assert "SPARSE(LIKE :q0, terms => :a0)" in similar.dialect and "DENSE(LIKE :q1 UNLIKE :q2)" in similar.dialect
    with Session(engine) as session:
        hits = similar.execute(session)
    expected = db.query(f"SELECT id, score FROM {name} SEARCH HYBRID(SPARSE(LIKE 'a', terms => 3), DENSE(LIKE ('a', 'c') UNLIKE 'b')) LIMIT 3")
    assert [(h.entity.id, h.score) for h in hits] == [(r.id, r.score) for r in expected] and [h.entity.id for h in hits] == ["d"]


def test_phrases_syntax_and_field_weights_through_the_orm(db, engine, papers, name):
    """The search syntax and BM25F reach the dialect as parameters, and answer as it does."""
    for signal, text in [(sparse('"sparse retrieval" -bm25', syntax="web"), "SPARSE('\"sparse retrieval\" -bm25', syntax => 'web')"),
                         (sparse('"sparse retrieval"', syntax="plain"), "SPARSE('\"sparse retrieval\"', syntax => 'plain')"),
                         (sparse("sparse retrieval", fields={"title": 2.0}), "SPARSE('sparse retrieval', fields => (title => 2.0))")]:
        stmt = search(papers, signal).limit(4)
        with Session(engine) as session:
            hits = [(p.id, s) for p, s in stmt.execute(session)]
        assert hits == [(r.id, r.score) for r in db.query(f"SELECT id, score FROM {name} SEARCH {text} LIMIT 4")]
        assert hits, text
    with Session(engine) as session:
        assert [p.id for p, _ in search(papers, sparse('"sparse retrieval" -bm25', syntax="web")).limit(4).execute(session)] == ["d"]


def test_mmr_and_prf_off_switches_render_and_run(db, engine, papers, name):
    with Session(engine) as session:
        stmt = search(papers, hybrid(sparse("sparse"), dense([1, 0, 0]))).with_prf(dense=None).diversify(mmr(lambda_=0.5, candidates=4)).limit(2)
        assert "dense => none" in stmt.dialect and "MMR(" in stmt.dialect
        got = [(p.id, s) for p, s in stmt.execute(session)]
    text, params = stmt.render()
    assert got == [(r["id"], r["score"]) for r in db.query(text, **params)]


def test_a_learned_sparse_field_through_the_orm(db, engine, name):
    """A mapped collection with sparse fields (options as in CREATE COLLECTION): documents bring
    their learned vectors to add(), and sparse(..., field=...) searches that field as the dialect."""
    Note = mapped(name, title="str | None")
    Note.__collection_options__ = {"dense": "none", "dim": 2, "sparse": ["bm25", "lsr"]}
    with Session(engine) as session:
        create_collection(session, Note)
        add(session, [Note(id="a", title="sparse"), Note(id="b", title="dense")], vectors={"a": [1, 0], "b": [0, 1]},
            sparse={"a": {"tok": 1.0, "sparse": 2.0}, "b": {"tok": 3.0}})
        session.commit()
        stmt = search(Note, sparse({"tok": 1.0, "sparse": 0.5}, field="lsr")).limit(5)
        assert "field => :a" in stmt.dialect
        got = [(n.id, s) for n, s in stmt.execute(session)]
    assert got == [("b", 3.0), ("a", 2.0)]
    text, params = stmt.render()
    assert got == [(r["id"], r["score"]) for r in db.query(text, **params)]


def test_collection_spec_comes_from_the_mapped_columns(papers, name):
    assert collection_spec(papers) == (name, {"title": "text", "year": "integer", "day": "date"}, {"dense": "none", "dim": 3})


def test_stored_vectors_load_through_pgvector_types(engine, papers):
    with Session(engine) as session:
        paper = session.scalars(select(papers).where(papers.id == "c")).one()
        assert "embedding" not in paper.__dict__ and "term_ids" not in paper.__dict__  # deferred
        assert list(paper.embedding) == [1.0, 1.0, 0.0]
        assert sorted(paper.terms.values()) == [1.0, 1.0, 1.0, 1.0]  # hybrid, retriev, spars, dens


def test_created_collection_has_the_mapped_fields(db, papers, name):
    info = db.collection(name).info
    assert [(f.name, f.type) for f in info.fields] == [("title", "text"), ("year", "integer"), ("day", "date")]
    assert db.collection(name).count() == 4


def test_add_joins_the_sessions_transaction(db, engine, papers, name):
    with Session(engine) as session:
        add(session, [papers(id="e", title="rolled back", year=2023)], vectors={"e": [0, 0, 1]})
        assert session.scalar(select(func.count()).select_from(papers)) == 5
        session.rollback()
    assert db.collection(name).count() == 4
    assert db.collection(name).get("e") is None


def test_a_zero_vector_is_refused_and_nothing_is_added(db, engine, papers, name):
    with Session(engine) as session:
        with pytest.raises(IngestError, match=r"^document 2 \(id 'z'\): 'vector' is all zeros, so it has no direction to compare"):
            add(session, [papers(id="e", title="fine"), papers(id="z", title="")], vectors={"e": [0, 0, 1], "z": [0, 0, 0]})
        session.commit()
    assert db.collection(name).count() == 4 and db.collection(name).get("e") is None


def test_flushing_a_document_is_refused_and_changes_nothing(db, engine, papers, name):
    before = fingerprint(db, name) if db.conn.execute("SELECT to_regclass('public.canary')").fetchone()[0] else None
    with Session(engine) as session:
        session.add(papers(id="x", title="written past the engine", year=2000))
        with pytest.raises(CheckError, match="written through sparsesql"):
            session.commit()
        session.rollback()
        paper = session.scalars(select(papers).where(papers.id == "a")).one()
        paper.title = "changed"
        with pytest.raises(CheckError, match="read-only"):
            session.flush()
        session.rollback()
    if before is not None:
        assert fingerprint(db, name) == before
    assert db.collection(name).get("a")["title"] == "sparse retrieval with bm25"


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda P: search(select(P).order_by(P.year), sparse("x")), "ORDER BY"),
        (lambda P: search(select(P).limit(3), sparse("x")), "LIMIT"),
        (lambda P: search(select(P.id), sparse("x")), "select\\(Entity\\)"),
        (lambda P: search(select(P).where(func.lower(P.title) == "x"), sparse("x")).dialect, "cannot express"),
        (lambda P: search(select(P).where(P.year + 1 > 3), sparse("x")).dialect, "cannot express BinaryExpression"),
        (lambda P: search(select(P), "x"), None),
        (lambda P: search(P, hybrid(sparse("x"))), "two or more"),
        (lambda P: search(P, hybrid(sparse("x"), hybrid(sparse("y"), dense("y")))), "two or more"),
        (lambda P: search(P, sparse("x")).diversify(rrf()), "coverage"),
    ],
)
def test_what_the_orm_cannot_express_is_refused_clearly(papers, build, message):
    with pytest.raises(CheckError, match=message or "search\\(\\) expects"):
        result = build(papers)
        if hasattr(result, "dialect"):
            result.dialect


def test_dialect_checks_still_apply_to_orm_searches(engine, papers):
    with Session(engine) as session:
        with pytest.raises(CheckError, match="3"):
            search(papers, dense([1, 0])).execute(session)
        with pytest.raises(CheckError, match="NaN"):
            search(papers, dense([float("nan"), 0, 0])).execute(session)
        with pytest.raises(CheckError, match="candidates"):
            search(papers, sparse("x")).diversify(coverage(candidates=2)).limit(5).execute(session)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_orm_injection_attempts_change_nothing(db, engine, papers, name, payload):
    db.conn.execute("CREATE TABLE IF NOT EXISTS public.canary (x int)")
    before = fingerprint(db, name)
    with Session(engine) as session:
        for stmt in (
            search(select(papers).where(papers.title == payload), sparse(payload)),
            search(select(papers).where(papers.meta[payload].astext == payload), dense([1, 0, 0])),
            search(select(papers).where(papers.title.like(payload)), hybrid(sparse(payload), dense([0, 1, 0]))),
        ):
            try:
                stmt.execute(session)
            except CheckError:
                pass
            assert payload not in stmt.dialect or "'" + payload.replace("'", "''") + "'" in stmt.dialect
        session.rollback()
    assert fingerprint(db, name) == before
    assert json.dumps(db.collection(name).get("a")["metadata"]) == json.dumps({"n": 3, "venue": "SIGIR"})
