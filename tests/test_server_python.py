"""The Python API and the ORM, unchanged, against a `sparsesql serve` address: the same rows and
scores as in-process, writes through the server (it has no COPY), errors with their positions."""

from __future__ import annotations

from datetime import date

import psycopg
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

import sparsesql
from sparsesql.orm import add, create_collection, dense, hybrid, search, sparse
from tests.test_orm import mapped

DOCS = [
    {"id": "a", "title": "sparse retrieval with bm25", "year": 2019, "metadata": {"venue": "SIGIR"}, "vector": [1, 0, 0]},
    {"id": "b", "title": "dense retrieval of passages", "year": 2020, "metadata": {"venue": "ECIR"}, "vector": [0, 1, 0]},
    {"id": "c", "title": "hybrid retrieval: sparse and dense", "year": 2021, "metadata": {}, "vector": [1, 1, 0]},
    {"id": "d", "title": "learned sparse retrieval", "year": 2022, "vector": [1, 0, 1]},
]
STATEMENTS = [
    ("SELECT id, title, score FROM {c} SEARCH SPARSE(:q) LIMIT 5", {"q": "sparse retrieval"}),
    ("SELECT id, score FROM {c} SEARCH HYBRID(SPARSE(:q), DENSE(:v), fusion => rrf) WITH PRF WHERE year >= :y LIMIT 3",
     {"q": "retrieval", "v": [1.0, 0.0, 0.0], "y": 2020}),
    ("SELECT * FROM {c} WHERE metadata->>'venue' = 'SIGIR' AND title LIKE '%retrieval%'", {}),
    ("SHOW COLLECTIONS", {}),
]


@pytest.fixture
def remote(server):
    db = sparsesql.connect(server.dsn())
    yield db
    db.close()


def test_connect_to_a_server_gives_the_in_process_answers(remote, db, name):
    coll = remote.create_collection(name, {"title": "text", "year": "int"}, dense="none", dim=3)
    report = coll.add(DOCS)
    assert (report.added, report.updated, report.unchanged) == (4, 0, 0)
    again = coll.add([*DOCS[:3], {**DOCS[3], "title": "learned sparse retrieval models"}])
    assert (again.added, again.updated, again.unchanged) == (0, 1, 3)
    assert coll.count() == 4 and db.collection(name).count() == 4
    for statement, params in STATEMENTS:
        text = statement.format(c=name)
        got, expected = remote.query(text, **params), db.query(text, **params)
        if text.startswith("SHOW"):
            assert [r for r in got if r["name"] == name] == [r for r in expected if r["name"] == name]
            continue
        assert [dict(r) for r in got] == [dict(r) for r in expected], text
    plan = remote.explain(f"SELECT id FROM {name} SEARCH SPARSE('sparse') LIMIT 2", analyze=True)
    assert plan.startswith(f"Plan on collection {name}") and "rows=" in plan
    assert coll.delete(["a", "zzz"]) == 1
    assert db.collection(name).count() == 3
    assert coll.build_graph(k=2) == 3 * 2
    assert "graph" in db.collection(name).info.extra


def test_errors_from_the_server_keep_their_kind_and_position(remote, db, name):
    remote.create_collection(name, {"title": "text"}, dense="none", dim=2)
    for text, params, kind in [
        (f"SELECT id FROM {name}\nSEARCH SPARSE(:q) LIMT 3", {"q": "x"}, sparsesql.QuerySyntaxError),
        (f"SELECT nope FROM {name} SEARCH SPARSE(:q)", {"q": "x"}, sparsesql.CheckError),
        (f"SELECT id FROM {name} SEARCH SPARSE(:q)", {}, sparsesql.ParameterError),
        ("SELECT id FROM missing_collection SEARCH SPARSE('x')", {}, sparsesql.CheckError),
    ]:
        with pytest.raises(kind) as there:
            remote.query(text, **params)
        with pytest.raises(kind) as here:
            db.query(text, **params)
        if here.value.line is not None and kind is not sparsesql.ParameterError:
            assert (there.value.line, there.value.column) == (here.value.line, here.value.column), text
        assert there.value.message.split(" (")[0] == here.value.message.split(" (")[0]


def test_the_orm_against_a_server(server, db, name):
    Paper = mapped(name, title="str | None", year="int | None", day="date | None")
    Paper.__collection_options__ = {"dense": "none", "dim": 3}
    engine = create_engine(f"postgresql+psycopg://{server.user}:{server.password}@{server.host}:{server.port}/{server.database}?sslmode=disable")
    try:
        with Session(engine) as session:
            create_collection(session, Paper)
            report = add(session, [Paper(id="a", title="sparse retrieval", year=2019, day=date(2019, 5, 1), meta={"venue": "SIGIR"}),
                                   Paper(id="b", title="dense retrieval", year=2021, day=None, meta={})],
                         vectors={"a": [1, 0, 0], "b": [0, 1, 0]})
            assert report.added == 2
            session.commit()
        with Session(engine) as session:
            stmt = search(select(Paper).where(Paper.year >= 2019), hybrid(sparse("sparse retrieval"), dense([1, 0, 0]))).limit(5)
            got = [(p.id, p.title, s) for p, s in stmt.execute(session)]
        expected = db.query(f"SELECT id, title, score FROM {name} SEARCH HYBRID(SPARSE('sparse retrieval'), DENSE(:v)) WHERE year >= 2019 LIMIT 5", v=[1, 0, 0])
        assert got == [(r["id"], r["title"], r["score"]) for r in expected]
    finally:
        engine.dispose()


def test_a_zero_vector_through_the_server_is_refused(remote, server, db, name):
    """Collection.add on a server's connection and a client's own INSERT both reach the
    server's dialect INSERT, which refuses the zero vector naming the document, its id and
    where; the documents of its batch sent as another INSERT (other keys) are not written."""
    coll = remote.create_collection(name, {"title": "text", "year": "int"}, dense="none", dim=3)
    coll.add(DOCS[:2])
    bad = [DOCS[2], {**DOCS[3], "id": "zero", "vector": [0.0, 0.0, 0.0]}]
    with pytest.raises(sparsesql.IngestError, match=r": document 2 \(id 'zero'\): embedding is all zeros, so it has no direction to compare"):
        coll.add(bad)
    assert db.collection(name).count() == 2 and db.collection(name).get("c") is None
    with pytest.raises(sparsesql.IngestError, match="a bulk load writes through a connection to PostgreSQL itself"):
        coll.add(DOCS[2:], bulk=True)
    assert db.collection(name).count() == 2
    with psycopg.connect(server.dsn()) as conn:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=r"row 2 \(id 'zero'\): embedding is all zeros") as info:
            conn.execute(f"INSERT INTO {name} (id, title, embedding) VALUES (%s, 'x', '[1,0,0]'), ('zero', 'y', %s)", ("c", "[0,0,0]"))
        assert info.value.diag.statement_position is not None
    assert db.collection(name).count() == 2 and db.collection(name).get("c") is None
