"""A server-side statement timeout cancels a query with a clear error, changes nothing, and
leaves the connection ready for the next query (in single- and multi-statement plans)."""

from __future__ import annotations

import pytest

import sparsesql


@pytest.fixture
def coll(db, name):
    c = db.create_collection(name, {"body": "text"}, dense="none", dim=3)
    c.add([{"id": f"t{i}", "body": f"word{i % 3} text", "vector": [1, i, 0]} for i in range(20)])
    return name


@pytest.mark.parametrize(
    "search",
    ["SPARSE('word1')", "HYBRID(SPARSE('word1'), DENSE(:v)) WITH PRF DIVERSIFY BY COVERAGE"],
)
def test_statement_timeout_cancels_server_side(db, coll, search):
    """Another session holds a lock the query needs; the server cancels it at the timeout."""
    statement = f"SELECT id FROM {coll} SEARCH {search} LIMIT 3"
    expected = [r.id for r in db.query(statement, v=[1, 2, 0])]
    with sparsesql.connect(db.dsn) as locker:
        with locker.conn.transaction():
            locker.conn.execute(f'LOCK TABLE sparsesql."{coll}__docs" IN ACCESS EXCLUSIVE MODE')
            db.conn.execute("SET statement_timeout = '200ms'")
            with pytest.raises(sparsesql.DatabaseError, match="cancelled by the server.*statement timeout"):
                db.query(statement, v=[1, 2, 0])
    db.conn.execute("SET statement_timeout = 0")
    assert [r.id for r in db.query(statement, v=[1, 2, 0])] == expected
    assert db.collection(coll).count() == 20
