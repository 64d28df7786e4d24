"""sparsesql: hybrid sparse + dense retrieval in PostgreSQL, with a query language of its own."""

from sparsesql.database import Collection, Database, connect
from sparsesql.errors import (
    CheckError,
    ConfigError,
    DatabaseError,
    Error,
    EvalError,
    IngestError,
    ParameterError,
    QuerySyntaxError,
)
from sparsesql.exec.row import Row

__version__ = "0.1.0"


def parse(text: str, db: Database | None = None, **params: object):
    """Parse a statement; with `db`, also check it against that database's catalog."""
    from sparsesql.lang.parse import parse_statement

    return db.check(text, **params) if db is not None else parse_statement(text)


__all__ = [
    "connect", "parse", "Database", "Collection", "Row", "Error", "QuerySyntaxError", "CheckError",
    "ParameterError", "ConfigError", "IngestError", "DatabaseError", "EvalError",
]
