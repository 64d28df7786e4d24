"""Read a test set in the BEIR folder layout.

A BEIR folder holds ``corpus.jsonl`` (one ``{"_id", "title", "text"}`` object a line, optionally
``"metadata"``), ``queries.jsonl`` (``{"_id", "text"}``) and ``qrels/<split>.tsv`` (a header, then
``query-id<TAB>corpus-id<TAB>score``). Everything here streams or reads line by line so that a bad
line is reported with its file and line number instead of a bare JSON traceback.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sparsesql.errors import EvalError

LAYOUT = (
    "a BEIR folder must contain corpus.jsonl (_id, title, text), queries.jsonl (_id, text) "
    "and qrels/<split>.tsv (header, then query-id, corpus-id, score)"
)


def _require(folder: str | Path, relative: str) -> Path:
    """Return folder/relative, or raise EvalError naming the missing path and the layout."""
    root = Path(folder)
    if not root.is_dir():
        raise EvalError(f"evaluation folder {root} does not exist or is not a directory; {LAYOUT}")
    path = root / relative
    if not path.is_file():
        raise EvalError(f"{path} is missing; {LAYOUT}")
    return path


def read_jsonl(path: Path, required: str | None = "_id", *, rejected: list[tuple[int, str]] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, object) for each non-blank line of a JSON-lines file. A line
    that is not such an object raises EvalError, or, given a `rejected` list, is recorded there
    as (line number, why) and passed over."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                why = f"line {number}: malformed JSON ({exc.msg})"
            else:
                if isinstance(record, dict) and (required is None or required in record):
                    yield number, record
                    continue
                why = f"line {number}: expected a JSON object" + (f" with an {required}" if required else "")
            if rejected is None:
                raise EvalError(f"{path} {why}")
            rejected.append((number, why))


def load_corpus(folder: str | Path) -> Iterator[dict[str, Any]]:
    """Stream the corpus as ``{"id", "title", "text", "metadata"}`` dicts in file order."""
    path = _require(folder, "corpus.jsonl")
    for number, record in read_jsonl(path):
        metadata = record.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise EvalError(f"{path} line {number}: metadata must be a JSON object")
        yield {
            "id": str(record["_id"]),
            "title": record.get("title") or "",
            "text": record.get("text") or "",
            "metadata": metadata,
        }


def load_queries(folder: str | Path) -> dict[str, str]:
    """Return every query as id -> text, in file order."""
    path = _require(folder, "queries.jsonl")
    return {str(record["_id"]): record.get("text") or "" for _, record in read_jsonl(path)}


def load_qrels(folder: str | Path, split: str = "test") -> dict[str, dict[str, int]]:
    """Return the judgements as query id -> {doc id -> graded relevance}."""
    path = _require(folder, f"qrels/{split}.tsv")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if number == 1 or not line.strip():
                continue
            columns = line.rstrip("\r\n").split("\t")
            if len(columns) != 3:
                raise EvalError(
                    f"{path} line {number}: expected 3 tab-separated columns "
                    f"(query-id, corpus-id, score), found {len(columns)}"
                )
            query_id, doc_id, score = columns
            try:
                relevance = int(score)
            except ValueError:
                message = f"{path} line {number}: score {score!r} is not an integer"
                raise EvalError(message) from None
            qrels.setdefault(query_id, {})[doc_id] = relevance
    return qrels


def test_queries(folder: str | Path, split: str = "test") -> dict[str, str]:
    """Return only the queries that have judgements, in queries.jsonl order.

    Evaluation means are taken over judged queries, so running unjudged ones is wasted work.
    """
    judged = load_qrels(folder, split)
    return {qid: text for qid, text in load_queries(folder).items() if qid in judged}


# pytest would collect a module-level function named test_* when imported into a test module.
test_queries.__test__ = False  # type: ignore[attr-defined]


def corpus_fingerprint(folder: str | Path) -> str:
    """Return the sha256 hex digest of corpus.jsonl, read in chunks.

    Used as a cache key for anything derived from the corpus (e.g. encoded vectors).
    """
    path = _require(folder, "corpus.jsonl")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
