"""Fixtures: one real PostgreSQL (embedded, in a temporary SPARSESQL_HOME) per test session.

Set SPARSESQL_DSN to run the suite against an external server instead. Each test that writes
gets its own collection name, so tests never see each other's data.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

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
