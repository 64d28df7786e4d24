"""One client connection: startup, authentication, then the simple and extended protocols.

The asyncio side only reads and writes bytes. Messages are gathered up to the next Sync, Flush
or Query (a driver waits for output only after one of those) and handed, as one batch, to the
session's own worker thread, which holds the backend connection: a search's Parse, Bind,
Describe, Execute and Sync cost one hop between threads, not five. An error in the extended
protocol discards messages until Sync, which gets exactly one ReadyForQuery. A client that
breaks the framing gets a FATAL ErrorResponse and loses only its own connection.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import re
import secrets
import struct
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import psycopg
from psycopg import pq

from sparsesql.database import Database
from sparsesql.server import dialect, route, wire
from sparsesql.server import types as t
from sparsesql.server.auth import MECHANISM, AuthFailed, ScramExchange
from sparsesql.server.relay import Relay, RelayError, columns_of, partial, result_error, rows_messages
from sparsesql.server.wire import Fields, ProtocolViolation

if TYPE_CHECKING:
    from sparsesql.server.host import Host

log = logging.getLogger("sparsesql.server")

BATCH_MESSAGES = 512
READ_CHUNK = 256 * 1024
BATCH_BYTES = 64 * 2**20
_STATUS = {pq.TransactionStatus.IDLE: b"I", pq.TransactionStatus.INTRANS: b"T", pq.TransactionStatus.INERROR: b"E"}
# ParameterStatus values relayed from the backend at startup and whenever a SET changes them.
REPORTED = (
    "server_version", "server_encoding", "client_encoding", "DateStyle", "TimeZone", "integer_datetimes",
    "standard_conforming_strings", "IntervalStyle", "application_name", "is_superuser",
    "session_authorization", "default_transaction_read_only", "in_hot_standby", "search_path",
)
_NOT_FORWARDED = {"user", "database", "replication", "options", "application_name", "client_encoding"}
_ABORT = b"DO $$BEGIN RAISE EXCEPTION USING ERRCODE = '25P02', MESSAGE = 'the previous sparsesql statement failed; the transaction is aborted'; END$$"


class SessionError(Exception):
    """An error to send as an ErrorResponse; `fields` are the protocol's letters."""

    def __init__(self, sqlstate: str, message: str, **fields: str) -> None:
        super().__init__(message)
        self.fields = {"C": sqlstate, "M": message, **fields}


@dataclass
class Prepared:
    """A client's prepared statement: a dialect one (described from its tree) or PostgreSQL's."""

    text: str
    kind: str  # "dialect" | "sql" | "empty"
    param_oids: list[int]
    described: dialect.Described | None = None
    backend: str | None = None
    columns: object = None  # the backend's describe result, once asked for


@dataclass
class Portal:
    statement: Prepared
    values: list[bytes | None]
    formats: list[int]
    result_formats: list[int]
    params: dict[str, object] = field(default_factory=dict)
    result: object = None
    sent: int = 0


