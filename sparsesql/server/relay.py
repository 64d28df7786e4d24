"""Pass-through statements, relayed to the backing PostgreSQL on the session's own connection.

The session's psycopg connection is the one its dialect statements run on, so a client's
BEGIN, its own tables and a search all share one backend session and one transaction. Here
libpq is used directly (`conn.pgconn`): PostgreSQL parses, infers parameter types, checks and
formats values, and its bytes and error fields go back to the client as they came, in the
client's encoding. COPY data passes through in both directions, portals a client DECLAREd are
described, read and closed where they live, and notifications are collected after each
statement and whenever the idle backend speaks. libpq's exec_prepared takes one result format
for all columns; a Bind that asks for text in some columns and binary in others (JDBC does)
gets text from PostgreSQL and the binary columns converted here, for the scalar types drivers
read in binary.
"""

from __future__ import annotations

import datetime as dt
import select
import struct
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal

import psycopg
from psycopg import pq

from sparsesql.server import types as t
from sparsesql.server import wire

_FIELDS = {
    "S": pq.DiagnosticField.SEVERITY, "V": pq.DiagnosticField.SEVERITY_NONLOCALIZED, "C": pq.DiagnosticField.SQLSTATE,
    "M": pq.DiagnosticField.MESSAGE_PRIMARY, "D": pq.DiagnosticField.MESSAGE_DETAIL, "H": pq.DiagnosticField.MESSAGE_HINT,
    "P": pq.DiagnosticField.STATEMENT_POSITION, "p": pq.DiagnosticField.INTERNAL_POSITION, "q": pq.DiagnosticField.INTERNAL_QUERY,
    "W": pq.DiagnosticField.CONTEXT, "s": pq.DiagnosticField.SCHEMA_NAME, "t": pq.DiagnosticField.TABLE_NAME,
    "c": pq.DiagnosticField.COLUMN_NAME, "d": pq.DiagnosticField.DATATYPE_NAME, "n": pq.DiagnosticField.CONSTRAINT_NAME,
    "F": pq.DiagnosticField.SOURCE_FILE, "L": pq.DiagnosticField.SOURCE_LINE, "R": pq.DiagnosticField.SOURCE_FUNCTION,
}


