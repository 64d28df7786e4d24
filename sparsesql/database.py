"""The Python API: `Database` runs dialect statements and manages collections; `Collection`
writes documents. Both are thin: the work is in lang/, plan/, exec/ and db/."""

from __future__ import annotations

from typing import Callable, Iterable

import psycopg
from psycopg import sql

from sparsesql.db import access as access_roles
from sparsesql.db import embedded
from sparsesql.db import schema
from sparsesql.db.ingest_report import IngestReport
from sparsesql.db.catalog import CollectionInfo, get_collection, list_collections
from sparsesql.db.connect import open_connection, resolve_dsn
from sparsesql.errors import CheckError, Error, located
from sparsesql.exec import like, remote
from sparsesql.exec.row import Row
from sparsesql.graph import build as graph_build
from sparsesql.graph import stats as graph_stats
from sparsesql.exec import write
from sparsesql.exec.list_cache import ListCache
from sparsesql.exec.run import database_error, run_plan
from sparsesql.exec.snapshot import Snapshot
from sparsesql.plan.trace import StageRecord
from sparsesql.lang import ast
from sparsesql.lang import check as chk
from sparsesql.lang.parse import parse_statement
from sparsesql.plan.build import build_plan
from sparsesql.plan.explain import explain_text
from sparsesql.sizes import parse_bytes
from sparsesql.tier.cache import Tiers
from sparsesql.tier.changes import TierAhead
from sparsesql.tier.dense_cache import DenseTier


AHEAD_ATTEMPTS = 3  # snapshots a search may take when a shared tier is ahead of it; the last runs such stages in SQL


