"""The dialect's front end: text -> `ast` statements."""

from sparsesql.lang.parse import parse_statement

__all__ = ["parse_statement"]
