"""Pass-through statements, relayed to the backing PostgreSQL on the session's own connection.

The session's psycopg connection is the one its dialect statements run on, so a client's
BEGIN, its own tables and a search all share one backend session and one transaction. Here
libpq is used directly (`conn.pgconn`): PostgreSQL parses, infers parameter types, checks and
formats values, and its bytes and error fields go back to the client as they came, never
decoded. libpq's exec_prepared takes one result format for all columns; a Bind that asks for
text in some columns and binary in others (JDBC does) gets text from PostgreSQL and the binary
columns converted here, for the scalar types drivers read in binary.
"""

from __future__ import annotations

import datetime as dt
import select
import struct
import uuid
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


def result_error(result: pq.PGresult | None, pgconn: pq.PGconn) -> dict[str, str]:
    if result is None:
        return {"S": "FATAL", "C": "08006", "M": (pgconn.error_message or b"connection to PostgreSQL lost").decode(errors="replace").strip()}
    out = {}
    for letter, code in _FIELDS.items():
        value = result.error_field(code)
        if value:
            out[letter] = value.decode(errors="replace")
    return out or {"C": "XX000", "M": (result.error_message or b"").decode(errors="replace").strip()}


def columns_of(result: pq.PGresult, formats: list[int] | None = None) -> list[wire.Column]:
    """A result's RowDescription fields, in the formats the client's Bind asked for."""
    return [
        wire.Column(
            result.fname(i) or b"", result.ftype(i), result.fsize(i), result.fmod(i),
            result.ftable(i), result.ftablecol(i), wire.format_of(formats, i),
        )
        for i in range(result.nfields)
    ]


def _ok(result: pq.PGresult | None, pgconn: pq.PGconn) -> pq.PGresult:
    if result is None or result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK, pq.ExecStatus.EMPTY_QUERY):
        if result is not None and result.status in (pq.ExecStatus.COPY_IN, pq.ExecStatus.COPY_OUT, pq.ExecStatus.COPY_BOTH):
            _end_copy(pgconn)
            raise RelayError({"C": "0A000", "M": "COPY does not pass through sparsesql serve; use INSERT, or COPY on PostgreSQL directly"})
        raise RelayError(result_error(result, pgconn))
    return result


def _end_copy(pgconn: pq.PGconn) -> None:
    """Abort a COPY the client started, leaving the connection ready for the next statement."""
    try:
        pgconn.put_copy_end(b"COPY is not supported through sparsesql serve")
    except psycopg.Error:
        pass
    while next_result(pgconn) is not None:
        pass


def next_result(pgconn: pq.PGconn) -> pq.PGresult | None:
    """The next result of a sent query, waiting in select() (which lets other threads run:
    libpq's own blocking wait inside PQgetResult would hold the interpreter lock meanwhile)."""
    while pgconn.is_busy():
        select.select([pgconn.socket], [], [], 1.0)
        pgconn.consume_input()
    return pgconn.get_result()


def _flush(pgconn: pq.PGconn) -> None:
    """psycopg keeps libpq non-blocking: push the whole query out before waiting for results."""
    while pgconn.flush() == 1:
        select.select([], [pgconn.socket], [], 1.0)


class Relay:
    """One session's pass-through side."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.pgconn = conn.pgconn
        self.counter = 0
        self.relayed = 0  # statements relayed so far: only they can change a reported parameter

    def simple(self, text: str) -> list[bytes]:
        """Messages for a run of plain statements sent as one simple query (PostgreSQL's own
        multi-statement semantics), ending at the first error (raised after what came before)."""
        out: list[bytes] = []
        self.relayed += 1
        self.pgconn.send_query(text.encode("utf-8"))
        _flush(self.pgconn)
        failed: dict[str, str] | None = None
        while (result := next_result(self.pgconn)) is not None:
            status = result.status
            if status == pq.ExecStatus.TUPLES_OK:
                out.extend(rows_messages(result, None, with_description=True))
            elif status == pq.ExecStatus.COMMAND_OK:
                out.append(wire.command_complete(result.command_status or b""))
            elif status == pq.ExecStatus.EMPTY_QUERY:
                out.append(wire.EMPTY_QUERY)
            elif status in (pq.ExecStatus.COPY_IN, pq.ExecStatus.COPY_OUT, pq.ExecStatus.COPY_BOTH):
                _end_copy(self.pgconn)
                failed = {"C": "0A000", "M": "COPY does not pass through sparsesql serve; use INSERT, or COPY on PostgreSQL directly"}
                break
            elif failed is None:
                failed = result_error(result, self.pgconn)
        if failed is not None:
            raise RelayError(failed) from _Partial(out)
        return out

    # ------------------------------------------------------------------ extended protocol

    def prepare(self, text: str, oids: list[int]) -> str:
        """Prepare on the backend under a name of this relay's own (the client's names, the
        unnamed one included, are the session's to map), returning that name."""
        self.counter += 1
        name = f"sparsesql_{self.counter}"
        _ok(self.pgconn.prepare(name.encode(), text.encode("utf-8"), oids or None), self.pgconn)
        return name

    def describe(self, name: str) -> tuple[list[int], pq.PGresult]:
        result = _ok(self.pgconn.describe_prepared(name.encode()), self.pgconn)
        return [result.param_type(i) for i in range(result.nparams)], result

    def execute(self, name: str, values: list[bytes | None], formats: list[int], result_formats: list[int]) -> pq.PGresult:
        self.relayed += 1
        param_formats, result_format = _formats(values, formats, result_formats)
        return _ok(self.pgconn.exec_prepared(name.encode(), values, param_formats, result_format), self.pgconn)

    def execute_text(self, text: str, oids: list[int], values: list[bytes | None], formats: list[int],
                     result_formats: list[int]) -> pq.PGresult:
        """Parse, bind and run an unprepared statement in one round trip."""
        self.relayed += 1
        param_formats, result_format = _formats(values, formats, result_formats)
        types = (oids + [0] * len(values))[: len(values)]
        return _ok(self.pgconn.exec_params(text.encode("utf-8"), values, types, param_formats, result_format), self.pgconn)

    def close(self, name: str) -> None:
        _ok(self.pgconn.close_prepared(name.encode()), self.pgconn)


def _formats(values: list[bytes | None], formats: list[int], result_formats: list[int]) -> tuple[list[int], int]:
    """Bind's parameter format codes spelled out per value, and the one result format libpq takes
    (text when the client mixed them: `rows_messages` converts its binary columns)."""
    single = set(result_formats) if result_formats else {0}
    n = len(values)
    return (formats * n if len(formats) == 1 else (formats or [0] * n)), (single.pop() if len(single) == 1 else 0)


class _Partial(Exception):
    """Carries the messages a multi-statement query produced before its error."""

    def __init__(self, messages: list[bytes]) -> None:
        super().__init__("partial results")
        self.messages = messages


def partial(exc: RelayError) -> list[bytes]:
    cause = exc.__cause__
    return cause.messages if isinstance(cause, _Partial) else []


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
