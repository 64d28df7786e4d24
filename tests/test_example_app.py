"""examples/notes as a user runs it: `alembic upgrade head` creates its collection, index, graph
and sparsesql's functions; the app adds and searches notes; `alembic downgrade base` removes all
of it (no table, function, extension or catalog row left); `upgrade head` works again."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from tests.conftest import REPO

APP = REPO / "examples" / "notes"


@pytest.fixture
def app_dsn(fresh_dsn):
    return fresh_dsn


def run(app_dsn: str, *args: str) -> str:
    env = {**os.environ, "SPARSESQL_DSN": app_dsn, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, *args], cwd=APP, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def footprint(app_dsn: str) -> dict:
    """What sparsesql may leave in a database: tables, functions, extension, catalog rows."""
    with psycopg.connect(app_dsn) as conn:
        tables = conn.execute("SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1").fetchall()
        functions = conn.execute("SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'sparsesql' ORDER BY 1").fetchall()
        extension = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'sparsesql'").fetchall()
        schema = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'sparsesql'").fetchall()
        catalog = conn.execute("SELECT name FROM sparsesql.collections").fetchall() if schema and conn.execute("SELECT to_regclass('sparsesql.collections')").fetchone()[0] else []
        indexes = conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'sparsesql' ORDER BY 1").fetchall()
    return {
        "tables": [t for (t,) in tables],
        "functions": [f for (f,) in functions],
        "extension": [e for (e,) in extension],
        "schema": bool(schema),
        "catalog": [c for (c,) in catalog],
        "indexes": [i for (i,) in indexes],
    }


def test_example_app_upgrade_run_downgrade_upgrade(app_dsn):
    empty = footprint(app_dsn)
    assert empty["tables"] == ["public.alembic_version"] or empty["tables"] == []

    run(app_dsn, "-m", "alembic", "upgrade", "head")
    up = footprint(app_dsn)
    assert up["catalog"] == ["notes"]
    assert {"sparsesql.notes__docs", "sparsesql.notes__dense", "sparsesql.notes__graph"} <= set(up["tables"])
    assert "notes__dense_ann" in up["indexes"]
    assert {"bm25_search", "dense_search", "hybrid_search"} <= set(up["functions"])

    out = run(app_dsn, "app.py")
    assert "added 5" in out and "n4  Hybrid retrieval" in out

    with psycopg.connect(app_dsn) as conn:  # the extension's functions see what the ORM wrote
        top = conn.execute("SELECT id FROM sparsesql.bm25_search('notes', 'reciprocal rank fusion', 1)").fetchone()
    assert top == ("n4",)

    run(app_dsn, "-m", "alembic", "downgrade", "base")
    down = footprint(app_dsn)
    assert down["tables"] == ["public.alembic_version"]
    assert down["functions"] == [] and down["extension"] == [] and not down["schema"] and down["catalog"] == []

    run(app_dsn, "-m", "alembic", "upgrade", "head")
    again = footprint(app_dsn)
    assert again["catalog"] == ["notes"] and set(again["functions"]) == set(up["functions"])
    assert run(app_dsn, "-c", AUTOGENERATE_CHECK).strip() == "No changes", "the models and the migrations disagree"


AUTOGENERATE_CHECK = """
from alembic.autogenerate import produce_migrations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine
import sparsesql.migrations
from models import Base
from sparsesql.orm import database_url
with create_engine(database_url()).connect() as c:
    ops = produce_migrations(MigrationContext.configure(c), Base.metadata).upgrade_ops.ops
print("No changes" if not ops else ops)
"""
