"""Alembic: sparsesql's catalog history goes up, down and up again; a user's own migration
creates and drops collections with op.create_collection / op.drop_collection."""

from __future__ import annotations

import textwrap
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.orm import DeclarativeBase, Mapped

import sparsesql
from sparsesql import extension
from sparsesql.db.catalog import CATALOG_REVISION
from sparsesql.db.migrate import alembic_config, downgrade, upgrade
from sparsesql.orm import Document
from tests.test_ingest import assert_exact_stats


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


def _columns(conn: psycopg.Connection, table: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'sparsesql' AND table_name = %s ORDER BY ordinal_position",
        (table,),
    )]


def test_posting_blocks_revision_converts_collections_down_and_up(fresh_dsn):
    """Revision 0002 turns a row per posting into blocks and back, with the extension's version,
    and every search answers as before, scores included."""
    n = 1100  # past one block of "common"
    with sparsesql.connect(fresh_dsn) as db:
        extension.create(db.conn)
        coll = db.create_collection("papers", {"title": "text"}, dense="none", dim=3)
        coll.add([{"id": f"p{i}", "title": f"common word{i % 13} " + "rare " * (i % 4), "vector": [1, i % 5, 0]} for i in range(n)])
        coll.delete(["p3", "p1050"])
        queries = ["common rare", "word7 rare", "common word3"]
        before = [[tuple(r) for r in db.query("SELECT id, score FROM papers SEARCH SPARSE(:q) LIMIT 50", q=q)] for q in queries]
        prf = db.query("SELECT id, score FROM papers SEARCH SPARSE('word7 rare') WITH PRF(depth => 5, sparse => rm3(min_docs => 1)) LIMIT 20")
        postings = db.conn.execute('SELECT sum(cardinality(doc_ids)), count(*) FROM sparsesql."papers__postings"').fetchone()
    assert postings[0] > 2 * n and postings[1] > 13 + 2  # "common" spans two blocks
    sql_search = "SELECT id, score FROM sparsesql.bm25_search('papers', %s, 50)"
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        extension_before = [conn.execute(sql_search, (q,)).fetchall() for q in queries]

    downgrade(fresh_dsn, "0001_catalog")
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        assert "terms" in _columns(conn, "papers__docs") and "term_ids" not in _columns(conn, "papers__docs")
        assert _columns(conn, "papers__postings") == ["term_id", "doc_id", "tf"]
        assert conn.execute('SELECT count(*) FROM sparsesql."papers__postings"').fetchone()[0] == postings[0]
        assert conn.execute('SELECT count(*) FROM sparsesql."papers__docs" WHERE terms IS NULL').fetchone()[0] == 0
        assert extension.installed_version(conn) == "0.2"
        assert [conn.execute(sql_search, (q,)).fetchall() for q in queries] == extension_before

    upgrade(fresh_dsn)
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        assert extension.installed_version(conn) == "0.3"
        assert [conn.execute(sql_search, (q,)).fetchall() for q in queries] == extension_before
    with sparsesql.connect(fresh_dsn) as db:
        assert_exact_stats(db, "papers")
        assert [[tuple(r) for r in db.query("SELECT id, score FROM papers SEARCH SPARSE(:q) LIMIT 50", q=q)] for q in queries] == before
        again = db.query("SELECT id, score FROM papers SEARCH SPARSE('word7 rare') WITH PRF(depth => 5, sparse => rm3(min_docs => 1)) LIMIT 20")
        assert [tuple(r) for r in again] == [tuple(r) for r in prf]


def test_posting_blocks_revision_brings_plain_functions_along(fresh_dsn):
    """Functions created without the extension (servers that lack its files) follow revision
    0002 down and up: BM25 answers the same on either layout."""
    with sparsesql.connect(fresh_dsn) as db:
        with db.conn.transaction():
            extension._create_functions(db.conn)
        db.create_collection("papers", {"title": "text"}, dense="none", dim=3).add(
            [{"id": f"p{i}", "title": f"common word{i % 3} " + "rare " * (i % 2), "vector": [1, 0, 0]} for i in range(12)]
        )
    search = "SELECT id, score FROM sparsesql.bm25_search('papers', 'common rare', 12)"
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        expected = conn.execute(search).fetchall()
    downgrade(fresh_dsn, "0001_catalog")
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        assert extension.installed_version(conn) is None
        assert conn.execute(search).fetchall() == expected
    upgrade(fresh_dsn)
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        assert conn.execute(search).fetchall() == expected


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


def _add_revision(config: Config, revision: str, down: str, upgrade_body: str, downgrade_body: str) -> None:
    folder = Path(config.get_main_option("script_location")) / "versions"
    (folder / f"{revision}.py").write_text(textwrap.dedent(f"""
        from alembic import op

        revision = {revision!r}
        down_revision = {down!r}

        def upgrade():
            {upgrade_body}

        def downgrade():
            {downgrade_body}
    """))


