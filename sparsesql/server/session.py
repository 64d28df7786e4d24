"""One client connection: the message loop, its worker thread, errors and what the backend says
between statements (notices, notifications, parameter changes, its own end).

The asyncio side only reads and writes bytes. Messages are gathered up to the next Sync, Flush,
Query, CopyDone or CopyFail (a driver waits for output only after one of those) and handed, as
one batch, to the session's own worker thread, which holds the backend connection: a search's
Parse, Bind, Describe, Execute and Sync cost one hop between threads, not five. An error in the
extended protocol discards messages until Sync, which gets exactly one ReadyForQuery. A client
that breaks the framing gets a FATAL ErrorResponse and loses only its own connection. While the
session is idle its backend socket is watched, so a NOTIFY reaches the client at once and a
backend that ends (pg_terminate_backend, a session timeout) ends the client's connection with
PostgreSQL's own FATAL. The protocol's phases live in their own modules: startup, simple_query,
extended_query, copy_phase.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import secrets
import select
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Callable

import psycopg
from psycopg import pq

from sparsesql.database import Database
from sparsesql.server import dialect, wire
from sparsesql.server import types as t
from sparsesql.server.auth import AuthFailed
from sparsesql.server.copy_phase import CopyPhase
from sparsesql.server.cursors import Cursor, DialectCursors
from sparsesql.server.extended_query import ExtendedQuery, Portal, Prepared, with_formats
from sparsesql.server.relay import Relay, RelayError
from sparsesql.server.simple_query import SimpleQuery
from sparsesql.server.sqlstates import SessionError
from sparsesql.server.startup import StartupPhase
from sparsesql.server.wire import Fields, ProtocolViolation

if TYPE_CHECKING:
    from sparsesql.server.host import Host

log = logging.getLogger("sparsesql.server")

BATCH_MESSAGES = 512
READ_CHUNK = 256 * 1024
BATCH_BYTES = 64 * 2**20
_BATCH_ENDS = (b"S", b"H", b"Q", b"c", b"f")
_STATUS = {pq.TransactionStatus.IDLE: b"I", pq.TransactionStatus.INTRANS: b"T", pq.TransactionStatus.INERROR: b"E"}
_ABORT = b"DO $$BEGIN RAISE EXCEPTION USING ERRCODE = '25P02', MESSAGE = 'the previous sparsesql statement failed; the transaction is aborted'; END$$"
_GONE = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR  # the client closed or reset its end (RDHUP: Linux)
_TEXT_TYPES = {t.TEXT, t.VARCHAR, t.BPCHAR, t.NAME, t.JSON, t.JSONB}


class BackendLost(Exception):
    """The backend session ended; the client has been told why (PostgreSQL's FATAL)."""


class Session(StartupPhase, SimpleQuery, ExtendedQuery, CopyPhase, DialectCursors):
    def __init__(self, server: "Host", reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.loop = asyncio.get_running_loop()
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=_worker, args=(self.jobs,), name="sparsesql-session", daemon=True).start()
        self.db: Database | None = None
        self.relay: Relay | None = None
        self.statements: dict[str, Prepared] = {}
        self.portals: dict[str, Portal] = {}
        self.cursors: dict[str, Cursor] = {}  # cursors over dialect statements, by name
        self.skipping = False
        self.copying: Iterator[None] | None = None  # a COPY FROM STDIN's statement, waiting for data
        self.out: list[bytes] = []
        self.notices: list[dict[str, str]] = []
        self.notifications: list[bytes] = []
        self.last_words: list[dict[str, str]] = []  # a FATAL the idle backend sent before closing
        self.reported: dict[str, str] = {}
        self.pid = 0
        self.secret = secrets.randbits(32)
        self.tls = False
        self.busy = 0  # calls queued or running in the session's thread
        self.watching: int | None = None  # the backend socket watched while the session is idle
        self.following: tuple[bytes, bytes] | None = None  # the next message of the batch being run
        self.more_executes = False  # the current Execute may be followed by another before the Sync
        self.implicit = False  # a transaction opened here for the Executes before the next Sync
        self.reported_at = 0  # the relay's statement count when parameters were last compared

    @property
    def encoding(self) -> str:
        """The Python codec of the client's client_encoding (the relay's, once it exists)."""
        return self.relay.encoding if self.relay is not None else "utf-8"

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        try:
            if await self.startup():
                await self.serve()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError, BackendLost):
            pass  # the client went away, or was told its backend did; close() releases the rest
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
        self.unwatch()
        db = self.db
        if db is not None:
            if self.busy:
                await self.loop.run_in_executor(None, cancel_backend, db)
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
        loop = self.loop
        future = loop.create_future()

        def work() -> None:
            try:
                result, failure = fn(*args), None
            except BaseException as exc:  # handed to the awaiting side as it is
                result, failure = None, exc
            loop.call_soon_threadsafe(_settle, future, result, failure)

        self.busy += 1
        self.jobs.put(work)
        try:
            return await future
        finally:
            self.busy -= 1

    def hung_up(self) -> bool:
        """The client closed its connection while a statement of its runs (the janitor asks).
        Asked of the socket, not the reader: a client's last messages (a Terminate) may still
        wait unread in the reader's buffer after its end arrived."""
        if not self.busy:
            return False
        sock = self.writer.get_extra_info("socket")
        if sock is None or self.writer.is_closing() or sock.fileno() < 0:
            return True
        poll = select.poll()
        poll.register(sock.fileno(), _GONE)
        return any(events & _GONE for _, events in poll.poll(0))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def flush_now(self) -> None:
        """From the session's thread: send what is gathered now and wait until the client takes
        it (COPY TO output, which may be larger than memory should hold)."""
        data, self.out = b"".join(self.out), []
        asyncio.run_coroutine_threadsafe(self.send(data), self.loop).result()

    # ------------------------------------------------------------------ the message loop

    async def serve(self) -> None:
        """Read what the client sent, whole messages at a time, and run them in batches."""
        frames = wire.Frames()
        batch: list[tuple[bytes, bytes]] = []
        size = 0
        while True:
            self.watch()
            chunk = await self.reader.read(READ_CHUNK)
            self.unwatch()
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
                if kind in _BATCH_ENDS or len(batch) >= BATCH_MESSAGES or size >= BATCH_BYTES:
                    out = await self.call(self.process, batch)
                    batch, size = [], 0
                    if out:
                        await self.send(out)
                    if self.relay.lost:
                        raise BackendLost()  # its FATAL (PostgreSQL's own, or 08006) was in `out`

    def watch(self) -> None:
        """While idle, wake on anything the backend sends: a notification, or its end."""
        if self.relay is not None and self.watching is None and not self.relay.lost:
            self.watching = self.relay.pgconn.socket
            self.loop.add_reader(self.watching, self._backend_spoke)

    def unwatch(self) -> None:
        if self.watching is not None:
            self.loop.remove_reader(self.watching)
            self.watching = None

    def _backend_spoke(self) -> None:
        """The idle backend sent something. Read here, on the loop: nothing runs in the session's
        thread (`busy` counts what was handed to it), libpq's reads are non-blocking, and a
        notification reaches the client with no hop between threads."""
        if self.busy:
            self.unwatch()  # the running call reads it, and the loop watches again after
            return
        out = self.idle_messages()
        if out:
            self.writer.write(out)  # the transport buffers what the client is slow to take
        if self.relay.lost:
            self.unwatch()
            self.writer.close()  # the client reads PostgreSQL's FATAL, then the end of the stream

    def idle_messages(self) -> bytes:
        """Notifications (and notices) the backend sent while the client was idle; when the
        backend ended, its FATAL as an ErrorResponse (or 08006 when it sent none)."""
        self.notifications.extend(self.relay.poll())
        # libpq hands an error that arrives between queries to the notice handler: a FATAL is
        # PostgreSQL saying why it is about to close, kept until the close itself is read
        self.last_words.extend(n for n in self.notices if n.get("S") in ("FATAL", "PANIC"))
        self.notices = [n for n in self.notices if n.get("S") not in ("FATAL", "PANIC")]
        self.drain_notices()
        self.drain_notifications()
        if self.relay.lost:
            fields = self.last_words[0] if self.last_words else {"S": "FATAL", "C": "08006", "M": "the backend connection to PostgreSQL was lost"}
            self.out.append(wire.notice_or_error(b"E", {"V": fields["S"], **fields}, self.encoding))
        out, self.out = b"".join(self.out), []
        return out

    def process(self, batch: list[tuple[bytes, bytes]]) -> bytes:
        """Run a batch in the session's thread; returns every message it produced."""
        later = [0] * len(batch)  # Executes after each position
        for i in range(len(batch) - 2, -1, -1):
            later[i] = later[i + 1] + (batch[i + 1][0] == b"E")
        last_sync = max((i for i, (kind, _) in enumerate(batch) if kind == b"S"), default=-1)
        for i, (kind, body) in enumerate(batch):
            self.following = batch[i + 1] if i + 1 < len(batch) else None
            if kind in (b"D", b"E"):
                # one transaction up to the Sync: another Execute follows this statement's, or
                # the Sync is not here yet (a pipeline that flushes after each statement)
                own = i + 1 if kind == b"D" and self.following is not None and self.following[0] == b"E" else i
                self.more_executes = later[own] > 0 or i > last_sync
            if self.copying is not None:
                self.copy_message(kind, body)
                continue
            if self.skipping and kind != b"S":
                continue
            handler = self.HANDLERS.get(kind)
            if handler is None:
                raise ProtocolViolation(f"invalid frontend message type {kind!r}")
            try:
                handler(self, Fields(body, kind, self.encoding))
            except (ProtocolViolation, ConnectionError):
                raise
            except Exception as exc:
                self.error(exc)
                if kind != b"Q":
                    self.skipping = True
            self.drain_notices()
            if self.relay.lost:
                break
        if not self.relay.lost:
            self.transaction_ended()
        self.report_changes()
        self.notifications.extend(self.relay.notifications())
        self.drain_notifications()
        out, self.out = b"".join(self.out), []
        return out

    def error(self, exc: BaseException, offset: int = 0) -> None:
        if isinstance(exc, (SessionError, RelayError)):
            fields = exc.fields
        else:
            fields = dialect.error_fields(exc, offset)
            if not isinstance(exc, (psycopg.Error,)) and not fields.get("C", "").startswith(("42", "22", "23", "25", "0A", "08", "55", "57")):
                log.exception("statement failed", exc_info=exc)
            self.abort_transaction()
        fields = {"S": "ERROR", "V": "ERROR", **fields}
        self.out.append(wire.notice_or_error(b"E", fields, self.encoding))

    def abort_transaction(self) -> None:
        """A dialect statement failed inside the client's transaction: fail the transaction as
        PostgreSQL would, so a later COMMIT cannot keep half of what the client meant."""
        pgconn = self.relay.pgconn if self.relay is not None and not self.relay.lost else None
        if pgconn is not None and pgconn.transaction_status == pq.TransactionStatus.INTRANS:
            pgconn.exec_(_ABORT)
            self.notices.clear()

    def status(self) -> bytes:
        return _STATUS.get(self.relay.pgconn.transaction_status, b"I")

    def ready(self) -> None:
        """ReadyForQuery, unless the backend has gone: then its FATAL was the last word."""
        if not self.relay.lost:
            self.out.append(wire.ready(self.status()))

    def drain_notices(self) -> None:
        while self.notices:
            self.out.append(wire.notice_or_error(b"N", self.notices.pop(0), self.encoding))

    def drain_notifications(self) -> None:
        self.out.extend(self.notifications)
        self.notifications.clear()

    def report_changes(self) -> None:
        """ParameterStatus for what a relayed statement (a SET, say) changed."""
        if self.relay.relayed == self.reported_at or self.relay.lost:
            return
        self.reported_at = self.relay.relayed
        self.out.extend(self.parameter_changes())

    # ------------------------------------------------------------------ dialect results

    def send_outcome(self, outcome: dialect.Outcome, formats: list[int], *, with_description: bool,
                     start: int = 0, stop: int | None = None) -> int:
        """Rows of a dialect statement [start, stop); returns how many were sent."""
        if outcome.columns is None:
            self.out.append(wire.command_complete(outcome.tag))
            return 0
        columns = outcome.columns
        if with_description:
            self.out.append(wire.row_description(with_formats(columns, formats)))
        end = len(outcome.rows) if stop is None else min(stop, len(outcome.rows))
        binary = [wire.format_of(formats, i) == 1 for i in range(len(columns))]
        transcode = self.encoding != "utf-8" and [c.type_oid in _TEXT_TYPES for c in columns]
        for row in outcome.rows[start:end]:
            values = [t.encode(v, c.type_oid, b) for v, c, b in zip(row, columns, binary)]
            if transcode:
                values = [self.transcoded(v) if v is not None and text else v for v, text in zip(values, transcode)]
            self.out.append(wire.data_row(values))
        if end >= len(outcome.rows):
            self.out.append(wire.command_complete(outcome.tag))
        return end - start

    def transcoded(self, raw: bytes) -> bytes:
        """A dialect result's text in the client's encoding, as PostgreSQL converts it."""
        try:
            return raw.decode("utf-8").encode(self.encoding)
        except UnicodeEncodeError as exc:
            raise SessionError("22P05", f"character {exc.object[exc.start]!r} has no equivalent in the client encoding ({self.encoding})") from None

    def copy_outside(self, f: Fields) -> None:
        """CopyData / CopyDone / CopyFail with no COPY running: PostgreSQL ignores them too."""

    HANDLERS = {
        b"Q": SimpleQuery.query, b"P": ExtendedQuery.parse, b"B": ExtendedQuery.bind, b"D": ExtendedQuery.describe,
        b"E": ExtendedQuery.execute, b"S": ExtendedQuery.sync, b"H": ExtendedQuery.flush,
        b"C": ExtendedQuery.close_target, b"d": copy_outside, b"c": copy_outside, b"f": copy_outside,
    }


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
