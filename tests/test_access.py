"""Roles: a reader can query but not write, a writer can add and delete, and a query needs
rights only on the collection it names."""

from __future__ import annotations

import psycopg
import pytest
from click.testing import CliRunner

import sparsesql
from sparsesql.cli.main import cli


def role_dsn(dsn: str, role: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info.update(user=role, password="pw")
    return psycopg.conninfo.make_conninfo(**info)


@pytest.fixture
def roles(db):
    for role in ("sq_reader", "sq_writer", "sq_nobody"):
        db.conn.execute(f"DROP OWNED BY {role}" if db.conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() else "SELECT 1")
        db.conn.execute(f"DROP ROLE IF EXISTS {role}")
        db.conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
    yield
    for role in ("sq_reader", "sq_writer", "sq_nobody"):
        db.conn.execute(f"DROP OWNED BY {role}")
        db.conn.execute(f"DROP ROLE IF EXISTS {role}")


@pytest.fixture
def coll(db, name):
    c = db.create_collection(name, {"body": "text"}, dense="none", dim=2)
    c.add([{"id": "a", "body": "alpha beta", "vector": [1, 0]}, {"id": "b", "body": "beta gamma", "vector": [0, 1]}])
    return name


def test_reader_queries_but_cannot_write(db, dsn, roles, coll):
    result = CliRunner().invoke(cli, ["--dsn", dsn, "grant", "sq_reader"])
    assert result.exit_code == 0 and "granted reader access" in result.output
    with sparsesql.connect(role_dsn(dsn, "sq_reader")) as reader:
        assert [r.id for r in reader.query(f"SELECT id FROM {coll} SEARCH HYBRID(SPARSE('beta'), DENSE(:v)) WITH PRF LIMIT 5", v=[1, 0])]
        with pytest.raises(sparsesql.DatabaseError, match="permission denied"):
            reader.collection(coll).add([{"id": "c", "body": "delta", "vector": [1, 1]}])
        with pytest.raises(sparsesql.DatabaseError, match="permission denied"):
            reader.collection(coll).delete("a")
        with pytest.raises(sparsesql.DatabaseError, match="permission denied|must be owner"):
            reader.query(f"DROP COLLECTION {coll}")
    assert db.collection(coll).count() == 2


def test_writer_adds_and_deletes(db, dsn, roles, coll):
    db.grant("sq_writer", "writer")
    with sparsesql.connect(role_dsn(dsn, "sq_writer")) as writer:
        writer.collection(coll).add([{"id": "c", "body": "delta", "vector": [1, 1]}])
        assert writer.collection(coll).delete("a") == 1
    assert db.collection(coll).count() == 2


def test_a_query_touches_only_the_collection_it_names(db, dsn, roles, coll, name):
    other = db.create_collection(f"{name}_other", {"body": "text"}, dense="none", dim=2)
    other.add([{"id": "x", "body": "beta", "vector": [1, 0]}])
    db.conn.execute("GRANT USAGE ON SCHEMA sparsesql TO sq_nobody")
    db.conn.execute("GRANT SELECT ON sparsesql.collections, sparsesql.alembic_version TO sq_nobody")
    for kind in ("docs", "postings", "vocab", "dense"):
        db.conn.execute(f'GRANT SELECT ON sparsesql."{coll}__{kind}" TO sq_nobody')
    with sparsesql.connect(role_dsn(dsn, "sq_nobody")) as limited:
        assert limited.query(f"SELECT id FROM {coll} SEARCH HYBRID(SPARSE('beta'), DENSE(:v)) WITH PRF LIMIT 5", v=[1, 0])
        with pytest.raises(sparsesql.DatabaseError, match="permission denied"):
            limited.query(f"SELECT id FROM {name}_other SEARCH SPARSE('beta')")
    db.drop_collection(f"{name}_other")


def test_grant_errors(db):
    with pytest.raises(sparsesql.CheckError, match="role 'nobody_here' does not exist"):
        db.grant("nobody_here")
    with pytest.raises(sparsesql.CheckError, match="is not one of: reader, writer"):
        db.grant("postgres", "owner")


def test_orm_sessions_have_the_roles_rights(db, dsn, roles, coll):
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from sparsesql.orm import add, database_url, search, sparse
    from tests.test_orm import mapped

    db.grant("sq_reader", "reader")
    Doc = mapped(coll, body="str | None")
    engine = create_engine(database_url(role_dsn(dsn, "sq_reader")))
    with Session(engine) as session:
        assert [d.id for d, _ in search(select(Doc), sparse("beta")).execute(session)] == ["a", "b"]
        with pytest.raises(sparsesql.DatabaseError, match="permission denied"):
            add(session, [Doc(id="c", body="delta")], vectors={"c": [1, 1]})
        session.rollback()
    engine.dispose()
    assert db.collection(coll).count() == 2 and db.collection(coll).get("c") is None
