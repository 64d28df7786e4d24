"""Alembic: sparsesql's catalog history goes up, down and up again; a user's own migration
creates and drops collections with op.create_collection / op.drop_collection."""

from __future__ import annotations

import textwrap
import uuid

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from psycopg.conninfo import make_conninfo

import sparsesql
from sparsesql.db.catalog import CATALOG_REVISION
from sparsesql.db.migrate import alembic_config, downgrade, upgrade


@pytest.fixture
def fresh_dsn(dsn):
    """A new, empty database on the same server."""
    name = f"mig_{uuid.uuid4().hex[:8]}"
    admin = make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield make_conninfo(dsn, dbname=name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'sparsesql'").fetchall()
    return {r[0] for r in rows}


def test_code_expects_the_head_revision(dsn):
    assert ScriptDirectory.from_config(alembic_config(dsn)).get_current_head() == CATALOG_REVISION


def test_catalog_upgrade_downgrade_upgrade(fresh_dsn):
    upgrade(fresh_dsn)
    assert "collections" in _tables(fresh_dsn)
    with sparsesql.connect(fresh_dsn) as db:
        db.create_collection("papers", {"title": "text"}, dense="none", dim=3).add([{"id": "1", "title": "x", "vector": [1, 0, 0]}])
    assert {"papers__docs", "papers__postings", "papers__vocab", "papers__dense"} <= _tables(fresh_dsn)
    downgrade(fresh_dsn, "base")
    assert _tables(fresh_dsn) <= {"alembic_version"}
    upgrade(fresh_dsn)
    with sparsesql.connect(fresh_dsn) as db:
        assert db.collections() == []


def test_connect_brings_a_new_database_to_head(fresh_dsn):
    with sparsesql.connect(fresh_dsn) as db:
        version = db.conn.execute("SELECT version_num FROM sparsesql.alembic_version").fetchone()[0]
    assert version == CATALOG_REVISION


def _user_project(tmp_path, dsn: str) -> Config:
    (tmp_path / "versions").mkdir()
    (tmp_path / "env.py").write_text(textwrap.dedent(f"""
        from alembic import context
        import sqlalchemy, psycopg
        import sparsesql.migrations  # registers op.create_collection / op.drop_collection

        engine = sqlalchemy.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect({dsn!r}))
        with engine.connect() as connection:
            context.configure(connection=connection)
            with context.begin_transaction():
                context.run_migrations()
    """))
    (tmp_path / "versions" / "a1_papers.py").write_text(textwrap.dedent("""
        from alembic import op

        revision = "a1"
        down_revision = None

        def upgrade():
            op.create_collection("papers", {"title": "text", "year": "int"}, dense="none", dim=3)

        def downgrade():
            op.drop_collection("papers", {"title": "text", "year": "int"}, dense="none", dim=3)
    """))
    (tmp_path / "versions" / "a2_graph.py").write_text(textwrap.dedent("""
        from alembic import op

        revision = "a2"
        down_revision = "a1"

        def upgrade():
            op.build_graph("papers", k=2)

        def downgrade():
            op.drop_graph("papers", k=2)
    """))
    config = Config()
    config.set_main_option("script_location", str(tmp_path))
    return config


def test_user_migration_creates_and_drops_a_collection(tmp_path, fresh_dsn):
    upgrade(fresh_dsn)
    config = _user_project(tmp_path, fresh_dsn)
    command.upgrade(config, "head")
    with sparsesql.connect(fresh_dsn) as db:
        coll = db.collection("papers")
        coll.add([{"id": "p1", "title": "sparse retrieval", "year": 2021, "vector": [0, 1, 0]}])
        assert [r.id for r in db.query("SELECT id FROM papers SEARCH SPARSE('retrieval') WHERE year > 2020")] == ["p1"]
    command.downgrade(config, "base")
    assert "papers__docs" not in _tables(fresh_dsn)
    command.upgrade(config, "head")
    assert "papers__docs" in _tables(fresh_dsn)


def test_user_migration_builds_and_drops_a_graph(tmp_path, fresh_dsn):
    upgrade(fresh_dsn)
    config = _user_project(tmp_path, fresh_dsn)
    command.upgrade(config, "a1")
    with sparsesql.connect(fresh_dsn) as db:
        db.collection("papers").add([{"id": f"p{i}", "title": "t", "year": 2020, "vector": [1, i, 0]} for i in range(4)])
    command.upgrade(config, "head")
    with sparsesql.connect(fresh_dsn) as db:
        assert {r.property: r.value for r in db.query("SHOW GRAPH papers")}["edges"] == 8
    command.downgrade(config, "a1")
    assert "papers__graph" not in _tables(fresh_dsn)
    with sparsesql.connect(fresh_dsn) as db:
        with pytest.raises(sparsesql.CheckError, match="has no graph"):
            db.query("SHOW GRAPH papers")


def test_reverse_of_build_graph_is_drop_graph():
    from sparsesql.migrations import BuildGraphOp, DropGraphOp

    back = BuildGraphOp("papers", k=8).reverse()
    assert isinstance(back, DropGraphOp) and back.reverse().k == 8
    with pytest.raises(ValueError, match="reversible only when given the graph's k"):
        DropGraphOp("papers").reverse()


def test_reverse_of_create_is_drop():
    from sparsesql.migrations import CreateCollectionOp, DropCollectionOp

    op = CreateCollectionOp("papers", {"title": "text"}, dense="none", dim=3)
    back = op.reverse()
    assert isinstance(back, DropCollectionOp) and back.reverse().fields == {"title": "text"}
    with pytest.raises(ValueError, match="reversible only when given"):
        DropCollectionOp("papers").reverse()
