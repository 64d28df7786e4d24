"""The checker's core, which every statement kind's checking uses: the `Checker` (errors with the
position, parameters, argument values and numbers, a collection's stored defaults), and the
collection a statement names."""

from __future__ import annotations

import functools
import math
from typing import Callable, Union

from sparsesql.db.catalog import CollectionInfo, check_name
from sparsesql.errors import CheckError, Error, ParameterError
from sparsesql.lang import ast


MAX_QUERY_TEXT = 100_000


# A collection's own defaults (sparsesql tune --apply) live in its catalog row's extra, as
# {"HYBRID" | "PRF": {"args": {argument: dialect text}, "source": why, "inputs": kinds}}: text, so that they are
# checked by the same code as the arguments a query writes.
DEFAULTS_KEY = "defaults"


@functools.lru_cache(maxsize=256)
def stored_arg(clause: str, name: str, text: str) -> ast.Arg:
    """A stored default read as the argument the parser makes of `name => text`."""
    from sparsesql.lang.parse import parse_statement

    if clause == "HYBRID":
        statement = parse_statement(f"SELECT id FROM c SEARCH HYBRID(SPARSE('x'), DENSE('x'), {name} => {text})")
        return statement.search.args[0]
    return parse_statement(f"SELECT id FROM c SEARCH SPARSE('x') WITH PRF({name} => {text})").prf.args[0]


Catalog = Callable[[str], Union[CollectionInfo, None]]


class Checker:
    def __init__(self, text: str, params: dict) -> None:
        self.text = text
        self.params = params
        self.defaults: list[tuple[str, str, str]] = []  # (argument, value, where it came from)
        self.kinds: dict[ast.Operand, str] = {}  # each WHERE operand's kind, for the SQL compiler

    def with_defaults(self, got: dict[str, ast.Arg], info: CollectionInfo, clause: str, built_in: dict[str, str], applies: set[str]) -> dict[str, ast.Arg]:
        """The arguments given, completed by the collection's stored defaults for `clause` (those
        in `applies`); records where every argument left out took its value from."""
        stored = info.extra.get(DEFAULTS_KEY, {}).get(clause, {})
        merged = dict(got)
        for name, value in built_in.items():
            if name in got:
                continue
            text = stored.get("args", {}).get(name)
            if text is not None and name in applies:
                merged[name] = stored_arg(clause, name, text)
                self.defaults.append((f"{clause} {name}", text, f"collection default ({stored.get('source', 'stored')})"))
            else:
                self.defaults.append((f"{clause} {name}", value, "built-in default"))
        return merged

    def error(self, message: str, pos: ast.Pos, kind: type[Error] = CheckError) -> Error:
        return kind(message, line=pos.line, column=pos.column, query=self.text)

    def param(self, p: ast.Param) -> object:
        if p.name not in self.params:
            names = sorted(self.params, key=lambda k: (k.isascii() and k.isdigit(), k.zfill(20)))
            given = ", ".join(map(ast.param_text, names)) or "none"
            raise self.error(f"parameter {p.written} is not bound (bound: {given})", p.pos, ParameterError)
        return self.params[p.name]

    def value(self, v: ast.ArgValue) -> object:
        """A named argument's value as plain Python: Name -> str, ListValue -> list."""
        if isinstance(v, ast.Literal):
            return v.value
        if isinstance(v, ast.Param):
            return self.param(v)
        if isinstance(v, ast.Name):
            return v.name.lower()
        if isinstance(v, ast.ListValue):
            return [self.value(i) for i in v.items]
        if isinstance(v, ast.Pairs):
            raise self.error("(name => value, ...) is not allowed here", v.pos)
        raise self.error(f"{v.name}(...) is not allowed here", v.pos)

    def valid_text(self, value: str, pos: ast.Pos, what: str) -> str:
        """Text PostgreSQL can store: no NUL character, valid Unicode, within the size limit."""
        if len(value) > MAX_QUERY_TEXT:
            raise self.error(f"{what} is too long ({len(value)} characters, limit {MAX_QUERY_TEXT})", pos)
        if "\x00" in value:
            raise self.error(f"{what} contains a NUL character, which PostgreSQL text cannot hold", pos)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise self.error(f"{what} is not valid Unicode (it holds a lone surrogate)", pos) from None
        return value

    def number(self, arg: ast.Arg, *, integer: bool, low: float, high: float) -> float | int:
        """An argument's number within [low, high]. A bound int is compared as it is, never
        through float(), which overflows past 1e308 (parameters, unlike literals, have no size)."""
        value = self.value(arg.value)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and isinstance(value, float) and (not math.isfinite(value) or (integer and not value.is_integer())):
            ok = False
        if not ok:
            kind = "an integer" if integer else "a number"
            raise self.error(f"{arg.name} => expects {kind}, got {value!r:.40}", arg.value.pos)
        if not low <= value <= high:
            shown = value if isinstance(value, float) or abs(value) < 2**63 else "an integer beyond 64 bits"
            raise self.error(f"{arg.name} => {shown} is out of range [{low}, {high}]", arg.value.pos)
        return int(value) if integer else float(value)

    def args(self, args: tuple[ast.Arg, ...], allowed: set[str], where: str) -> dict[str, ast.Arg]:
        seen: dict[str, ast.Arg] = {}
        for arg in args:
            name = arg.name.lower()
            if name not in allowed:
                known = ", ".join(sorted(allowed)) or "none"
                raise self.error(f"unknown argument {arg.name!r} for {where} (known: {known})", arg.pos)
            if name in seen:
                raise self.error(f"argument {arg.name!r} is given twice", arg.pos)
            seen[name] = arg
        return seen


def finite(number: float) -> bool:
    """math.isfinite, False (not OverflowError) for a bound int too large for a float."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def unknown_field(name: str, info: CollectionInfo) -> str:
    known = ", ".join(["id", *(f.name for f in info.fields), "metadata"])
    return f"unknown field {name!r} in collection {info.name!r} (fields: {known})"


def valid_name(c: Checker, node: ast.Name) -> str:
    """A collection's name as written, checked (refused at its position)."""
    try:
        return check_name(node.name)
    except CheckError as exc:
        raise c.error(exc.message, node.pos) from None


def named_collection(c: Checker, node: ast.Name, catalog: Catalog) -> CollectionInfo:
    name = valid_name(c, node)
    info = catalog(name)
    if info is None:
        raise c.error(f"collection {node.name!r} does not exist", node.pos)
    return info