class Database:
    """A connection to one PostgreSQL database holding sparsesql collections.

    `trace` receives (sql, params) for every statement a query runs, like sqlite-utils' tracer.
    `sparse_tier` (on unless False) serves SPARSE candidates from an in-memory index of the
    collection's postings (loaded on first use, kept current by the change log, snapshotted under
    SPARSESQL_HOME); `sparse_tier_memory` ("2GB", bytes, None for no cap; "auto", the default:
    a quarter of this machine's memory) caps what one collection may take, past which its
    searches stay in SQL. With the tier on, `dense_tier` (on unless False) also keeps each
    collection's dense codes in memory for DENSE candidates (scored exactly in PostgreSQL),
    capped by `dense_tier_memory` (the same forms).
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        trace: Callable[[str, dict], None] | None = None,
        sparse_tier: bool = True,
        sparse_tier_memory: int | str | None = "auto",
        dense_tier: bool = True,
        dense_tier_memory: int | str | None = "auto",
    ) -> None:
        self.dsn = resolve_dsn(dsn)
        self.trace = trace
        self._tier_memory = parse_bytes(sparse_tier_memory)
        self._dense = dense_tier
        self._dense_memory = parse_bytes(dense_tier_memory)
        self.tiers = self._new_tiers() if sparse_tier else None
        self.lists = ListCache()  # the last searches' candidate lists: a page and its facets search once
        self._conn = open_connection(self.dsn)
        # Run on every connection opened after the first (a lost one reopened): the HTTP API
        # sets its token's role there, so a reconnect never runs as the server's own role.
        self.on_connect: Callable[[psycopg.Connection], None] | None = None
        # The catalog entry the last search was checked against: the server lays out a search's
        # rows by it without reading the catalog a second time.
        self.last_collection: CollectionInfo | None = None
        # What each stage of the last search did (time, rows): the HTTP API's timeline and metrics.
        self.last_stages: list[StageRecord] = []

    @property
    def conn(self) -> psycopg.Connection:
        """The live psycopg connection, reopened when the previous one was lost."""
        if self._conn.closed or self._conn.broken:
            self._conn = open_connection(self.dsn)
            if self.on_connect is not None:
                self.on_connect(self._conn)
        return self._conn

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ dialect

    def check(self, text: str, /, **params: object) -> chk.Checked:
        """Parse and check a statement against this database's catalog, running nothing."""
        statement = parse_statement(text)
        return chk.check(statement, lambda name: get_collection(self.conn, name), params, text)

    def _select(self, statement: ast.Select | ast.Explain, text: str, params: dict, explain: bool | None = None) -> list[Row] | str:
        """A search, checked and run in one snapshot: the catalog it is checked against is the
        one its statements see. Returns rows, or the plan's text for EXPLAIN.

        A memory tier shared with other sessions (a server's) may already follow a newer snapshot
        than this search's, when a concurrent search saw a later write first; the search then
        starts again in a new snapshot (which sees at least that write) rather than running in
        SQL, up to AHEAD_ATTEMPTS times."""
        for _ in range(AHEAD_ATTEMPTS - 1):
            try:
                return self._select_once(statement, text, params, explain, retry_ahead=True)
            except TierAhead:
                continue
        return self._select_once(statement, text, params, explain, retry_ahead=False)

    def _select_once(self, statement: ast.Select | ast.Explain, text: str, params: dict, explain: bool | None,
                     retry_ahead: bool) -> list[Row] | str:
        try:
            return self._run_select(statement, text, params, explain, retry_ahead)
        except Error as exc:
            if exc.query is None and exc.line is not None:
                raise located(exc, text) from exc
            raise

    def _run_select(self, statement: ast.Select | ast.Explain, text: str, params: dict, explain: bool | None,
                    retry_ahead: bool) -> list[Row] | str:
        with Snapshot(self.conn) as snap:
            checked = checked_in(snap, statement, params, text)
            self.last_collection = checked.collection
            plan = build_plan(checked, tier=self._tier_kinds())
            analyze = checked.analyze if explain is None else explain
            if not checked.explain and explain is None:
                rows, self.last_stages = run_plan(snap, plan, self.trace, self.tiers, retry_ahead=retry_ahead, cache=self.lists)
                return rows
            records = run_plan(snap, plan, self.trace, self.tiers, server_plans=bool(plan.distributed), retry_ahead=retry_ahead)[1] if analyze else None
            return explain_text(self.conn, plan, records)

    def query(self, text: str, /, **params: object) -> list[Row]:
        """Run one dialect statement; `:name` placeholders are bound from keyword arguments, `$n`
        ones from the key "n" (`**{"1": value}`), as a PostgreSQL client's positional parameters."""
        if remote.is_server(self.conn):
            return remote.run(self.conn, text, params)
        return self._guard(lambda: self._query(text, params))

    def _query(self, text: str, params: dict) -> list[Row]:
        self.last_stages = []  # a statement that is not a search leaves none
        statement = parse_statement(text)
        if isinstance(statement, (ast.Select, ast.Explain)):
            out = self._select(statement, text, params)
            return [Row({"plan": line}) for line in out.splitlines()] if isinstance(out, str) else out
        checked = chk.check(statement, lambda name: get_collection(self.conn, name), params, text)
        if isinstance(checked, chk.CheckedCreate):
            schema.create_collection(
                self.conn, checked.name, list(checked.fields), checked.options, if_not_exists=checked.if_not_exists
            )
            return []
        if isinstance(checked, chk.CheckedDrop):
            schema.drop_collection(self.conn, checked.name, if_exists=checked.if_exists)
            return []
        if isinstance(checked, chk.CheckedBuildGraph):
            edges = graph_build.build(self.conn, schema.require_collection(self.conn, checked.name), checked.k)
            return [Row({"collection": checked.name, "k": checked.k, "edges": edges})]
        if isinstance(checked, chk.CheckedSet):
            return [Row({"setting": checked.name, "value": self._set(checked.name, checked.value)})]
        if isinstance(checked, chk.CheckedInsert):
            report = write.insert(self.conn, checked.collection, list(checked.docs))
            return [Row({"added": report.added, "updated": report.updated, "unchanged": report.unchanged})]
        if isinstance(checked, chk.CheckedDelete):
            return [Row({"deleted": write.delete_where(self.conn, checked.collection, checked.where, checked.params, checked.where_kinds)})]
        if isinstance(checked, chk.CheckedShowGraph):
            info = schema.require_collection(self.conn, checked.name)
            return [Row({"property": p, "value": v}) for p, v in graph_stats.describe(self.conn, info)]
        return [
            Row({
                "name": c.name,
                "documents": c.n_docs,
                "fields": ", ".join(f"{f.name} {f.type}" for f in c.fields),
                "sparse": ", ".join(f.name for f in c.sparse_fields),
                "dense": c.settings.dense,
                "dim": c.settings.dim,
            })
            for c in self.collections()
        ]

    def _tier_kinds(self) -> frozenset[str]:
        """Which signals this connection serves from memory: its own settings, over tiers that
        a server may share among its sessions (so a session's SET never changes another's)."""
        if self.tiers is None:
            return frozenset()
        return frozenset({"sparse"} | ({"dense"} if self._dense and self.tiers.dense is not None else set()))

    def _new_tiers(self) -> Tiers:
        return Tiers(embedded.home(), self._tier_memory, dense=self._dense, dense_memory_limit=self._dense_memory)

    def _set(self, name: str, value: bool | int | None) -> object:
        """Apply a SET: the tier (or its dense half) on or off, or a budget (what is over a lower
        budget is dropped)."""
        if name == "sparse_tier":
            if value and self.tiers is None:
                self.tiers = self._new_tiers()
            elif not value:
                self.tiers = None
            return "on" if value else "off"
        if name == "dense_tier":
            self._dense = bool(value)
            if value and self.tiers is not None and self.tiers.dense is None:
                self.tiers.dense = DenseTier(embedded.home(), self._dense_memory)
            return "on" if value else "off"
        if name == "dense_tier_memory":
            self._dense_memory = value
            if self.tiers is not None and self.tiers.dense is not None:
                self.tiers.dense.set_budget(value)
            return value
        self._tier_memory = value
        if self.tiers is not None:
            self.tiers.memory_limit = value
            if value is not None:
                for collection, loaded in list(self.tiers.loaded.items()):
                    if loaded.memory_bytes() > value:
                        del self.tiers.loaded[collection]
        return value

    def tune(self, folders: list, /, **options: object):
        """`sparsesql tune` from Python: the grid's scores, the chosen setting, its cross-validated
        estimate (a `sparsesql.eval.tune.TuneResult`); options as `sparsesql.eval.tune.tune`'s."""
        from sparsesql.eval.tune import tune

        return tune(self, list(folders), **options)

    def explain(self, text: str, /, *, analyze: bool = False, **params: object) -> str:
        """The plan of a SELECT as text; with analyze=True it runs and shows rows and times."""
        statement = self._guard(lambda: parse_statement(text))
        if not isinstance(statement, (ast.Select, ast.Explain)):
            raise CheckError("EXPLAIN applies to SELECT statements")
        if remote.is_server(self.conn):
            prefix = "" if isinstance(statement, ast.Explain) else "EXPLAIN ANALYZE " if analyze else "EXPLAIN "
            return "\n".join(str(r["plan"]) for r in remote.run(self.conn, prefix + text, params))
        return self._guard(lambda: self._select(statement, text, params, explain=analyze or (isinstance(statement, ast.Explain) and statement.analyze)))

    def _guard(self, action: Callable[[], object]) -> object:
        try:
            return action()
        except psycopg.Error as exc:
            raise database_error(exc, "query") from exc

    # ------------------------------------------------------------------ collections

    def collections(self) -> list[CollectionInfo]:
        return self._guard(lambda: list_collections(self.conn))

    def create_collection(
        self, name: str, fields: dict[str, str] | list[tuple[str, str]] | None = None, *, if_not_exists: bool = False, **options: object
    ) -> "Collection":
        """Create a collection: `fields` maps names to types; options as in CREATE COLLECTION ... WITH."""
        info = self._guard(lambda: schema.create_collection(self.conn, name, fields or {}, options, if_not_exists=if_not_exists))
        return Collection(self, info.name)

    def drop_collection(self, name: str, *, if_exists: bool = False) -> bool:
        return self._guard(lambda: schema.drop_collection(self.conn, name, if_exists=if_exists))

    def grant(self, role: str, access: str = "reader") -> None:
        """Let an existing role read the collections ("reader") or also write documents ("writer")."""
        self._guard(lambda: access_roles.grant(self.conn, role, access))

    def collection(self, name: str) -> "Collection":
        self._guard(lambda: schema.require_collection(self.conn, name))
        return Collection(self, name.lower())


