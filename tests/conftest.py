"""Fixtures: one real PostgreSQL (embedded, in a temporary SPARSESQL_HOME) per test session.

Set SPARSESQL_DSN to run the suite against an external server instead. Each test that writes
gets its own collection name, so tests never see each other's data.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

import pytest

import sparsesql
from sparsesql.db import embedded

REPO = Path(__file__).resolve().parents[1]
BEIR = Path(os.environ.get("SPARSESQL_BEIR_DIR", REPO.parent / "shared" / "data" / "beir"))


@pytest.fixture(scope="session")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    if os.environ.get("SPARSESQL_DSN"):
        yield os.environ["SPARSESQL_DSN"]
        return
    home = tmp_path_factory.mktemp("home")
    yield embedded.start(home)
    embedded.stop(home)


@contextlib.contextmanager
def fresh_database(dsn: str, prefix: str = "fresh"):
    """A new, empty database on the test server (no catalog, no extension), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        try:
            conn.execute(f'CREATE DATABASE "{name}"')
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("the test role cannot create databases")
    try:
        yield make_conninfo(dsn, dbname=name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_dsn(dsn: str):
    with fresh_database(dsn) as fresh:
        yield fresh


@pytest.fixture(scope="session")
def session_db(dsn: str):
    db = sparsesql.connect(dsn)
    yield db
    db.close()


@pytest.fixture
def db(dsn: str):
    db = sparsesql.connect(dsn)
    yield db
    db.close()


@pytest.fixture
def name(request: pytest.FixtureRequest, session_db) -> str:
    """A collection name unique to the test, dropped afterwards."""
    base = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    session_db.drop_collection(base, if_exists=True)
    yield base
    session_db.drop_collection(base, if_exists=True)


def beir_dir(set_name: str) -> Path:
    folder = BEIR / set_name
    if not (folder / "corpus.jsonl").exists():
        pytest.skip(f"BEIR set {set_name} not found under {BEIR}")
    return folder
