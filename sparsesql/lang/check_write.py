"""Checking INSERT and DELETE: every row's values validated as ingest will store them, so that the
write that follows cannot fail on a value."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sparsesql.db import ingest_validate
from sparsesql.db.catalog import CollectionInfo
from sparsesql.errors import IngestError
from sparsesql.lang import ast
from sparsesql.lang.check_core import Catalog, Checker, named_collection
from sparsesql.lang.check_search import vector_text
from sparsesql.lang.check_where import check_predicate


@dataclass(frozen=True)
class CheckedInsert:
    """An INSERT's rows as ingest documents ({"id", fields..., "metadata", "vector", "sparse"}),
    every one already validated, so the write that follows cannot fail on a value."""

    collection: CollectionInfo
    docs: tuple[dict, ...]


@dataclass(frozen=True)
class CheckedDelete:
    """A DELETE: the checked WHERE (None: every document) and the parameters it binds."""

    collection: CollectionInfo
    where: ast.Predicate | None
    params: dict
    where_kinds: dict[ast.Operand, str] = field(default_factory=dict)  # each WHERE operand's kind (check_where.py)


def insert_columns(info: CollectionInfo) -> dict[str, str]:
    """INSERT's columns for a collection -> the keys of an ingest document: `embedding` is the
    dense vector ("vector"), `sparse` exists where a sparse field is learned."""
    columns = {"id": "id", **{f.name: f.name for f in info.fields}, "metadata": "metadata", "embedding": "vector"}
    if any(not f.bm25 for f in info.sparse_fields):
        columns["sparse"] = "sparse"
    return columns


def _insert_value(c: Checker, node: ast.Literal | ast.Param, key: str) -> object:
    """A written value as ingest takes it: text that holds JSON (metadata, sparse) or a vector
    (embedding) is decoded, so a literal and a parameter may carry either form."""
    value = c.param(node) if isinstance(node, ast.Param) else node.value
    if not isinstance(value, str) or key not in ("metadata", "sparse", "vector"):
        return value
    if key == "vector":
        try:
            vector = vector_text(value)
        except ValueError:
            vector = None
        if vector is None:
            raise c.error(f"embedding text must look like '[0.1, 0.2]' or '{{0.1,0.2}}', got {value[:40]!r}", node.pos)
        return vector
    try:
        decoded = json.loads(value)
    except ValueError as exc:
        raise c.error(f"{key} text is not JSON ({exc})", node.pos) from None
    if not isinstance(decoded, dict):
        raise c.error(f"{key} must be a JSON object, got {type(decoded).__name__}", node.pos)
    return decoded


def check_insert(c: Checker, node: ast.Insert, catalog: Catalog) -> CheckedInsert:
    info = named_collection(c, node.collection, catalog)
    known = insert_columns(info)
    keys: list[str] = []
    for column in node.columns:
        key = known.get(column.name.lower())
        if key is None:
            raise c.error(f"unknown column {column.name!r} for collection {info.name!r} (columns: {', '.join(known)})", column.pos)
        if key in keys:
            raise c.error(f"column {column.name!r} is listed twice", column.pos)
        keys.append(key)
    first = node.columns[0].pos
    if "id" not in keys:
        raise c.error("INSERT needs the id column: every document has one", first)
    if "vector" not in keys and info.settings.dense == "none":
        raise c.error(f"collection {info.name!r} has no dense model (dense => 'none'); list an embedding column", first)
    docs = []
    for number, row in enumerate(node.rows, 1):
        if len(row.values) != len(keys):
            raise c.error(f"row {number} has {len(row.values)} values for {len(keys)} columns", row.pos)
        ident = _insert_value(c, row.values[keys.index("id")], "id")
        # named as Collection.add names a document: its position, then its id once it has one
        where = f"row {number}" + (f" (id {ident!r})" if isinstance(ident, (str, int)) and not isinstance(ident, bool) else "")
        doc = {}
        for key, value in zip(keys, row.values):
            doc[key] = _insert_value(c, value, key)
            if key == "vector" and doc[key] is None and info.settings.dense == "none":
                raise c.error(f"collection {info.name!r} has no dense model (dense => 'none'); embedding cannot be NULL", value.pos)
            try:
                ingest_validate.check_value(info, key, doc[key], where, label="embedding")
            except IngestError as exc:
                raise c.error(exc.message, value.pos) from None
        try:  # what a row needs as a whole (a learned field without a model needs its vector)
            ingest_validate.validate(info, doc, number, where=where)
        except IngestError as exc:
            raise c.error(exc.message, row.pos) from None
        docs.append(doc)
    return CheckedInsert(info, tuple(docs))


def check_delete(c: Checker, node: ast.Delete, catalog: Catalog) -> CheckedDelete:
    info = named_collection(c, node.collection, catalog)
    if node.where is not None:
        check_predicate(c, node.where, info)
    return CheckedDelete(info, node.where, c.params, dict(c.kinds))
