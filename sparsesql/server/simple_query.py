"""The simple protocol: one Query message, possibly several statements, one ReadyForQuery.

Runs of plain statements go to PostgreSQL as one simple query (its own multi-statement rules);
dialect statements run between them. The steps are a generator so that a COPY FROM STDIN in the
middle can wait for the client's CopyData and carry on after its CopyDone.
"""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import pq

from sparsesql.lang.statements import split
from sparsesql.server import dialect, route, wire
from sparsesql.server.cursors import Declare, Move
from sparsesql.server.relay import rows_messages
from sparsesql.server.sqlstates import SessionError
from sparsesql.server.wire import Fields


class SimpleQuery:
    """Session methods for the Query message (mixed into `Session`)."""

    def query(self, f: Fields) -> None:
        text = f.cstring()
        f.end()
        self.drive(self._query_steps(text))

    def _query_steps(self, text: str) -> Iterator[None]:
        statements = split(text)
        if not statements:
            self.out.append(wire.EMPTY_QUERY)
        # (what runs it, offset, text): runs of PostgreSQL's statements go as one simple query
        groups: list[tuple[object, int, str]] = []
        for offset, statement in statements:
            owner = "dialect" if route.is_dialect(statement, self.relay.is_collection) else self.cursor_statement(statement)
            if groups and owner is None and groups[-1][0] is None:
                start = groups[-1][1]
                groups[-1] = (None, start, text[start:offset + len(statement)])
            else:
                groups.append((owner, offset, statement))
        for owner, offset, statement in groups:
            try:
                if owner is None:
                    yield from self._relay_simple(statement)
                elif isinstance(owner, Declare):
                    offset += owner.offset
                    self.simple_dialect(statement[owner.offset:], owner)
                elif isinstance(owner, Move):
                    move = self.move(owner)
                    self.send_outcome(move, self.cursor_formats(owner.name) if owner.verb == "FETCH" else [], with_description=True)
                else:
                    self.simple_dialect(statement)
            except Exception as exc:
                if isinstance(exc, ConnectionError):
                    raise
                self.error(exc, offset)
                break
        if not self.relay.lost:
            self.unnamed_cleared()
        self.ready()

    def _relay_simple(self, text: str) -> Iterator[None]:
        """PostgreSQL's results for a run of plain statements, in the order it sent them, ending
        at its first error. A COPY streams out, or yields until the client's data is in."""
        relay = self.relay
        relay.send_simple(text)
        failed = None
        for result in relay.results():
            status = result.status
            if status == pq.ExecStatus.TUPLES_OK:
                self.out.extend(rows_messages(result, None, with_description=True))
            elif status == pq.ExecStatus.COMMAND_OK:
                self.out.append(wire.command_complete(result.command_status or b""))
            elif status == pq.ExecStatus.EMPTY_QUERY:
                self.out.append(wire.EMPTY_QUERY)
            elif status == pq.ExecStatus.COPY_OUT:
                self.copy_out(result)
            elif status == pq.ExecStatus.COPY_IN:
                self.out.append(self.copy_in_response(result))
                yield  # resumed once the client's CopyDone or CopyFail went on
            elif failed is None:
                failed = relay.error(result)
        if failed is not None:
            raise failed

    def simple_dialect(self, text: str, declare: Declare | None = None) -> None:
        described = dialect.describe(self.db, text, [])
        if any(described.param_oids):
            raise SessionError("42P02", "there is no parameter $1: a simple query cannot bind parameters; use the extended protocol")
        if declare is not None:
            outcome = self.declare(declare, text, {}, described)
        else:
            outcome = dialect.run(self.db, text, {}, described, self.server.metrics)
        self.send_outcome(outcome, [], with_description=True)

    def unnamed_cleared(self) -> None:
        """A simple query ends the unnamed statement and portal, as in PostgreSQL."""
        self.portals.pop("", None)
        self.unnamed_cleared_statement()
