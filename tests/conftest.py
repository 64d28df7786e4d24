"""Fixtures: one real PostgreSQL (embedded, in a temporary SPARSESQL_HOME) per test session.

Set SPARSESQL_DSN to run the suite against an external server instead. Each test that writes
gets its own collection name, so tests never see each other's data.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

import pytest

import sparsesql
from sparsesql.db import embedded

REPO = Path(__file__).resolve().parents[1]
BEIR = Path(os.environ.get("SPARSESQL_BEIR_DIR", REPO.parent / "shared" / "data" / "beir"))
# Tests give many processes a SPARSESQL_HOME of their own; they share one converted dense model
# (sparsesql.encoders.openvino), converted by the first that needs it.
os.environ.setdefault("SPARSESQL_MODEL_CACHE", str(REPO / ".sparsesql" / "models"))


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
    """Searches in SQL (the memory tier off): the reference the tier's tests compare with."""
    db = sparsesql.connect(dsn, sparse_tier=False)
    yield db
    db.close()


@pytest.fixture
def db(dsn: str):
    """As session_db, one per test."""
    db = sparsesql.connect(dsn, sparse_tier=False)
    yield db
    db.close()


@pytest.fixture
def tier_db(dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The memory tier on (the default), its snapshots in the test's own folder."""
    monkeypatch.setenv("SPARSESQL_HOME", str(tmp_path))
    db = sparsesql.connect(dsn, sparse_tier=True)
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


TINY_WORDS = "sparse dense retrieval hybrid query expansion term weight model vector index postgres search fusion rank".split()


@pytest.fixture(scope="session")
def tiny_splade(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT masked LM with random weights and a small word-piece vocabulary, saved as a
    local model folder: a SPLADE encoder to test with, built here (nothing is downloaded)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tiny_splade")
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_WORDS, *[f"##{c}" for c in letters], *letters]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = transformers.BertTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=True)
    assert len(tokenizer) == len(vocab)
    torch.manual_seed(0)
    config = transformers.BertConfig(  # the output layer padded past the tokenizer, as some models are
        vocab_size=len(vocab) + 3, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )
    model = transformers.BertForMaskedLM(config)
    with torch.no_grad():  # bias the output layer upwards so that relu keeps a fair share of entries
        model.cls.predictions.bias += 0.5
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@dataclass
class Served:
    """A running `sparsesql serve` and how to reach it."""

    host: str
    port: int
    database: str
    user: str
    password: str
    log: Path
    process: subprocess.Popen
    http_port: int | None = None  # the HTTP API's (serve --http-port)

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def dsn(self, user: str | None = None, password: str | None = None, **extra: str) -> str:
        options = {"host": self.host, "port": self.port, "dbname": self.database, "user": user or self.user,
                   "password": self.password if password is None else password, "sslmode": "disable", **extra}
        return make_conninfo(**options)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


SERVER_PASSWORD = "sparsesql-test-password"


@pytest.fixture(scope="session")
def server(dsn: str, tmp_path_factory: pytest.TempPathFactory):
    """`sparsesql serve` over the test database, as a separate process on a free port; the
    test role gets a password, since clients of the server must authenticate."""
    # two workers whatever the machine's cores: the pool's paths are tested everywhere, and the
    # backends it opens stay within the test server's connections
    served = start_server(dsn, tmp_path_factory.mktemp("serve"), "--workers", "2")
    yield served
    stop_server(served)


def start_server(dsn: str, home: Path, *options: str) -> Served:
    """`sparsesql serve --port 0 --http-port 0 [options]` over the test database, once it listens."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        user = conn.info.user
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(user), sql.Literal(SERVER_PASSWORD)))
        database = conn.info.dbname
    log = home / "serve.log"
    env = {**os.environ, "SPARSESQL_HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [str(Path(sys.executable).with_name("sparsesql")), "--dsn", dsn, "serve", "--port", "0", "--http-port", "0", *options]
    with log.open("w") as err:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, env=env, text=True)
    deadline = time.monotonic() + 120
    port = http_port = None
    while time.monotonic() < deadline and process.poll() is None and port is None:
        ready, _, _ = select.select([process.stdout], [], [], 1.0)
        if ready:
            match = re.search(r"listening on ([\d.]+):(\d+)", process.stdout.readline())
            if match:
                port = int(match.group(2))
                # the HTTP line is written (and flushed) with the first: already in the pipe
                http = re.search(r"HTTP API and web console on http://[\d.]+:(\d+)/", process.stdout.readline())
                http_port = int(http.group(1)) if http else None
    if port is None or http_port is None:
        process.kill()
        pytest.fail(f"sparsesql serve did not start:\n{log.read_text(errors='replace')[-4000:]}")
    return Served("127.0.0.1", port, database, user, SERVER_PASSWORD, log, process, http_port)


def stop_server(served: Served) -> None:
    served.process.send_signal(signal.SIGTERM)
    try:
        served.process.wait(20)
    except subprocess.TimeoutExpired:
        served.process.kill()