class Collection:
    """Writes to one collection; reads go through `Database.query`."""

    def __init__(self, db: Database, name: str) -> None:
        self.db = db
        self.name = name

    @property
    def info(self) -> CollectionInfo:
        return self.db._guard(lambda: schema.require_collection(self.db.conn, self.name))

    def add(self, docs: Iterable[dict], *, batch_size: int | None = None, progress: bool = False, on_error: str = "abort",
            total: int | None = None, numbered: bool = False, bulk: bool = False) -> IngestReport:
        """Add or update documents: {"id", declared fields..., "metadata", "vector", "sparse"}.
        Each batch (500 documents; `bulk`: 100,000 or a minute's worth) commits on its own, so
        an interrupted load resumes by running it again: stored documents are skipped by their
        content hash. `bulk` also builds a first load's own indexes once, at its end.
        `on_error="skip"` leaves out (and reports, in the result's `rejected`) a document that
        fails its checks instead of stopping; `total` sizes the progress bar; with `numbered`,
        `docs` are (line number, document) pairs and messages name lines."""
        try:
            return write.add(self.db.conn, self.info, docs, batch_size=batch_size, progress=progress,
                             on_error=on_error, total=total, numbered=numbered, bulk=bulk)
        except psycopg.Error as exc:
            raise database_error(exc, "ingest") from exc

    def build_graph(self, k: int = 16, *, progress: bool = False) -> int:
        """Build (or rebuild) the kNN graph DIVERSIFY's hops walk; returns the number of edges.
        Later adds and deletes keep it current."""
        if remote.is_server(self.db.conn):
            return int(self.db.query(f'BUILD GRAPH ON "{self.name}" WITH (k => {int(k)})')[0]["edges"])
        return self.db._guard(lambda: graph_build.build(self.db.conn, self.info, k, progress=progress))

    def delete(self, ids: Iterable[str]) -> int:
        try:
            return write.delete(self.db.conn, self.info, ids)
        except psycopg.Error as exc:
            raise database_error(exc, "delete") from exc

    def count(self) -> int:
        return self.info.n_docs

    def get(self, id: str) -> Row | None:
        info = self.info
        cols = ["id", *(f.name for f in info.fields), "metadata"]
        row = self.db._guard(lambda: self.db.conn.execute(
            sql.SQL("SELECT {} FROM {} WHERE id = %s").format(sql.SQL(", ").join(map(sql.Identifier, cols)), info.table("docs")),
            (str(id),),
        ).fetchone())
        return Row(dict(zip(cols, row))) if row else None

    def __repr__(self) -> str:
        return f"Collection({self.name!r})"