class Session:
    def __init__(self, server: "Host", reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=_worker, args=(self.jobs,), name="sparsesql-session", daemon=True).start()
        self.db: Database | None = None
        self.relay: Relay | None = None
        self.statements: dict[str, Prepared] = {}
        self.portals: dict[str, Portal] = {}
        self.skipping = False
        self.out: list[bytes] = []
        self.notices: list[dict[str, str]] = []
        self.reported: dict[str, str] = {}
        self.pid = 0
        self.secret = secrets.randbits(32)
        self.tls = False
        self.busy = False
        self.following: tuple[bytes, bytes] | None = None  # the next message of the batch being run
        self.more_executes = False  # another Execute follows the current one before the batch ends
        self.implicit = False  # a transaction opened here for the Executes before the next Sync
        self.reported_at = 0  # the relay's statement count when parameters were last compared

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        try:
            if await self.startup():
                await self.serve()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went away; close() releases its backend
        except ProtocolViolation as exc:
            await self.fatal("08P01", str(exc))
        except AuthFailed as exc:
            await self.fatal(exc.sqlstate, str(exc))
        except SessionError as exc:
            await self.fatal(exc.fields["C"], exc.fields["M"])
        except Exception as exc:  # a bug here must close this client only
            log.exception("session failed")
            await self.fatal("XX000", f"internal error in sparsesql serve: {exc}")
        finally:
            await self.close()

    async def fatal(self, sqlstate: str, message: str) -> None:
        try:
            self.writer.write(wire.error(sqlstate, message, severity="FATAL"))
            await asyncio.wait_for(self.writer.drain(), 5)
        except (ConnectionError, asyncio.TimeoutError, RuntimeError):
            pass

    async def close(self) -> None:
        self.server.forget(self)
        db = self.db
        if db is not None:
            if self.busy:
                await asyncio.get_running_loop().run_in_executor(None, cancel_backend, db)
            try:
                await self.call(db.close)
            except psycopg.Error:
                pass
        self.jobs.put(None)  # the session's thread ends after what is queued
        try:
            self.writer.close()
        except RuntimeError:
            pass

    async def call(self, fn: Callable, *args: object) -> object:
        """Run `fn` in the session's own thread (which alone touches its backend connection)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def work() -> None:
            try:
                result, failure = fn(*args), None
            except BaseException as exc:  # handed to the awaiting side as it is
                result, failure = None, exc
            loop.call_soon_threadsafe(_settle, future, result, failure)

        self.busy = True
        self.jobs.put(work)
        try:
            return await future
        finally:
            self.busy = False

    def hung_up(self) -> bool:
        """The client closed its connection while a statement of its runs (the janitor asks)."""
        return self.busy and self.reader.at_eof()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    # ------------------------------------------------------------------ startup

    async def startup(self) -> bool:
        while True:
            packet = await wire.read_startup(self.reader)
            if packet.code == wire.SSL_REQUEST:
                if self.server.ssl is not None and not self.tls:
                    await self.send(b"S")
                    await self.writer.start_tls(self.server.ssl)
                    self.tls = True
                else:
                    await self.send(b"N")
                continue
            if packet.code == wire.GSSENC_REQUEST:
                await self.send(b"N")
                continue
            if packet.code == wire.CANCEL_REQUEST:
                if len(packet.payload) >= 8:
                    pid, secret = struct.unpack("!iI", packet.payload[:8])
                    await self.server.cancel(pid, secret)
                return False
            if packet.code >> 16 != 3:
                raise SessionError("0A000", f"unsupported frontend protocol {packet.code >> 16}.{packet.code & 0xFFFF}: sparsesql serve speaks 3.0")
            break
        params = packet.params
        unknown = [k for k in params if k.startswith("_pq_.")]
        if packet.code & 0xFFFF or unknown:
            body = struct.pack("!ii", 0, len(unknown)) + b"".join(wire.cstr(k) for k in unknown)
            self.writer.write(wire.message(b"v", body))
        user = params.get("user")
        if not user:
            raise SessionError("28000", "no PostgreSQL user name specified in startup packet")
        database = params.get("database") or user
        if database != self.server.database:
            raise SessionError("3D000", f'database "{database}" does not exist: this server serves "{self.server.database}"')
        if self.server.ssl is not None and self.server.require_tls and not self.tls:
            raise SessionError("28000", "this server accepts only TLS connections (sslmode=require)")
        keys = await self.authenticate(user)
        try:
            self.db = await self.call(self.server.open_backend, user, keys, _backend_options(params))
        except psycopg.OperationalError as exc:
            raise SessionError("28000", f"PostgreSQL refused the session for role {user!r}: {str(exc).strip()}") from exc
        except Exception as exc:  # ConfigError and the like
            raise SessionError("08006", f"could not open the backend session: {exc}") from exc
        self.relay = Relay(self.db.conn)
        # a notice's fields are read in the handler: its result is freed once the handler returns
        self.db.conn.add_notice_handler(lambda diag: self.notices.append(dialect.backend_fields(diag)))
        self.pid = self.db.conn.info.backend_pid
        self.server.register(self)
        out = [wire.auth(0)]
        for name in REPORTED:
            value = self.db.conn.info.parameter_status(name)
            if value is not None:
                self.reported[name] = value
                out.append(wire.parameter_status(name, value))
        out.append(wire.parameter_status("sparsesql_version", self.server.version))
        out.append(wire.backend_key(self.pid, self.secret))
        out.append(wire.ready(b"I"))
        await self.send(b"".join(out))
        return True

    async def authenticate(self, user: str):
        verifier = await asyncio.get_running_loop().run_in_executor(None, self.server.verifier, user)
        exchange = ScramExchange(user, verifier, self.server.mock_secret)
        await self.send(wire.auth(10, wire.cstr(MECHANISM) + b"\0"))
        kind, body = await wire.read_message(self.reader)
        if kind != b"p":
            raise ProtocolViolation(f"expected a SASLInitialResponse, got message {kind!r}")
        f = Fields(body, kind)
        mechanism, length = f.cstring(), f.int32()
        data = f.bytes(length) if length >= 0 else b""
        if mechanism != MECHANISM:
            raise AuthFailed(f"SASL mechanism {mechanism!r} is not offered; use {MECHANISM}", "28000")
        await self.send(wire.auth(11, exchange.first(data)))
        kind, body = await wire.read_message(self.reader)
        if kind != b"p":
            raise ProtocolViolation(f"expected a SASLResponse, got message {kind!r}")
        final, keys = exchange.final(body)
        self.writer.write(wire.auth(12, final))
        return keys

    # ------------------------------------------------------------------ the message loop

    async def serve(self) -> None:
        """Read what the client sent, whole messages at a time, and run them in batches."""
        frames = wire.Frames()
        batch: list[tuple[bytes, bytes]] = []
        size = 0
        while True:
            chunk = await self.reader.read(READ_CHUNK)
            if not chunk:
                return  # the client went away (close() releases its backend)
            for kind, body in frames.feed(chunk):
                if kind not in self.HANDLERS and kind != b"X":
                    raise ProtocolViolation(f"invalid frontend message type {kind!r}")
                if kind == b"X":
                    if batch:
                        await self.call(self.process, batch)
                    return
                batch.append((kind, body))
                size += len(body)
                if kind in (b"S", b"H", b"Q") or len(batch) >= BATCH_MESSAGES or size >= BATCH_BYTES:
                    out = await self.call(self.process, batch)
                    batch, size = [], 0
                    if out:
                        await self.send(out)
                    if self.db is None or self.db.conn.broken or self.db.conn.closed:
                        raise SessionError("08006", "the backend connection to PostgreSQL was lost")

    def process(self, batch: list[tuple[bytes, bytes]]) -> bytes:
        """Run a batch in the session's thread; returns every message it produced."""
        executes = sum(1 for kind, _ in batch if kind == b"E")
        for i, (kind, body) in enumerate(batch):
            self.following = batch[i + 1] if i + 1 < len(batch) else None
            if kind == b"E":
                executes -= 1
                self.more_executes = executes > 0
            if self.skipping and kind != b"S":
                continue
            handler = self.HANDLERS.get(kind)
            if handler is None:
                raise ProtocolViolation(f"invalid frontend message type {kind!r}")
            try:
                handler(self, Fields(body, kind))
            except ProtocolViolation:
                raise
            except Exception as exc:
                self.error(exc)
                if kind != b"Q":
                    self.skipping = True
            self.drain_notices()
        self.report_changes()
        out, self.out = b"".join(self.out), []
        return out

    def error(self, exc: BaseException, offset: int = 0) -> None:
        if isinstance(exc, SessionError):
            fields = exc.fields
        elif isinstance(exc, RelayError):
            self.out.extend(partial(exc))
            fields = exc.fields
        else:
            fields = dialect.error_fields(exc, offset)
            if not isinstance(exc, (psycopg.Error,)) and not fields.get("C", "").startswith(("42", "22", "23", "25", "0A", "08", "55", "57")):
                log.exception("statement failed", exc_info=exc)
            self.abort_transaction()
        fields = {"S": "ERROR", "V": "ERROR", **fields}
        self.out.append(wire.notice_or_error(b"E", fields))

    def abort_transaction(self) -> None:
        """A dialect statement failed inside the client's transaction: fail the transaction as
        PostgreSQL would, so a later COMMIT cannot keep half of what the client meant."""
        pgconn = self.db.conn.pgconn if self.db is not None and not self.db.conn.closed else None
        if pgconn is not None and pgconn.transaction_status == pq.TransactionStatus.INTRANS:
            pgconn.exec_(_ABORT)
            self.notices.clear()

    def status(self) -> bytes:
        return _STATUS.get(self.db.conn.pgconn.transaction_status, b"I")

    def drain_notices(self) -> None:
        while self.notices:
            self.out.append(wire.notice_or_error(b"N", self.notices.pop(0)))

    def report_changes(self) -> None:
        """ParameterStatus for what a relayed statement (a SET, say) changed."""
        if self.relay.relayed == self.reported_at:
            return
        self.reported_at = self.relay.relayed
        info = self.db.conn.info
        for name in REPORTED:
            value = info.parameter_status(name)
            if value is not None and self.reported.get(name) != value:
                self.reported[name] = value
                self.out.append(wire.parameter_status(name, value))

    def is_collection(self, name: str) -> bool:
        row = self.db.conn.execute("SELECT 1 FROM sparsesql.collections WHERE name = %s", (name,)).fetchone()
        return row is not None

    # ------------------------------------------------------------------ simple query

    def query(self, f: Fields) -> None:
        text = f.cstring()
        f.end()
        statements = route.split(text)
        if not statements:
            self.out.append(wire.EMPTY_QUERY)
        groups: list[tuple[bool, int, str]] = []
        for offset, statement in statements:
            dialectal = route.is_dialect(statement, self.is_collection)
            if groups and not dialectal and not groups[-1][0]:
                start = groups[-1][1]
                groups[-1] = (False, start, text[start:offset + len(statement)])
            else:
                groups.append((dialectal, offset, statement))
        for dialectal, offset, statement in groups:
            try:
                if dialectal:
                    self.simple_dialect(statement)
                else:
                    self.out.extend(self.relay.simple(statement))
            except Exception as exc:
                self.error(exc, offset)
                break
        self.unnamed_cleared()
        self.out.append(wire.ready(self.status()))

    def simple_dialect(self, text: str) -> None:
        described = dialect.describe(self.db, text, [])
        if any(described.param_oids):
            raise SessionError("42P02", "there is no parameter $1: a simple query cannot bind parameters; use the extended protocol")
        outcome = dialect.run(self.db, text, {}, described, self.server.metrics)
        self.send_outcome(outcome, [], with_description=True)

    def unnamed_cleared(self) -> None:
        """A simple query ends the unnamed statement and portal, as in PostgreSQL."""
        self.portals.pop("", None)
        self.unnamed_cleared_statement()

    def send_outcome(self, outcome: dialect.Outcome, formats: list[int], *, with_description: bool,
                     start: int = 0, stop: int | None = None) -> int:
        """Rows of a dialect statement [start, stop); returns how many were sent."""
        if outcome.columns is None:
            self.out.append(wire.command_complete(outcome.tag))
            return 0
        columns = outcome.columns
        if with_description:
            self.out.append(wire.row_description(_with_formats(columns, formats)))
        end = len(outcome.rows) if stop is None else min(stop, len(outcome.rows))
        binary = [wire.format_of(formats, i) == 1 for i in range(len(columns))]
        for row in outcome.rows[start:end]:
            self.out.append(wire.data_row([t.encode(v, c.type_oid, b) for v, c, b in zip(row, columns, binary)]))
        if end >= len(outcome.rows):
            self.out.append(wire.command_complete(outcome.tag))
        return end - start

    # ------------------------------------------------------------------ extended protocol

    def parse(self, f: Fields) -> None:
        name, text = f.cstring(), f.cstring()
        oids = [f.uint32() for _ in range(f.count("parameter types"))]
        f.end()
        if name and name in self.statements:
            raise SessionError("42P05", f'prepared statement "{name}" already exists')
        statements = route.split(text)
        if len(statements) > 1:
            raise SessionError("42601", "cannot insert multiple commands into a prepared statement")
        if not statements:
            prepared = Prepared(text, "empty", oids)
        elif route.is_dialect(statements[0][1], self.is_collection):
            offset, body = statements[0]
            try:
                described = dialect.describe(self.db, body, oids)
            except Exception as exc:
                self.error(exc, offset)
                self.skipping = True
                return
            prepared = Prepared(body, "dialect", described.param_oids, described=described)
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
        if prepared.kind == "dialect":
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
            if portal is None:
                raise SessionError("34000", f'portal "{name}" does not exist')
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
        if self.following is None or self.following[0] != b"E":
            return False
        body = self.following[1]
        return body[: body.find(b"\0")] == portal.encode()

    def run_portal(self, portal: Portal) -> None:
        if portal.statement.kind == "dialect":
            portal.result = dialect.run(self.db, portal.statement.text, portal.params, portal.statement.described, self.server.metrics)
        else:
            self.run_sql(portal)

    def result_shape(self, portal: Portal) -> bytes:
        result = portal.result
        if isinstance(result, dialect.Outcome):
            return wire.row_description(_with_formats(result.columns, portal.result_formats)) if result.columns else wire.NO_DATA
        return wire.row_description(columns_of(result, portal.result_formats)) if result.nfields else wire.NO_DATA

    def run_sql(self, portal: Portal) -> None:
        prepared = portal.statement
        if prepared.backend is None:
            portal.result = self.relay.execute_text(prepared.text, prepared.param_oids, portal.values, portal.formats, portal.result_formats)
        else:
            portal.result = self.relay.execute(prepared.backend, portal.values, portal.formats, portal.result_formats)

    def row_shape(self, prepared: Prepared, formats: list[int]) -> bytes:
        if prepared.kind == "dialect":
            columns = prepared.described.columns
            return wire.row_description(_with_formats(columns, formats)) if columns is not None else wire.NO_DATA
        if prepared.kind == "empty":
            return wire.NO_DATA
        _, result = self.backend_describe(prepared)
        return wire.row_description(columns_of(result, formats)) if result.nfields else wire.NO_DATA

    def execute(self, f: Fields) -> None:
        name = f.cstring()
        max_rows = f.int32()
        f.end()
        portal = self.portals.get(name)
        if portal is None:
            raise SessionError("34000", f'portal "{name}" does not exist')
        prepared = portal.statement
        if prepared.kind == "empty":
            self.out.append(wire.EMPTY_QUERY)
            return
        self.open_implicit(prepared)
        stop = portal.sent + max_rows if max_rows > 0 else None
        if prepared.kind == "dialect":
            if portal.result is None:
                self.run_portal(portal)
            portal.sent += self.send_outcome(portal.result, portal.result_formats, with_description=False, start=portal.sent, stop=stop)
            total = len(portal.result.rows)
        else:
            if portal.result is None:
                self.run_sql(portal)
            result = portal.result
            if result.status == pq.ExecStatus.COMMAND_OK:
                self.out.append(wire.command_complete(result.command_status or b""))
                return
            if result.status == pq.ExecStatus.EMPTY_QUERY:
                self.out.append(wire.EMPTY_QUERY)
                return
            messages = rows_messages(result, portal.result_formats, with_description=False, start=portal.sent, stop=stop)
            self.out.extend(messages)
            portal.sent = result.ntuples if stop is None else min(stop, result.ntuples)
            total = result.ntuples
        if stop is not None and portal.sent < total:
            self.out.append(wire.PORTAL_SUSPENDED)

    def open_implicit(self, prepared: Prepared) -> None:
        """Several Executes before one Sync run in one transaction, as PostgreSQL runs them
        (JDBC's executeBatch relies on it): libpq would commit each on its own."""
        pgconn = self.db.conn.pgconn
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
            pgconn = self.db.conn.pgconn
            status = pgconn.transaction_status
            if status == pq.TransactionStatus.INERROR:
                pgconn.exec_(b"ROLLBACK")
            elif status == pq.TransactionStatus.INTRANS:
                try:
                    _check(pgconn.exec_(b"COMMIT"), pgconn)
                except RelayError as exc:
                    self.error(exc)
        self.out.append(wire.ready(self.status()))

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
            self.portals.pop(name, None)
        else:
            raise ProtocolViolation(f"invalid Close target {what!r}: expected 'S' or 'P'")
        self.out.append(wire.CLOSE_COMPLETE)

    def copy_outside(self, f: Fields) -> None:
        """CopyData / CopyDone / CopyFail with no COPY running: PostgreSQL ignores them too."""

    HANDLERS = {
        b"Q": query, b"P": parse, b"B": bind, b"D": describe, b"E": execute, b"S": sync, b"H": flush,
        b"C": close_target, b"d": copy_outside, b"c": copy_outside, b"f": copy_outside,
    }