class RelayError(Exception):
    """PostgreSQL refused the statement; `fields` is its ErrorResponse, as it sent it."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(fields.get("M", "error"))
        self.fields = fields


def result_error(result: pq.PGresult | None, pgconn: pq.PGconn, encoding: str = "utf-8") -> dict[str, str]:
    """PostgreSQL's error fields for a failed result, in the client's encoding as it sent them. A
    result without fields is a lost connection (08006), as libpq reports it."""
    out = {}
    if result is not None:
        for letter, code in _FIELDS.items():
            value = result.error_field(code)
            if value:
                out[letter] = value.decode(encoding, errors="replace")
    if out.get("C"):
        return out
    message = (result.error_message if result is not None else b"") or pgconn.error_message or b"connection to PostgreSQL lost"
    lost = pgconn.status == pq.ConnStatus.BAD
    return {"S": "FATAL" if lost else "ERROR", "C": "08006" if lost else "XX000",
            "M": message.decode(encoding, errors="replace").strip().removeprefix("FATAL:").strip()}


def columns_of(result: pq.PGresult, formats: list[int] | None = None) -> list[wire.Column]:
    """A result's RowDescription fields, in the formats the client's Bind asked for (None: as
    PostgreSQL described them, for a portal the client did not bind here)."""
    return [
        wire.Column(
            result.fname(i) or b"", result.ftype(i), result.fsize(i), result.fmod(i),
            result.ftable(i), result.ftablecol(i), result.fformat(i) if formats is None else wire.format_of(formats, i),
        )
        for i in range(result.nfields)
    ]


_COPYING = (pq.ExecStatus.COPY_IN, pq.ExecStatus.COPY_OUT, pq.ExecStatus.COPY_BOTH)
_DONE = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK, pq.ExecStatus.EMPTY_QUERY, pq.ExecStatus.COPY_IN, pq.ExecStatus.COPY_OUT)


def next_result(pgconn: pq.PGconn) -> pq.PGresult | None:
    """The next result of a sent query, waiting in select() (which lets other threads run:
    libpq's own blocking wait inside PQgetResult would hold the interpreter lock meanwhile)."""
    while pgconn.is_busy():
        _wait(pgconn, read=True)
        try:
            pgconn.consume_input()
        except psycopg.OperationalError:
            break  # the backend closed: what it said last (its FATAL) is still to be read
    return pgconn.get_result()


def _wait(pgconn: pq.PGconn, *, read: bool) -> None:
    """Sleep until the backend's socket is ready (a second at most: the caller re-checks)."""
    fd = pgconn.socket
    select.select([fd] if read else [], [] if read else [fd], [], 1.0)


def _flush(pgconn: pq.PGconn) -> None:
    """psycopg keeps libpq non-blocking: push the whole query out before waiting for results."""
    while pgconn.flush() == 1:
        _wait(pgconn, read=False)


class Relay:
    """One session's pass-through side: statements go to PostgreSQL as the client wrote them
    (in its encoding), results and errors come back as PostgreSQL sent them."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.pgconn = conn.pgconn
        self.encoding = "utf-8"  # the client's client_encoding, as the session last heard it
        self.counter = 0
        self.relayed = 0  # statements relayed so far: only they can change a reported parameter

    def encode(self, text: str) -> bytes:
        return text.encode(self.encoding)

    def send_simple(self, text: str) -> None:
        """Send a run of plain statements as one simple query; its results follow in `results`."""
        self.relayed += 1
        self.pgconn.send_query(self.encode(text))
        _flush(self.pgconn)

    def results(self) -> Iterator[pq.PGresult]:
        while (result := next_result(self.pgconn)) is not None:
            yield result

    def error(self, result: pq.PGresult | None) -> RelayError:
        return RelayError(result_error(result, self.pgconn, self.encoding))

    def finish(self) -> list[pq.PGresult]:
        """The results left of the statement that ran (the end of a COPY), raising its error."""
        done, failed = [], None
        for result in self.results():
            if result.status in _DONE:
                done.append(result)
            elif failed is None:
                failed = self.error(result)
        if failed is not None:
            raise failed
        return done

    def ok(self, result: pq.PGresult | None) -> pq.PGresult:
        if result is None or result.status not in _DONE:
            raise self.error(result)
        return result

    # ------------------------------------------------------------------ COPY

    def copy_chunks(self) -> Iterator[bytes]:
        """COPY TO STDOUT's CopyData payloads as they arrive, waiting (never spinning) between them."""
        while True:
            try:
                n, data = self.pgconn.get_copy_data(1)
            except psycopg.OperationalError:
                return  # the error is the COPY's final result
            if n > 0:
                yield bytes(data)
            elif n == 0:
                _wait(self.pgconn, read=True)
                self.pgconn.consume_input()
            else:
                return

    def copy_data(self, data: bytes) -> bool:
        """Pass one CopyData on; False once PostgreSQL has ended the COPY (an error in the data)."""
        try:
            while self.pgconn.put_copy_data(data) == 0:
                _wait(self.pgconn, read=False)
                self.pgconn.flush()
        except psycopg.OperationalError:
            return False
        return True

    def copy_end(self, error: str | None) -> None:
        """CopyDone (error None) or CopyFail with the client's message."""
        try:
            while self.pgconn.put_copy_end(None if error is None else self.encode(error)) == 0:
                _wait(self.pgconn, read=False)
            _flush(self.pgconn)
        except psycopg.OperationalError:
            pass  # the COPY had already ended; its result says how

    # ------------------------------------------------------------------ notifications

    def notifications(self) -> list[bytes]:
        out = []
        while (n := self.pgconn.notifies()) is not None:
            out.append(wire.notification(n.be_pid, n.relname, n.extra))
        return out

    def poll(self) -> list[bytes]:
        """What PostgreSQL sent while the session was idle (notifications; a FATAL before it
        closes goes to the notice handler), reading it off the socket."""
        try:
            self.pgconn.consume_input()
        except psycopg.OperationalError:
            pass  # the connection is gone: the session sees the BAD status
        return self.notifications()

    @property
    def lost(self) -> bool:
        return self.pgconn.status == pq.ConnStatus.BAD

    def is_collection(self, name: str) -> bool:
        """Whether a table name is a collection's (raw libpq: any client encoding; a failed
        transaction answers False and PostgreSQL then gives the client its own 25P02)."""
        result = self.pgconn.exec_params(b"SELECT 1 FROM sparsesql.collections WHERE name = $1", [name.encode("utf-8")], [25])
        return result is not None and result.status == pq.ExecStatus.TUPLES_OK and result.ntuples > 0

    # ------------------------------------------------------------------ extended protocol

    def prepare(self, text: str, oids: list[int]) -> str:
        """Prepare on the backend under a name of this relay's own (the client's names, the
        unnamed one included, are the session's to map), returning that name."""
        self.counter += 1
        name = f"sparsesql_{self.counter}"
        self.ok(self.pgconn.prepare(name.encode(), self.encode(text), oids or None))
        return name

    def describe(self, name: str) -> tuple[list[int], pq.PGresult]:
        result = self.ok(self.pgconn.describe_prepared(name.encode()))
        return [result.param_type(i) for i in range(result.nparams)], result

    def describe_portal(self, name: str) -> pq.PGresult:
        """A portal the client made with DECLARE: PostgreSQL's own description of it."""
        return self.ok(self.pgconn.describe_portal(self.encode(name)))

    def close_portal(self, name: str) -> None:
        self.ok(self.pgconn.close_portal(self.encode(name)))

    def quoted(self, name: str) -> bytes:
        """A cursor's name as an identifier in the client's encoding."""
        return b'"' + self.encode(name).replace(b'"', b'""') + b'"'

    def declare(self, text: str, oids: list[int], values: list[bytes | None], formats: list[int]) -> bytes:
        """Open a cursor over a bound query, for a portal the client reads a page at a time
        (libpq runs the portals it binds to the end); returns the cursor's quoted name."""
        self.counter += 1
        name = self.quoted(f"sparsesql_portal_{self.counter}")
        param_formats, _ = _formats(values, formats, [])
        types = (oids + [0] * len(values))[: len(values)]
        self._run(lambda: self.pgconn.send_query_params(b"DECLARE " + name + b" NO SCROLL CURSOR FOR " + self.encode(text),
                                                        values, types, param_formats, 0))
        return name

    def fetch(self, cursor: bytes, rows: int, result_formats: list[int]) -> pq.PGresult:
        """The next `rows` rows (0: all) of a cursor (quoted), in the formats a Bind asked: how an
        Execute reads a portal libpq did not bind (a DECLAREd one, or one `declare` opened)."""
        _, result_format = _formats([], [], result_formats)
        count = str(rows).encode() if rows > 0 else b"ALL"
        return self._run(lambda: self.pgconn.send_query_params(b"FETCH FORWARD " + count + b" FROM " + cursor, [], None, None, result_format))

    def execute(self, name: str, values: list[bytes | None], formats: list[int], result_formats: list[int]) -> pq.PGresult:
        param_formats, result_format = _formats(values, formats, result_formats)
        return self._run(lambda: self.pgconn.send_query_prepared(name.encode(), values, param_formats, result_format))

    def execute_text(self, text: str, oids: list[int], values: list[bytes | None], formats: list[int],
                     result_formats: list[int]) -> pq.PGresult:
        """Parse, bind and run an unprepared statement in one round trip."""
        param_formats, result_format = _formats(values, formats, result_formats)
        types = (oids + [0] * len(values))[: len(values)]
        return self._run(lambda: self.pgconn.send_query_params(self.encode(text), values, types, param_formats, result_format))

    def _run(self, send: Callable[[], None]) -> pq.PGresult:
        """Send one statement and return its result. Not libpq's PQexec, which keeps the last
        result: after a backend's FATAL that is the lost connection's, without PostgreSQL's
        SQLSTATE. A COPY's result is returned as soon as it starts."""
        self.relayed += 1
        send()
        _flush(self.pgconn)
        first = None
        for result in self.results():
            first = first or result
            if result.status in _COPYING:
                break
        return self.ok(first)

    def close(self, name: str) -> None:
        self.ok(self.pgconn.close_prepared(name.encode()))


def _formats(values: list[bytes | None], formats: list[int], result_formats: list[int]) -> tuple[list[int], int]:
    """Bind's parameter format codes spelled out per value, and the one result format libpq takes
    (text when the client mixed them: `rows_messages` converts its binary columns)."""
    single = set(result_formats) if result_formats else {0}
    n = len(values)
    return (formats * n if len(formats) == 1 else (formats or [0] * n)), (single.pop() if len(single) == 1 else 0)


def rows_messages(result: pq.PGresult, formats: list[int] | None, *, with_description: bool,
                  start: int = 0, stop: int | None = None) -> list[bytes]:
    """RowDescription (when asked), DataRows [start, stop), and CommandComplete when the end is reached."""
    out = [wire.row_description(columns_of(result, formats))] if with_description else []
    n, total = result.nfields, result.ntuples
    stop = total if stop is None else min(stop, total)
    convert = _converters(result, formats)
    get = result.get_value
    for row in range(start, stop):
        values = [get(row, col) for col in range(n)]
        if convert:
            for col, fn in convert:
                if values[col] is not None:
                    values[col] = fn(values[col])
        out.append(wire.data_row(values))
    if stop >= total:
        out.append(wire.command_complete(result.command_status or b""))
    return out


def _converters(result: pq.PGresult, formats: list[int] | None) -> list[tuple[int, object]]:
    """Per-column text -> binary conversions, when the client mixed formats."""
    if not formats or len(set(formats)) == 1:
        return []
    out = []
    for col in range(result.nfields):
        if wire.format_of(formats, col) == 1:
            oid = result.ftype(col)
            if oid not in _TEXT_TO_BINARY:
                raise RelayError({
                    "C": "0A000",
                    "M": f"column {col + 1} (type oid {oid}) was asked for in binary beside text columns; "
                         "sparsesql serve converts only common scalar types this way: ask for one format for all columns",
                })
            out.append((col, _TEXT_TO_BINARY[oid]))
    return out


def _timestamp(raw: bytes) -> bytes:
    value = dt.datetime.fromisoformat(raw.decode())
    return t.encode(value, t.TIMESTAMPTZ if value.tzinfo else t.TIMESTAMP, True)


_TEXT_TO_BINARY = {
    t.INT2: lambda raw: struct.pack("!h", int(raw)),
    t.INT4: lambda raw: struct.pack("!i", int(raw)),
    t.INT8: lambda raw: struct.pack("!q", int(raw)),
    t.OID: lambda raw: struct.pack("!I", int(raw)),
    t.FLOAT4: lambda raw: struct.pack("!f", float(raw)),
    t.FLOAT8: lambda raw: struct.pack("!d", float(raw)),
    t.BOOL: lambda raw: b"\x01" if raw == b"t" else b"\x00",
    t.TEXT: lambda raw: raw, t.VARCHAR: lambda raw: raw, t.BPCHAR: lambda raw: raw, t.NAME: lambda raw: raw,
    t.JSON: lambda raw: raw,
    t.JSONB: lambda raw: b"\x01" + raw,
    t.NUMERIC: lambda raw: t.encode(Decimal(raw.decode()), t.NUMERIC, True),
    t.DATE: lambda raw: t.encode(dt.date.fromisoformat(raw.decode()), t.DATE, True),
    t.TIMESTAMP: _timestamp,
    t.TIMESTAMPTZ: _timestamp,
    t.BYTEA: lambda raw: bytes.fromhex(raw[2:].decode()),
    2950: lambda raw: uuid.UUID(raw.decode()).bytes,
}