def checked_in(snap: Snapshot, statement: ast.Select | ast.Explain, params: dict, text: str) -> chk.CheckedSelect:
    """A SELECT checked against the catalog its snapshot sees, its LIKE examples read there."""
    return like.resolve(snap, chk.check(statement, lambda name: get_collection(snap, name), params, text), text)


def run_select(conn: psycopg.Connection, text: str, params: dict, trace: Callable[[str, dict], None] | None = None) -> list[Row]:
    """Parse, check, plan and run one SELECT on `conn` (the ORM's path into the engine)."""
    statement = parse_statement(text)
    if not isinstance(statement, ast.Select):
        raise CheckError("only SELECT statements run here")
    if remote.is_server(conn):
        return remote.run(conn, text, params)
    try:
        with Snapshot(conn) as snap:
            return run_plan(snap, build_plan(checked_in(snap, statement, params, text)), trace)[0]
    except psycopg.Error as exc:
        raise database_error(exc, "query") from exc
    except Error as exc:
        if exc.query is None and exc.line is not None:
            raise located(exc, text) from exc
        raise


def connect(
    dsn: str | None = None,
    *,
    trace: Callable[[str, dict], None] | None = None,
    sparse_tier: bool = True,
    sparse_tier_memory: int | str | None = "auto",
    dense_tier: bool = True,
    dense_tier_memory: int | str | None = "auto",
) -> Database:
    """Open a database: `dsn`, else SPARSESQL_DSN, else the embedded server in SPARSESQL_HOME."""
    return Database(dsn, trace=trace, sparse_tier=sparse_tier, sparse_tier_memory=sparse_tier_memory,
                    dense_tier=dense_tier, dense_tier_memory=dense_tier_memory)