def _with_formats(columns: list[wire.Column], formats: list[int]) -> list[wire.Column]:
    return [wire.Column(c.name, c.type_oid, c.type_size, c.type_mod, c.table_oid, c.column, wire.format_of(formats, i)) for i, c in enumerate(columns)]


def _backend_options(params: dict[str, str]) -> dict[str, str]:
    """libpq options carrying the client's startup parameters to its backend session."""
    settings = [f"-c {_escape(k)}={_escape(v)}" for k, v in params.items() if k not in _NOT_FORWARDED and not k.startswith("_pq_.")]
    if params.get("options"):
        settings.insert(0, params["options"])
    out = {"application_name": params.get("application_name", "")}
    if params.get("client_encoding"):
        out["client_encoding"] = params["client_encoding"]
    if settings:
        out["options"] = " ".join(settings)
    return out


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(" ", "\\ ")


_TRANSACTION_CONTROL = re.compile(r"\s*(BEGIN|START|COMMIT|END|ROLLBACK|ABORT|SAVEPOINT|RELEASE|PREPARE\s+TRANSACTION)\b", re.IGNORECASE)


def _check(result: pq.PGresult | None, pgconn: pq.PGconn) -> None:
    if result is None or result.status != pq.ExecStatus.COMMAND_OK:
        raise RelayError(result_error(result, pgconn))


def _worker(jobs: queue.SimpleQueue) -> None:
    while (job := jobs.get()) is not None:
        job()


def _settle(future: asyncio.Future, result: object, failure: BaseException | None) -> None:
    if future.done():
        return
    if failure is not None:
        future.set_exception(failure)
    else:
        future.set_result(result)


def cancel_backend(db: Database) -> None:
    """Cancel what the session's backend runs now (a no-op when it is idle)."""
    try:
        db.conn.cancel_safe()
    except psycopg.Error:
        pass