def _indexes(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'sparsesql'").fetchall())


def test_user_migration_creates_and_drops_a_dense_index(tmp_path, fresh_dsn):
    config = _user_project(tmp_path, fresh_dsn)
    _add_revision(config, "a3", "a2", 'op.create_dense_index("papers", method="hnsw", m=8, ef_construction=32)', 'op.drop_dense_index("papers")')
    command.upgrade(config, "head")
    definition = _indexes(fresh_dsn)["papers__dense_ann"]
    assert "USING hnsw (embedding vector_cosine_ops)" in definition and "m='8'" in definition and "ef_construction='32'" in definition
    command.downgrade(config, "a2")
    assert "papers__dense_ann" not in _indexes(fresh_dsn)


@pytest.mark.parametrize(
    "call, message",
    [
        ('op.create_dense_index("papers", method="diskann")', "not one of hnsw, ivfflat"),
        ('op.create_dense_index("papers", method="hnsw", lists=10)', "does not apply to hnsw"),
        ('op.create_dense_index("papers", method="ivfflat", lists=0)', "positive integer"),
        ('op.create_dense_index("nope")', "does not exist"),
    ],
)
def test_a_bad_dense_index_fails_the_migration_and_leaves_the_database_as_it_was(tmp_path, fresh_dsn, call, message):
    config = _user_project(tmp_path, fresh_dsn)
    command.upgrade(config, "a2")
    before = (_tables(fresh_dsn), _indexes(fresh_dsn))
    _add_revision(config, "a3", "a2", call, "pass")
    with pytest.raises(sparsesql.CheckError, match=message):
        command.upgrade(config, "head")
    assert (_tables(fresh_dsn), _indexes(fresh_dsn)) == before


def test_ops_bring_the_catalog_and_a_failed_migration_leaves_only_the_catalog(tmp_path, fresh_dsn):
    config = _user_project(tmp_path, fresh_dsn)
    _add_revision(config, "a3", "a2", 'raise RuntimeError("boom")', "pass")
    with pytest.raises(RuntimeError, match="boom"):
        command.upgrade(config, "head")
    assert _tables(fresh_dsn) == {"collections", "alembic_version", "cursor_key"}
    with sparsesql.connect(fresh_dsn) as db:
        assert db.collections() == []
    command.upgrade(config, "a2")
    assert {"collections", "alembic_version", "papers__docs", "papers__graph"} <= _tables(fresh_dsn)


def _autogenerate(dsn: str, metadata) -> list:
    from alembic.autogenerate import produce_migrations, render_python_code
    from alembic.runtime.migration import MigrationContext

    from sparsesql.db.migrate import engine_for

    engine = engine_for(dsn)
    with engine.connect() as connection:
        script = produce_migrations(MigrationContext.configure(connection), metadata)
    engine.dispose()
    return script.upgrade_ops.ops, render_python_code(script.upgrade_ops), render_python_code(script.downgrade_ops)


def test_autogenerate_proposes_collections_the_models_declare_and_the_catalog_lacks(tmp_path, fresh_dsn):
    from sparsesql.migrations import CreateCollectionOp, DropCollectionOp

    class Base(DeclarativeBase):
        pass

    class Talk(Document, Base):
        __collection__ = "talks"
        __collection_options__ = {"dense": "none", "dim": 3}
        title: Mapped[str | None]
        minutes: Mapped[int | None]

    config = _user_project(tmp_path, fresh_dsn)
    command.upgrade(config, "head")  # creates `papers`, which the models do not declare
    ops, up, down = _autogenerate(fresh_dsn, Base.metadata)
    assert [(type(o), o.name) for o in ops] == [(CreateCollectionOp, "talks"), (DropCollectionOp, "papers")]
    assert "op.create_collection('talks', {'title': 'text', 'minutes': 'integer'}, dense='none', dim=3)" in up
    assert "op.drop_collection('papers', {'title': 'text', 'year': 'integer'}" in up
    assert "op.drop_collection('talks'" in down and "op.create_collection('papers'" in down

    _add_revision(config, "a3", "a2", up.strip().replace("\n", "\n            "), down.strip().replace("\n", "\n            "))
    command.upgrade(config, "head")
    assert "talks__docs" in _tables(fresh_dsn) and "papers__docs" not in _tables(fresh_dsn)
    assert _autogenerate(fresh_dsn, Base.metadata)[0] == []
    command.downgrade(config, "a2")
    assert "talks__docs" not in _tables(fresh_dsn) and "papers__docs" in _tables(fresh_dsn)
