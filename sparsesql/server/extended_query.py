"""The extended protocol: Parse, Bind, Describe, Execute, Close, Sync and Flush.

A dialect statement is described from its checked tree and run by `dialect`; any other is
prepared and run on the backend under a name of the relay's own. Portals a client made with
DECLARE are PostgreSQL's: Describe and Close reach them there, Execute reads them with FETCH.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from psycopg import pq

from sparsesql.lang.statements import split
from sparsesql.server import dialect, route, wire
from sparsesql.server.cursors import Declare, Move
from sparsesql.server import types as t
from sparsesql.server.relay import RelayError, columns_of, result_error, rows_messages
from sparsesql.server.sqlstates import SessionError
from sparsesql.server.wire import Fields, ProtocolViolation

_PAGED = re.compile(r"\s*(SELECT|VALUES|TABLE)\b", re.IGNORECASE)  # what a cursor can run
_INTO = re.compile(r"\bINTO\b", re.IGNORECASE)  # SELECT ... INTO cannot: such a text is read whole
_TRANSACTION_CONTROL = re.compile(r"\s*(BEGIN|START|COMMIT|END|ROLLBACK|ABORT|SAVEPOINT|RELEASE|PREPARE\s+TRANSACTION)\b", re.IGNORECASE)


@dataclass
class Prepared:
    """A client's prepared statement: a dialect one (described from its tree) or PostgreSQL's."""

    text: str
    kind: str  # "dialect" | "sql" | "empty" | "declare" (a cursor over a dialect statement) | "cursor" (FETCH ...)
    param_oids: list[int]
    described: dialect.Described | None = None
    backend: str | None = None
    columns: object = None  # the backend's describe result, once asked for
    cursor: Declare | Move | None = None


@dataclass
class Portal:
    statement: Prepared
    values: list[bytes | None]
    formats: list[int]
    result_formats: list[int]
    params: dict[str, object] = field(default_factory=dict)
    result: object = None
    sent: int = 0
    cursor: bytes | None = None  # the backend cursor a query read a page at a time runs in


class ExtendedQuery:
    """Session methods for the extended protocol's messages (mixed into `Session`)."""

    def parse(self, f: Fields) -> None:
        name, text = f.cstring(), f.cstring()
        oids = [f.uint32() for _ in range(f.count("parameter types"))]
        f.end()
        if name and name in self.statements:
            raise SessionError("42P05", f'prepared statement "{name}" already exists')
        statements = split(text)
        if len(statements) > 1:
            raise SessionError("42601", "cannot insert multiple commands into a prepared statement")
        owner = None
        if not statements:
            prepared = Prepared(text, "empty", oids)
        elif route.is_dialect(statements[0][1], self.relay.is_collection) or isinstance(owner := self.cursor_statement(statements[0][1]), Declare):
            offset, body = statements[0]
            skip = owner.offset if owner is not None else 0
            try:
                described = dialect.describe(self.db, body[skip:], oids)
            except Exception as exc:
                self.error(exc, offset + skip)
                self.skipping = True
                return
            prepared = Prepared(body[skip:], "declare" if owner else "dialect", described.param_oids, described=described, cursor=owner)
        elif owner is not None:
            prepared = Prepared(text, "cursor", [], cursor=owner)
        elif name:
            prepared = Prepared(text, "sql", oids, backend=self.relay.prepare(text, oids))
        else:
            # The unnamed statement is parsed for one use: PostgreSQL parses, binds and runs it in
            # one round trip at Execute (exec_params), unless a Describe needs it prepared first.
            prepared = Prepared(text, "sql", oids)
        if not name:
            self.unnamed_cleared_statement()
        self.statements[name] = prepared
        self.out.append(wire.PARSE_COMPLETE)

    def unnamed_cleared_statement(self) -> None:
        old = self.statements.pop("", None)
        if old is not None and old.backend:
            self.relay.close(old.backend)

    def bind(self, f: Fields) -> None:
        portal, name = f.cstring(), f.cstring()
        formats = [f.int16() for _ in range(f.count("parameter formats"))]
        values: list[bytes | None] = []
        for _ in range(f.count("parameters")):
            length = f.int32()
            values.append(None if length == -1 else f.bytes(length))
        result_formats = [f.int16() for _ in range(f.count("result formats"))]
        f.end()
        prepared = self.statements.get(name)
        if prepared is None:
            raise SessionError("26000", f'prepared statement "{name}" does not exist')
        if portal and portal in self.portals:
            raise SessionError("42P03", f'portal "{portal}" already exists')
        if len(formats) not in (0, 1, len(values)):
            raise ProtocolViolation(f"bind message has {len(formats)} parameter formats but {len(values)} parameters")
        if any(code not in (0, 1) for code in formats + result_formats):
            raise ProtocolViolation("format codes must be 0 (text) or 1 (binary)")
        expected = len(values) if prepared.kind == "sql" and prepared.backend is None else len(self.param_oids(prepared))
        if len(values) != expected:
            raise ProtocolViolation(f'bind message supplies {len(values)} parameters, but prepared statement "{name}" requires {expected}')
        params: dict[str, object] = {}
        if prepared.kind in ("dialect", "declare"):
            for i, (raw, oid) in enumerate(zip(values, prepared.param_oids)):
                try:
                    params[str(i + 1)] = prepared.described.bind(str(i + 1), t.decode(raw, oid, wire.format_of(formats, i) == 1))
                except t.BadValue as exc:
                    raise SessionError("22P02", f"parameter ${i + 1}: {exc}") from None
        self.portals[portal] = Portal(prepared, values, formats, result_formats, params)
        self.out.append(wire.BIND_COMPLETE)

    def param_oids(self, prepared: Prepared) -> list[int]:
        if prepared.kind == "sql":
            return self.backend_describe(prepared)[0]
        return prepared.param_oids

    def backend_describe(self, prepared: Prepared):
        if prepared.backend is None:
            prepared.backend = self.relay.prepare(prepared.text, prepared.param_oids)
        if prepared.columns is None:
            prepared.columns = self.relay.describe(prepared.backend)
        return prepared.columns

    def describe(self, f: Fields) -> None:
        what = f.bytes(1)
        name = f.cstring()
        f.end()
        if what == b"S":
            prepared = self.statements.get(name)
            if prepared is None:
                raise SessionError("26000", f'prepared statement "{name}" does not exist')
            self.out.append(wire.parameter_description(self.param_oids(prepared)))
            self.out.append(self.row_shape(prepared, []))
        elif what == b"P":
            portal = self.portals.get(name)
            if portal is None and name in self.cursors:
                columns = self.cursors[name].outcome.columns
                self.out.append(wire.row_description(with_formats(columns, self.cursor_formats(name))))
                return
            if portal is None:
                result = self.relay.describe_portal(name)  # a DECLAREd cursor, or PostgreSQL's 34000
                self.out.append(wire.row_description(columns_of(result)) if result.nfields else wire.NO_DATA)
                return
            prepared = portal.statement
            if portal.result is None and prepared.kind != "empty" and self._executes_next(name):
                # Describe then Execute of one portal (node-postgres, psycopg): it runs now and its
                # result describes it, with no round trip of its own and never a stale layout.
                self.run_portal(portal)
                self.out.append(self.result_shape(portal))
                return
            self.out.append(self.row_shape(prepared, portal.result_formats))
        else:
            raise ProtocolViolation(f"invalid Describe target {what!r}: expected 'S' or 'P'")

    def _executes_next(self, portal: str) -> bool:
        """Whether an Execute of this portal, reading it whole, follows (one with a row limit may
        page through a cursor: the portal is not run early then)."""
        if self.following is None or self.following[0] != b"E":
            return False
        body = self.following[1]
        end = body.find(b"\0")
        return body[:end] == portal.encode(self.encoding) and body[end + 1:end + 5] == b"\0\0\0\0"

    def run_portal(self, portal: Portal) -> None:
        prepared = portal.statement
        self.open_implicit(prepared)
        if prepared.kind == "dialect":
            portal.result = dialect.run(self.db, prepared.text, portal.params, prepared.described, self.server.metrics)
        elif prepared.kind == "declare":
            portal.result = self.declare(prepared.cursor, prepared.text, portal.params, prepared.described)
        elif prepared.kind == "cursor":
            portal.result = self.move(prepared.cursor)
        else:
            self.run_sql(portal)

    def result_shape(self, portal: Portal) -> bytes:
        """RowDescription for a statement that returns rows (zero columns too: `SELECT`), else NoData."""
        result = portal.result
        if isinstance(result, dialect.Outcome):
            return wire.row_description(with_formats(result.columns, portal.result_formats)) if result.columns else wire.NO_DATA
        if result.status == pq.ExecStatus.TUPLES_OK:
            return wire.row_description(columns_of(result, portal.result_formats))
        return wire.NO_DATA

    def run_sql(self, portal: Portal) -> None:
        prepared = portal.statement
        if prepared.backend is None:
            portal.result = self.relay.execute_text(prepared.text, prepared.param_oids, portal.values, portal.formats, portal.result_formats)
        else:
            portal.result = self.relay.execute(prepared.backend, portal.values, portal.formats, portal.result_formats)

    def row_shape(self, prepared: Prepared, formats: list[int]) -> bytes:
        if prepared.kind == "dialect":
            columns = prepared.described.columns
            return wire.row_description(with_formats(columns, formats)) if columns is not None else wire.NO_DATA
        if prepared.kind in ("empty", "declare"):
            return wire.NO_DATA
        if prepared.kind == "cursor":
            cursor = self.cursors.get(prepared.cursor.name)
            if prepared.cursor.verb != "FETCH" or cursor is None:
                return wire.NO_DATA
            return wire.row_description(with_formats(cursor.outcome.columns, formats))
        _, result = self.backend_describe(prepared)
        return wire.row_description(columns_of(result, formats)) if result.nfields else wire.NO_DATA

    def execute(self, f: Fields) -> None:
        name = f.cstring()
        max_rows = f.int32()
        f.end()
        portal = self.portals.get(name)
        if portal is None and name in self.cursors:
            self.execute_cursor(name, max_rows)
            return
        if portal is None:
            self.execute_page(self.relay.quoted(name), max_rows, [])  # a DECLAREd cursor's portal
            return
        prepared = portal.statement
        if prepared.kind == "empty":
            self.out.append(wire.EMPTY_QUERY)
            return
        stop = portal.sent + max_rows if max_rows > 0 else None
        if prepared.kind in ("dialect", "declare", "cursor"):
            if portal.result is None:
                self.run_portal(portal)
            portal.sent += self.send_outcome(portal.result, portal.result_formats, with_description=False, start=portal.sent, stop=stop)
            total = len(portal.result.rows)
        else:
            if portal.result is None and max_rows > 0 and portal.cursor is None and _PAGED.match(prepared.text):
                self.open_cursor(portal)
            if portal.cursor is not None:
                self.execute_page(portal.cursor, max_rows, portal.result_formats)
                return
            if portal.result is None:
                self.run_portal(portal)
            result = portal.result
            status = result.status
            if status in (pq.ExecStatus.COPY_OUT, pq.ExecStatus.COPY_IN):
                portal.result = _Done(b"")  # a COPY runs once; its portal then has nothing left
                self.relayed_copy(result)
                return
            if status != pq.ExecStatus.TUPLES_OK:
                self.out.append(wire.EMPTY_QUERY if status == pq.ExecStatus.EMPTY_QUERY else wire.command_complete(result.command_status or b""))
                return
            messages = rows_messages(result, portal.result_formats, with_description=False, start=portal.sent, stop=stop)
            self.out.extend(messages)
            portal.sent = result.ntuples if stop is None else min(stop, result.ntuples)
            total = result.ntuples
        if stop is not None and portal.sent < total:
            self.out.append(wire.PORTAL_SUSPENDED)

    def open_cursor(self, portal: Portal) -> None:
        """A query read with a row limit inside a transaction (JDBC's fetch size) runs in a
        PostgreSQL cursor, so each Execute reads one page and no result is held whole."""
        prepared = portal.statement
        self.open_implicit(prepared)
        if self.relay.pgconn.transaction_status == pq.TransactionStatus.INTRANS and not _INTO.search(prepared.text):
            portal.cursor = self.relay.declare(prepared.text, prepared.param_oids, portal.values, portal.formats)

    def execute_page(self, cursor: bytes, max_rows: int, formats: list[int]) -> None:
        """Execute of a portal that lives in a PostgreSQL cursor: its next rows, then
        PortalSuspended while a full page may have more behind it, else CommandComplete for the
        rows of this Execute (as PostgreSQL)."""
        result = self.relay.fetch(cursor, max_rows, formats)
        self.out.extend(rows_messages(result, formats, with_description=False)[:-1])  # not FETCH's tag
        more = 0 < max_rows <= result.ntuples
        self.out.append(wire.PORTAL_SUSPENDED if more else wire.command_complete(f"SELECT {result.ntuples}"))

    def execute_cursor(self, name: str, max_rows: int) -> None:
        """Execute of a dialect cursor's portal: its next rows, as FETCH reads them."""
        cursor = self.cursors[name]
        left = len(cursor.outcome.rows) - cursor.position
        fetched = self.move(Move("FETCH", max_rows if max_rows > 0 else None, name))
        self.send_outcome(fetched, self.cursor_formats(name), with_description=False)
        if 0 < max_rows < left:
            self.out[-1] = wire.PORTAL_SUSPENDED

    def relayed_copy(self, result: pq.PGresult) -> None:
        """An Execute that started a COPY: stream its output, or take the client's CopyData."""
        if result.status == pq.ExecStatus.COPY_OUT:
            self.copy_out(result)
            for done in self.relay.finish():
                self.out.append(wire.command_complete(done.command_status or b""))
        else:
            self.copy_in(result, self._extended_copy_end())

    def _extended_copy_end(self):
        """After the client's CopyDone or CopyFail: the COPY's result; an error skips to Sync."""
        yield
        try:
            for done in self.relay.finish():
                self.out.append(wire.command_complete(done.command_status or b""))
        except RelayError as exc:
            self.error(exc)
            self.skipping = True

    def open_implicit(self, prepared: Prepared) -> None:
        """Several Executes before one Sync run in one transaction, as PostgreSQL runs them
        (JDBC's executeBatch relies on it): libpq would commit each on its own."""
        pgconn = self.relay.pgconn
        if (self.implicit or not self.more_executes or pgconn.transaction_status != pq.TransactionStatus.IDLE
                or _TRANSACTION_CONTROL.match(prepared.text)):
            return
        _check(pgconn.exec_(b"BEGIN"), pgconn)
        self.implicit = True

    def sync(self, f: Fields) -> None:
        f.end()
        self.skipping = False
        if self.implicit:
            self.implicit = False
            pgconn = self.relay.pgconn
            status = pgconn.transaction_status
            if status == pq.TransactionStatus.INERROR:
                pgconn.exec_(b"ROLLBACK")
            elif status == pq.TransactionStatus.INTRANS:
                try:
                    _check(pgconn.exec_(b"COMMIT"), pgconn)
                except RelayError as exc:
                    self.error(exc)
        self.ready()

    def flush(self, f: Fields) -> None:
        f.end()

    def close_target(self, f: Fields) -> None:
        what = f.bytes(1)
        name = f.cstring()
        f.end()
        if what == b"S":
            prepared = self.statements.pop(name, None)
            if prepared is not None and prepared.backend:
                self.relay.close(prepared.backend)
        elif what == b"P":
            portal = self.portals.pop(name, None)
            if self.cursors.pop(name, None) is not None:
                pass  # a cursor over a dialect search, held here
            elif portal is None and name:
                self.relay.close_portal(name)  # a DECLAREd cursor's portal, closed where it lives
            elif portal is not None and portal.cursor and self.relay.pgconn.transaction_status == pq.TransactionStatus.INTRANS:
                self.relay.ok(self.relay.pgconn.exec_(b"CLOSE " + portal.cursor))  # the page-at-a-time one
        else:
            raise ProtocolViolation(f"invalid Close target {what!r}: expected 'S' or 'P'")
        self.out.append(wire.CLOSE_COMPLETE)


@dataclass
class _Done:
    """The result a portal keeps once its COPY ran: a later Execute completes with no rows."""

    command_status: bytes
    status: pq.ExecStatus = pq.ExecStatus.COMMAND_OK


def with_formats(columns: list[wire.Column], formats: list[int]) -> list[wire.Column]:
    return [wire.Column(c.name, c.type_oid, c.type_size, c.type_mod, c.table_oid, c.column, wire.format_of(formats, i)) for i, c in enumerate(columns)]


def _check(result: pq.PGresult | None, pgconn: pq.PGconn) -> None:
    if result is None or result.status != pq.ExecStatus.COMMAND_OK:
        raise RelayError(result_error(result, pgconn))
