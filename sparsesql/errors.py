"""One error family for everything a user can get wrong or a server can refuse.

Every error a user sees is a ``sparsesql.Error``. Errors about a query carry the query text and
the 1-based line and column of the offending token, and render the line with a caret under it,
so a message can be read without the source open beside it.
"""

from __future__ import annotations


class Error(Exception):
    """Base of every sparsesql error."""

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        query: str | None = None,
    ) -> None:
        self.message = message
        self.line = line
        self.column = column
        self.query = query
        super().__init__(self._render())

    def _render(self) -> str:
        if self.line is None or self.query is None:
            if self.line is not None:
                return f"{self.message} (line {self.line}, column {self.column})"
            return self.message
        return f"{self.message} at line {self.line}, column {self.column}\n{highlight(self.query, self.line, self.column or 1)}"

    @property
    def highlight(self) -> str:
        """The offending query line with a caret under the column ('' when unknown)."""
        if self.line is None or self.query is None:
            return ""
        return highlight(self.query, self.line, self.column or 1)


def located(exc: Error, query: str) -> Error:
    """`exc` again with the query's text, so that its position shows with a caret (for an error
    raised where the text is not at hand, such as a boost's value for one document)."""
    return type(exc)(exc.message, line=exc.line, column=exc.column, query=query)


class QuerySyntaxError(Error):
    """The text is not a sentence of the dialect."""


class CheckError(Error):
    """The query parses but names something that does not exist or mixes types."""


class ParameterError(Error):
    """A bound parameter is missing or of the wrong kind (unused parameters are ignored)."""


class ConfigError(Error):
    """The server or the environment lacks something sparsesql needs."""


class IngestError(Error):
    """A document was rejected; nothing of its batch was written (earlier batches stay committed)."""


class DatabaseError(Error):
    """The server refused or lost a statement; the transaction was rolled back."""


class EvalError(Error):
    """An evaluation folder is missing files or holds malformed lines."""


def highlight(query: str, line: int, column: int) -> str:
    """Return the query line `line` with a caret under `column` (both 1-based)."""
    lines = query.splitlines() or [""]
    index = min(max(line, 1), len(lines)) - 1
    text = lines[index]
    prefix = f"  {index + 1} | "
    caret = " " * (len(prefix) + max(column - 1, 0)) + "^"
    return f"{prefix}{text}\n{caret}"


def position(query: str, offset: int) -> tuple[int, int]:
    """Turn a 0-based character offset into a 1-based (line, column)."""
    before = query[:offset]
    line = before.count("\n") + 1
    column = offset - (before.rfind("\n") + 1) + 1
    return line, column
