"""Checking the statements about collections and connections: CREATE / DROP COLLECTION, BUILD /
SHOW GRAPH, SET."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sparsesql.errors import CheckError
from sparsesql.lang import ast
from sparsesql.lang.check_core import Catalog, Checker, valid_name
from sparsesql.sizes import parse_bytes


@dataclass(frozen=True)
class CheckedCreate:
    name: str
    fields: tuple[tuple[str, str], ...]
    options: dict
    if_not_exists: bool


@dataclass(frozen=True)
class CheckedDrop:
    name: str
    if_exists: bool


@dataclass(frozen=True)
class CheckedShow:
    pass


@dataclass(frozen=True)
class CheckedBuildGraph:
    name: str
    k: int


@dataclass(frozen=True)
class CheckedShowGraph:
    name: str


@dataclass(frozen=True)
class CheckedSet:
    """A connection setting: sparse_tier / dense_tier (bool) or sparse_tier_memory /
    dense_tier_memory (bytes, None = no limit)."""

    name: str
    value: bool | int | None


DEFAULT_GRAPH_K = 16  # BUILD GRAPH's neighbours per document


MAX_GRAPH_K = 256


SETTINGS = ("sparse_tier", "sparse_tier_memory", "dense_tier", "dense_tier_memory")


def option_value(c: Checker, arg: ast.Arg) -> object:
    value = c.value(arg.value)
    if isinstance(value, float) and not math.isfinite(value):
        raise c.error(f"{arg.name} => must be finite", arg.value.pos)
    return value


def blame(statement: ast.CreateCollection, message: str) -> ast.Pos:
    """The option or field an error message is about (it names it), else the statement."""
    for arg in statement.options:
        if f"{arg.name.lower()} =>" in message:
            return arg.pos
    for f in reversed(statement.fields):
        if repr(f.name.lower()) in message:
            return f.pos
    return statement.pos


def set_option(c: Checker, statement: ast.SetOption) -> CheckedSet:
    name = statement.name.name.lower()
    if name not in SETTINGS:
        raise c.error(f"unknown setting {statement.name.name!r}; settings: {', '.join(SETTINGS)}", statement.name.pos)
    raw = statement.value.name.lower() if isinstance(statement.value, ast.Name) else statement.value.value
    if name in ("sparse_tier", "dense_tier"):
        value = {True: True, False: False, "on": True, "off": False, "true": True, "false": False}.get(raw)
        if value is None or (isinstance(raw, (int, float)) and not isinstance(raw, bool)):
            raise c.error(f"{name} takes on or off, got {raw!r}", statement.value.pos)
        return CheckedSet(name, value)
    if raw in ("none", "unlimited"):
        return CheckedSet(name, None)

    if raw == "default":
        return CheckedSet(name, parse_bytes("auto"))

    size: float | int | None = None
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        size = raw
    elif isinstance(raw, str):
        try:
            size = parse_bytes(raw)
        except CheckError:
            size = None
    if size is None or size <= 0:
        raise c.error(f"{name} takes a size such as '2GB' or '512MB' (or none, or 'auto'), got {raw!r}", statement.value.pos)
    return CheckedSet(name, int(size))


def graph_statement(c: Checker, statement: ast.BuildGraph | ast.ShowGraph, catalog: Catalog) -> CheckedBuildGraph | CheckedShowGraph:
    name = valid_name(c, statement.name)
    info = catalog(name)
    if info is None:
        raise c.error(f"collection {statement.name.name!r} does not exist", statement.name.pos)
    if isinstance(statement, ast.ShowGraph):
        if "graph" not in info.extra:
            raise c.error(f"collection {name!r} has no graph; build one with BUILD GRAPH ON {name}", statement.name.pos)
        return CheckedShowGraph(name)
    got = c.args(statement.options, {"k"}, "BUILD GRAPH")
    k = int(c.number(got["k"], integer=True, low=1, high=MAX_GRAPH_K)) if "k" in got else DEFAULT_GRAPH_K
    return CheckedBuildGraph(name, k)


def check_create(c: Checker, statement: ast.CreateCollection) -> CheckedCreate:
    from sparsesql.db.schema import make_fields, make_settings, placement

    name = valid_name(c, statement.name)
    for f in statement.fields:
        try:
            make_fields([(f.name, f.type_name)])
        except CheckError as exc:
            raise c.error(exc.message, f.pos) from None
    options = {}
    for arg in statement.options:
        if arg.name.lower() in options:
            raise c.error(f"option {arg.name!r} is given twice", arg.pos)
        options[arg.name.lower()] = option_value(c, arg)
    pairs = tuple((f.name, f.type_name) for f in statement.fields)
    try:
        scoring = dict(options)
        placement(scoring)
        make_settings(make_fields(list(pairs)), scoring)
    except CheckError as exc:
        raise c.error(exc.message, blame(statement, exc.message)) from None
    return CheckedCreate(name, pairs, options, statement.if_not_exists)


def check_drop(c: Checker, statement: ast.DropCollection) -> CheckedDrop:
    name = valid_name(c, statement.name)
    return CheckedDrop(name, statement.if_exists)
