"""Cursors over dialect searches: `DECLARE c CURSOR FOR SELECT ... SEARCH ...`, then FETCH, MOVE
and CLOSE, and the portal named `c` in the extended protocol (psycopg's server-side cursors,
SQLAlchemy's `stream_results` / `yield_per`).

PostgreSQL cannot hold such a cursor (it does not know SEARCH), so the session does: the search
runs once at DECLARE, as PostgreSQL materialises a WITH HOLD cursor, and FETCH pages through its
rows. As in PostgreSQL, a cursor needs a transaction block unless declared WITH HOLD and ends
with its transaction; it reads forward (NEXT, FORWARD n, FORWARD ALL, n, ALL). A cursor over a
statement PostgreSQL runs is PostgreSQL's own and never comes here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from psycopg import pq

from sparsesql.server import dialect, route
from sparsesql.server.sqlstates import SessionError

_NAME = r'"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*'
_DECLARE = re.compile(
    rf"\s*DECLARE\s+(?P<name>{_NAME})\s+(?P<options>(?:(?:BINARY|ASENSITIVE|INSENSITIVE|NO\s+SCROLL|SCROLL)\s+)*)"
    r"CURSOR\s+(?:(?P<hold>WITH|WITHOUT)\s+HOLD\s+)?FOR\s", re.IGNORECASE)
_MOVE = re.compile(
    rf"\s*(?P<verb>FETCH|MOVE)\s+(?:(?P<direction>NEXT|ALL|FORWARD(?:\s+(?:ALL|\d+))?|\d+)\s+)?(?:(?:FROM|IN)\s+)?(?P<name>{_NAME})\s*",
    re.IGNORECASE)
_CLOSE = re.compile(rf"\s*CLOSE\s+(?P<name>{_NAME})\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Declare:
    """DECLARE name ... FOR <query>: the query starts at `offset` of the statement."""

    name: str
    binary: bool
    hold: bool
    offset: int


@dataclass(frozen=True)
class Move:
    """FETCH / MOVE (count None: ALL) or CLOSE (name None: CLOSE ALL)."""

    verb: str
    count: int | None
    name: str | None


def _name(raw: str) -> str:
    return raw[1:-1].replace('""', '"') if raw.startswith('"') else raw.lower()


def parse_declare(statement: str, is_collection) -> Declare | None:
    """The DECLARE, when its query is a dialect statement (else PostgreSQL declares it)."""
    match = _DECLARE.match(statement)
    if match is None or not route.is_dialect(statement[match.end():], is_collection):
        return None
    options = match.group("options").upper().split()
    return Declare(_name(match.group("name")), "BINARY" in options, (match.group("hold") or "").upper() == "WITH", match.end())


def parse_move(statement: str) -> Move | None:
    if match := _MOVE.fullmatch(statement):
        direction = " ".join((match.group("direction") or "NEXT").upper().split())
        if direction in ("NEXT", "FORWARD"):
            count = 1
        elif direction in ("ALL", "FORWARD ALL"):
            count = None
        else:
            count = int(direction.split()[-1])
        return Move(match.group("verb").upper(), count, _name(match.group("name")))
    if match := _CLOSE.fullmatch(statement):
        raw = match.group("name")
        return Move("CLOSE", None, None if raw.upper() == "ALL" else _name(raw))
    return None


@dataclass
class Cursor:
    outcome: dialect.Outcome
    binary: bool
    hold: bool
    position: int = 0


class DialectCursors:
    """Session methods for cursors over dialect statements (mixed into `Session`)."""

    def cursor_statement(self, statement: str) -> Declare | Move | None:
        """A DECLARE over a dialect statement, or a FETCH / MOVE / CLOSE of a cursor held here."""
        if spec := parse_declare(statement, self.relay.is_collection):
            return spec
        move = parse_move(statement)
        return move if self.owns(move) else None

    def owns(self, move: Move | None) -> bool:
        """Whether a FETCH / MOVE / CLOSE is for a cursor this session holds (CLOSE ALL: if any)."""
        if move is None:
            return False
        return move.name in self.cursors if move.name is not None else bool(self.cursors)

    def declare(self, spec: Declare, text: str, params: dict[str, object], described: dialect.Described) -> dialect.Outcome:
        if spec.name in self.cursors:
            raise SessionError("42P03", f'cursor "{spec.name}" already exists')
        if not spec.hold and self.relay.pgconn.transaction_status == pq.TransactionStatus.IDLE and not self.implicit:
            raise SessionError("25P01", "DECLARE CURSOR can only be used in transaction blocks")
        outcome = dialect.run(self.db, text, params, described, self.server.metrics)
        if outcome.columns is None:
            raise SessionError("42P11", "cursor can only scan a query that returns rows: DECLARE a SELECT ... SEARCH")
        self.cursors[spec.name] = Cursor(outcome, spec.binary, spec.hold)
        return dialect.Outcome(None, [], "DECLARE CURSOR")

    def move(self, move: Move) -> dialect.Outcome:
        """FETCH's rows (MOVE's count) from the cursor's position on, or CLOSE."""
        if move.verb == "CLOSE":
            if move.name is None:
                self.cursors.clear()
                self.relay.ok(self.relay.pgconn.exec_(b"CLOSE ALL"))  # and PostgreSQL's own
            elif self.cursors.pop(move.name, None) is None:
                raise SessionError("34000", f'cursor "{move.name}" does not exist')
            return dialect.Outcome(None, [], "CLOSE CURSOR")
        cursor = self.cursors.get(move.name)
        if cursor is None:
            raise SessionError("34000", f'cursor "{move.name}" does not exist')
        rows = cursor.outcome.rows
        end = len(rows) if move.count is None else min(len(rows), cursor.position + move.count)
        taken = rows[cursor.position:end]
        cursor.position = end
        if move.verb == "MOVE":
            return dialect.Outcome(None, [], f"MOVE {len(taken)}")
        return dialect.Outcome(cursor.outcome.columns, taken, f"FETCH {len(taken)}")

    def cursor_formats(self, name: str) -> list[int]:
        """The result formats a cursor's rows go out in when the client's Bind did not say."""
        return [1] if self.cursors[name].binary else []

    def transaction_ended(self) -> None:
        """Cursors not declared WITH HOLD end with the transaction they were declared in."""
        if self.cursors and self.relay.pgconn.transaction_status == pq.TransactionStatus.IDLE and not self.implicit:
            for name in [n for n, c in self.cursors.items() if not c.hold]:
                del self.cursors[name]
