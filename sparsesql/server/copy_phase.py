"""COPY through the relay: TO STDOUT streams PostgreSQL's CopyData to the client as it comes,
FROM STDIN passes the client's CopyData, CopyDone and CopyFail on.

While a COPY FROM STDIN runs, the statement that started it (a simple query's remaining steps,
or an Execute's completion) waits as a generator; the client's CopyDone or CopyFail resumes it.
As in PostgreSQL, Flush and Sync are ignored during the copy, and any other message fails it.
"""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import pq

from sparsesql.server import wire
from sparsesql.server.wire import Fields

FLUSH_BYTES = 256 * 1024  # COPY TO output is sent on once this much is waiting


class CopyPhase:
    """Session methods for COPY (mixed into `Session`)."""

    def copy_out(self, result: pq.PGresult) -> None:
        self.out.append(wire.copy_response(b"H", bool(result.binary_tuples), _formats(result)))
        waiting = 0
        for chunk in self.relay.copy_chunks():
            self.out.append(wire.message(b"d", chunk))
            waiting += len(chunk)
            if waiting >= FLUSH_BYTES:
                self.flush_now()  # waits for the client to take it: a slow reader slows the COPY
                waiting = 0
        self.out.append(wire.COPY_DONE)

    def copy_in_response(self, result: pq.PGresult) -> bytes:
        return wire.copy_response(b"G", bool(result.binary_tuples), _formats(result))

    def copy_in(self, result: pq.PGresult, then: Iterator[None]) -> None:
        """Tell the client to send its data; `then` (primed here) finishes once it is in."""
        self.out.append(self.copy_in_response(result))
        next(then)
        self.copying = then

    def drive(self, steps: Iterator[None]) -> None:
        """Run a statement's steps until they end or wait for COPY data."""
        try:
            next(steps)
        except StopIteration:
            return
        self.copying = steps

    def copy_message(self, kind: bytes, body: bytes) -> None:
        """A message while COPY FROM STDIN waits for the client's data."""
        if kind == b"d":
            if not self.relay.copy_data(body):
                self._resume(None)  # PostgreSQL ended the COPY (bad data): its error goes out now
            return
        if kind in (b"H", b"S"):
            return
        if kind == b"c":
            Fields(body, kind).end()
            error = None
        elif kind == b"f":
            error = Fields(body, kind, self.encoding).cstring()
        else:
            error = f"unexpected message type 0x{kind[0]:02X} during COPY from stdin"
        self._resume(error, end=True)

    def _resume(self, error: str | None, *, end: bool = False) -> None:
        steps, self.copying = self.copying, None
        if end:
            self.relay.copy_end(error)
        self.drive(steps)


def _formats(result: pq.PGresult) -> list[int]:
    return [result.fformat(i) for i in range(result.nfields)]
