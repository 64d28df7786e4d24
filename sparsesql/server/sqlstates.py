"""The SQLSTATE a PostgreSQL client (or the HTTP API's JSON) gets for each of sparsesql's errors."""

from __future__ import annotations

import psycopg

from sparsesql import errors
from sparsesql.server import types as t


def sqlstate(exc: BaseException) -> str:
    """The SQLSTATE a PostgreSQL client should see for a sparsesql error."""
    if isinstance(exc, psycopg.Error):
        return _client_side(exc)
    cause = exc.__cause__
    if isinstance(exc, errors.DatabaseError) and isinstance(cause, psycopg.Error):
        return _client_side(cause)
    if isinstance(exc, errors.QuerySyntaxError):
        return "42601"
    if isinstance(exc, errors.ParameterError):
        return "22023"
    if isinstance(exc, errors.CheckError):
        message = exc.message
        if message.startswith("collection ") and "does not exist" in message:
            return "42P01"
        if message.startswith("unknown field") or message.startswith("unknown column"):
            return "42703"
        return "22023"
    if isinstance(exc, errors.IngestError):
        return "22023"
    if isinstance(exc, errors.ConfigError):
        return "55000"
    if isinstance(exc, t.BadValue):
        return "22P02"
    return "XX000"


def _client_side(exc: psycopg.Error) -> str:
    """The server's SQLSTATE; psycopg's own refusals carry none: a value it cannot send (a NUL
    in text) is a data exception, anything else internal."""
    return exc.sqlstate or ("22000" if isinstance(exc, psycopg.DataError) else "XX000")


class SessionError(Exception):
    """An error a wire session sends as an ErrorResponse; `fields` are the protocol's letters."""

    def __init__(self, sqlstate: str, message: str, **fields: str) -> None:
        super().__init__(message)
        self.fields = {"C": sqlstate, "M": message, **fields}
