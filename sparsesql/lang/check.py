"""AST -> checked query: names resolved against the catalog, arguments and parameters validated.

Everything a user can get wrong is caught here, with the line and column of the offending token,
before a single statement of the query reaches the database. The checked query carries plain
Python values (bound parameters already looked up), so planning needs no further validation.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Union

from sparsesql.lang import ast
from sparsesql.lang.check_core import Catalog, Checker
from sparsesql.lang.check_ddl import CheckedBuildGraph, CheckedCreate, CheckedDrop, CheckedSet, CheckedShow, CheckedShowGraph, check_create, check_drop, graph_statement, set_option
from sparsesql.lang.check_select import CheckedSelect, check_select
from sparsesql.lang.check_write import CheckedDelete, CheckedInsert, check_delete, check_insert


Checked = Union[
    CheckedSelect, CheckedCreate, CheckedDrop, CheckedShow, CheckedBuildGraph, CheckedShowGraph, CheckedSet,
    CheckedInsert, CheckedDelete,
]


def check(statement: ast.Statement, catalog: Catalog, params: dict | None = None, text: str = "") -> Checked:
    """Validate a parsed statement; `catalog(name)` returns a collection's info or None."""
    c = Checker(text, dict(params or {}))
    if isinstance(statement, ast.Explain):
        checked = check_select(c, statement.select, catalog)
        return replace(checked, explain=True, analyze=statement.analyze)
    if isinstance(statement, ast.Select):
        return check_select(c, statement, catalog)
    if isinstance(statement, ast.CreateCollection):
        return check_create(c, statement)
    if isinstance(statement, ast.DropCollection):
        return check_drop(c, statement)
    if isinstance(statement, (ast.BuildGraph, ast.ShowGraph)):
        return graph_statement(c, statement, catalog)
    if isinstance(statement, ast.SetOption):
        return set_option(c, statement)
    if isinstance(statement, ast.Insert):
        return check_insert(c, statement, catalog)
    if isinstance(statement, ast.Delete):
        return check_delete(c, statement, catalog)
    return CheckedShow()
