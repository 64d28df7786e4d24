"""Checking RERANK: `SELECT ... SEARCH ... [WITH PRF] RERANK(model => 'folder', candidates => 50,
field => 'text', query => :q, batch => 32) ...`.

A second stage over the search's top `candidates`: a cross-encoder reads each (query, document
text) pair and its scores are the final order. The model is a local folder under the rerankers'
roots (sparsesql/encoders/cross.py says which, and what makes a folder a cross-encoder); the
field is a declared text field (by default the first one analysed for search); the query is the
search's own text (its first text query) unless `query =>` gives one. `candidates` must hold
the page (LIMIT + OFFSET). Kept apart from check.py, which calls `check_rerank` with its `c`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsesql.db.catalog import CollectionInfo
from sparsesql.encoders.cross import locate
from sparsesql.lang import ast

DEFAULT_CANDIDATES = 50
MAX_CANDIDATES = 1000
DEFAULT_BATCH = 32


@dataclass(frozen=True)
class CheckedRerank:
    folder: Path
    candidates: int
    field: str
    query: str
    batch: int


def check_rerank(c: Any, node: ast.Rerank, info: CollectionInfo, texts: list[str], page_end: int) -> CheckedRerank:
    """The RERANK stage; `texts` are the search's text queries, `page_end` its LIMIT + OFFSET."""
    got = c.args(node.args, {"model", "candidates", "field", "query", "batch"}, "RERANK")
    if "model" not in got:
        raise c.error("RERANK needs model => 'folder': a cross-encoder saved by sentence-transformers", node.pos)
    model = c.value(got["model"].value)
    if not isinstance(model, str) or not model.strip():
        raise c.error(f"model => expects a folder's name, got {model!r}", got["model"].value.pos)
    folder, why = locate(model.strip())
    if folder is None or why:
        raise c.error(why, got["model"].value.pos)
    candidates = int(c.number(got["candidates"], integer=True, low=1, high=MAX_CANDIDATES)) if "candidates" in got else DEFAULT_CANDIDATES
    if candidates < page_end:
        where = got["candidates"].value.pos if "candidates" in got else node.pos
        raise c.error(f"RERANK scores {candidates} candidates, fewer than the page's {page_end} rows (LIMIT + OFFSET); "
                      f"raise candidates => to at least {page_end}", where)
    batch = int(c.number(got["batch"], integer=True, low=1, high=1024)) if "batch" in got else DEFAULT_BATCH
    text_fields = [f.name for f in info.fields if f.type == "text"]
    field = info.settings.text_fields[0] if info.settings.text_fields else (text_fields[0] if text_fields else None)
    if "field" in got:
        field = c.value(got["field"].value)
        if not isinstance(field, str) or field.lower() not in text_fields:
            raise c.error(f"field => names a text field of {info.name!r} ({', '.join(text_fields) or 'it has none'}), got {field!r}",
                          got["field"].value.pos)
        field = field.lower()
    if field is None:
        raise c.error(f"collection {info.name!r} has no text field for RERANK to read", node.pos)
    if "query" in got:
        query = c.value(got["query"].value)
        if not isinstance(query, str) or not query.strip():
            raise c.error(f"query => expects text, got {query!r}", got["query"].value.pos)
    elif texts:
        query = texts[0]
    else:
        raise c.error("RERANK needs the query as text (the search has none: a vector, terms or LIKE); give it with query => :text", node.pos)
    return CheckedRerank(folder, candidates, field, query, batch)
