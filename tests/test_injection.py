"""Injection attempts through every entry point we have (dialect values, literals, identifiers,
metadata keys, the CLI): values travel only as bound parameters, identifiers only after the
catalog knows them, so no attempt reaches SQL text, runs a statement outside the plan, or
changes data."""

from __future__ import annotations

import hashlib

import pytest
from click.testing import CliRunner

import sparsesql
from sparsesql.cli.main import cli

PAYLOADS = [
    "'; DROP TABLE canary; --",
    '"; DROP TABLE canary; --',
    "$$; DROP TABLE canary; $$",
    "$tag$; DROP TABLE canary; $tag$",
    "1) OR 1=1 --",
    "*/ DROP TABLE canary /*",
    "\\'; DROP TABLE canary; --",
    "\u02bc; DROP TABLE canary; --",  # modifier letter apostrophe
    "\uff07; DROP TABLE canary; --",  # fullwidth apostrophe
    "x' || pg_sleep(5) || '",
    "a'); DELETE FROM sparsesql.collections; --",
    "\u0000",
    "') UNION SELECT usename, passwd FROM pg_shadow --",
]


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def quote_name(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


@pytest.fixture
def world(db, name):
    db.conn.execute("CREATE TABLE IF NOT EXISTS public.canary (x int)")
    coll = db.create_collection(name, {"title": "text", "year": "int"}, dense="none", dim=3)
    coll.add([
        {"id": "a", "title": "sparse retrieval", "year": 2020, "metadata": {"venue": "SIGIR"}, "vector": [1, 0, 0]},
        {"id": "b", "title": "dense retrieval", "year": 2021, "metadata": {"venue": "ECIR"}, "vector": [0, 1, 0]},
    ])
    return name


def fingerprint(db, name: str) -> str:
    """Every table of the collection, the catalog and the canary, as one digest."""
    parts = []
    for table in (f'sparsesql."{name}__docs"', f'sparsesql."{name}__postings"', f'sparsesql."{name}__vocab"', f'sparsesql."{name}__dense"', "sparsesql.collections", "public.canary"):
        rows = db.conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
        parts.append(repr(rows))
    tables = db.conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname IN ('public', 'sparsesql')").fetchone()
    return hashlib.sha256((repr(parts) + repr(tables)).encode()).hexdigest()


def attempts(name: str, payload: str) -> list[tuple[str, dict]]:
    """(statement, parameters) pairs that put the payload where a user's input could go."""
    lit, ident = quote_literal(payload), quote_name(payload)
    return [
        (f"SELECT id FROM {name} SEARCH SPARSE(:q) LIMIT 5", {"q": payload}),
        (f"SELECT id FROM {name} SEARCH SPARSE({lit}) LIMIT 5", {}),
        (f"SELECT id FROM {name} SEARCH HYBRID(SPARSE(:q), DENSE(:v)) WITH PRF DIVERSIFY BY COVERAGE LIMIT 5", {"q": payload, "v": [1, 0, 0]}),
        (f"SELECT id FROM {name} WHERE title = :t", {"t": payload}),
        (f"SELECT id FROM {name} WHERE title = {lit} OR title LIKE {lit}", {}),
        (f"SELECT id FROM {name} WHERE metadata->>{lit} = :t", {"t": payload}),
        (f"SELECT id FROM {name} WHERE metadata->{lit}->>{lit} IS NULL", {}),
        (f"SELECT id FROM {name} WHERE year IN (:t, 2020)", {"t": payload}),
        (f"SELECT {ident} FROM {name}", {}),
        (f"SELECT id FROM {ident}", {}),
        (f"SELECT id FROM {name} WHERE {ident} = 1", {}),
        (f"SELECT id FROM {name} SEARCH SPARSE('x', {ident} => 1)", {}),
        (f"SHOW GRAPH {ident}", {}),
        (f"DROP COLLECTION IF EXISTS {ident}", {}),
    ]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_dialect_injection_attempts_change_nothing(db, world, payload):
    before = fingerprint(db, world)
    statements: list[tuple[str, dict]] = []
    with sparsesql.connect(db.dsn, trace=lambda text, params: statements.append((text, params))) as tdb:
        for statement, params in attempts(world, payload):
            try:
                tdb.query(statement, **params)
            except sparsesql.Error:
                pass  # refused with a message: fine, as long as nothing ran
    assert fingerprint(db, world) == before
    for text, _ in statements:
        assert payload not in text and "DROP TABLE" not in text and "pg_sleep" not in text
        assert text.lstrip().upper().startswith(("SELECT", "WITH"))  # the plan only reads


@pytest.mark.parametrize("payload", PAYLOADS[:6])
def test_cli_injection_attempts_change_nothing(db, dsn, world, payload):
    before = fingerprint(db, world)
    runner = CliRunner()
    runner.invoke(cli, ["--dsn", dsn, "query", f"SELECT id FROM {world} SEARCH SPARSE(:q) WHERE title <> :q", "-p", f"q={payload}"])
    runner.invoke(cli, ["--dsn", dsn, "query", f"SELECT id FROM {quote_name(payload)}"])
    runner.invoke(cli, ["--dsn", dsn, "ingest", payload, "/dev/null"])
    assert fingerprint(db, world) == before


def test_a_literal_payload_is_matched_as_text(db, world):
    """Quoting in the dialect works as in SQL: the payload comes back as the value it is."""
    payload = PAYLOADS[0]
    db.collection(world).add([{"id": "c", "title": payload, "year": 2022, "vector": [0, 0, 1]}])
    assert [r.id for r in db.query(f"SELECT id FROM {world} WHERE title = {quote_literal(payload)}")] == ["c"]
    assert [r.id for r in db.query(f"SELECT id FROM {world} WHERE title = :t", t=payload)] == ["c"]
