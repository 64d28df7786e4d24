"""A document as ingest takes it: every field, vector, sparse vector and metadata value checked
(and converted) before anything is written, with errors naming the document and the value."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from sparsesql.db.catalog import CollectionInfo, NUMERIC_TYPES
from sparsesql.errors import IngestError


INT_RANGE = {"integer": 2**31, "bigint": 2**63}


@dataclass
class Doc:
    id: str
    values: dict
    metadata: dict
    vector: np.ndarray | None
    sparse: dict[str, dict[str, float]]  # learned field -> the vector supplied for it
    hash: str
    where: str  # "document 3 (id 'x')", for errors found after validation (an encoder's vector)


def doc_where(position: int, doc: dict) -> str:
    ident = doc.get("id") if isinstance(doc, dict) else None
    return f"document {position}" + (f" (id {ident!r})" if ident is not None else "")


def _field_value(info: CollectionInfo, name: str, type_name: str, value: object, where: str) -> object:
    if value is None:
        return None
    bad = IngestError(f"{where}: field {name!r} expects {type_name}, got {type(value).__name__} {value!r:.60}")
    if type_name == "text":
        if not isinstance(value, str):
            raise bad
        return _storable(value, f"{where}: field {name!r}")
    if type_name in INT_RANGE:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        if not -INT_RANGE[type_name] <= value < INT_RANGE[type_name]:
            raise IngestError(f"{where}: field {name!r} value {value} is out of range for {type_name}")
        return value
    if type_name in NUMERIC_TYPES:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if not math.isfinite(value):
            raise IngestError(f"{where}: field {name!r} is {value}; only finite numbers are stored")
        return Decimal(str(value)) if type_name == "numeric" else float(value)
    if type_name == "boolean":
        if not isinstance(value, bool):
            raise bad
        return value
    parse = {"date": dt.date.fromisoformat, "timestamp": dt.datetime.fromisoformat, "timestamptz": dt.datetime.fromisoformat}
    if isinstance(value, str):
        try:
            value = parse[type_name](value)
        except ValueError:
            raise bad from None
    if type_name == "date" and isinstance(value, dt.datetime):
        raise bad
    if not isinstance(value, (dt.date, dt.datetime)):
        raise bad
    if type_name == "timestamptz" and isinstance(value, dt.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value


def checked_vector(info: CollectionInfo, value: object, where: str, label: str) -> np.ndarray:
    """A dense vector as pgvector stores it (float32), refused unless cosine ranking can use it:
    an all-zero vector has no direction, so its similarity to any query is NaN, which sorts
    first in DENSE and makes HYBRID's min-max normalisation score every candidate 1.0. A good
    vector is checked as float32 alone; the float64 reading below says what is wrong with a bad one."""
    try:
        with np.errstate(over="ignore"):  # a component beyond float32 becomes inf, refused below
            single = np.asarray(value, dtype=np.float32)
        if single.ndim == 1 and single.shape[0] == info.settings.dim and np.isfinite(single).all() and single.any():
            return single
    except (OverflowError, TypeError, ValueError):
        pass
    try:
        array = np.asarray(value, dtype=np.float64)
    except OverflowError:
        raise IngestError(f"{where}: {label} holds an integer too large for a vector component") from None
    except (TypeError, ValueError):
        raise IngestError(f"{where}: {label} must be a list of numbers") from None
    if array.ndim != 1 or array.shape[0] != info.settings.dim:
        raise IngestError(
            f"{where}: {label} has {array.size} dimensions; collection {info.name!r} stores {info.settings.dim}"
        )
    if not np.isfinite(array).all():
        raise IngestError(f"{where}: {label} holds NaN or infinite components")
    with np.errstate(over="ignore"):
        single = array.astype(np.float32)
    if not np.isfinite(single).all():
        raise IngestError(f"{where}: {label} holds a component beyond single precision (pgvector stores float4, up to 3.4e38)")
    if not single.any():
        raise IngestError(f"{where}: {label} is all zeros, so it has no direction to compare")
    return single


def _sparse(value: object, where: str) -> dict[str, float]:
    if not isinstance(value, dict) or not value:
        raise IngestError(f"{where}: 'sparse' must be a non-empty mapping of token -> weight")
    out: dict[str, float] = {}
    for token, weight in value.items():
        if not isinstance(token, str) or not token or isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise IngestError(f"{where}: 'sparse' entry {token!r}: {weight!r} is not token -> number")
        if not math.isfinite(weight) or weight < 0:
            raise IngestError(f"{where}: 'sparse' weight of {token!r} is {weight}; weights must be finite and >= 0")
        if weight > 0:
            out[token] = float(weight)
    return out


def _supplied(info: CollectionInfo, value: object, where: str) -> dict[str, dict[str, float]]:
    """The learned vectors a document brings: `sparse` is {token: weight} for a collection's only
    learned field, or {field: {token: weight}}; a field without a model must get one."""
    learned = [f for f in info.sparse_fields if not f.bm25]
    if value is not None and not learned:
        raise IngestError(f"{where}: collection {info.name!r} computes BM25 from text; 'sparse' is not accepted")
    if value is None:
        given = {}
    elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        names = {f.name for f in learned}
        for name in value:
            if name not in names:
                raise IngestError(
                    f"{where}: 'sparse' names field {name!r}; collection {info.name!r} has learned sparse fields "
                    f"{', '.join(sorted(names))}"
                )
        given = {name: _sparse(v, f"{where}, field {name!r}") for name, v in value.items()}
    elif len(learned) == 1:
        given = {learned[0].name: _sparse(value, where)}
    else:
        raise IngestError(
            f"{where}: collection {info.name!r} has learned sparse fields {', '.join(f.name for f in learned)}; "
            "give 'sparse' as {field: {token: weight}}"
        )
    for f in learned:
        if f.model == "none" and f.name not in given:
            what = "stores precomputed sparse vectors" if len(learned) == 1 else f"has no model for sparse field {f.name!r}"
            raise IngestError(f"{where}: collection {info.name!r} {what}; supply 'sparse'")
    return given


def _storable(text: str, what: str) -> str:
    """Text PostgreSQL can store: no NUL character, valid Unicode."""
    if "\x00" in text:
        raise IngestError(f"{what} contains a NUL character, which PostgreSQL text cannot hold")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise IngestError(f"{what} is not valid Unicode (it holds a lone surrogate)") from None
    return text


def _ident(value: object, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) == "":
        raise IngestError(f"{where}: every document needs an 'id' (a non-empty string or an integer)")
    return _storable(str(value), f"{where}: 'id'")


# JSON's escape of NUL (jsonb refuses it), not preceded by an escaped backslash.
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _metadata(value: object, where: str) -> tuple[dict, str]:
    """The metadata mapping ({} for none) and its canonical JSON, which the content hash takes."""
    metadata = value or {}
    if not isinstance(metadata, dict):
        raise IngestError(f"{where}: 'metadata' must be a mapping")
    try:
        text = json.dumps(metadata, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise IngestError(f"{where}: 'metadata' is not JSON ({exc})") from None
    if _JSON_NUL.search(text):
        raise IngestError(f"{where}: 'metadata' contains a NUL character, which PostgreSQL jsonb cannot hold")
    return metadata, text


def check_value(info: CollectionInfo, key: str, value: object, where: str, *, label: str | None = None) -> object:
    """One key of an input document ("id", a declared field, "metadata", "vector", "sparse"),
    checked and converted exactly as `validate` does, so a caller that knows where each value
    was written (the dialect's INSERT) can blame that value; `label` names the key in messages."""
    if key == "id":
        return _ident(value, where)
    if key == "metadata":
        return _metadata(value, where)[0]
    if key == "vector":
        return None if value is None else checked_vector(info, value, where, label or "'vector'")
    if key == "sparse":
        return _supplied(info, value, where)
    (field,) = [f for f in info.fields if f.name == key]
    return _field_value(info, field.name, field.type, value, where)


def validate(info: CollectionInfo, doc: object, position: int, *, where: str | None = None) -> Doc:
    """Check one input document against the collection and compute its content hash; `where`
    names it in messages (default: its position and id)."""
    where = where or doc_where(position, doc if isinstance(doc, dict) else {})
    if not isinstance(doc, dict):
        raise IngestError(f"{where}: expected a mapping with an 'id', got {type(doc).__name__}")
    allowed = {"id", "metadata", "vector", "sparse"} | {f.name for f in info.fields}
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise IngestError(
            f"{where}: unknown field {unknown[0]!r}; collection {info.name!r} has fields "
            f"{', '.join(f.name for f in info.fields) or '(none)'} plus id, metadata, vector, sparse"
        )
    ident = _ident(doc.get("id"), where)
    values = {f.name: _field_value(info, f.name, f.type, doc.get(f.name), where) for f in info.fields}
    metadata, meta_json = _metadata(doc.get("metadata"), where)
    vector = check_value(info, "vector", doc.get("vector"), where)
    if vector is None and info.settings.dense == "none":
        raise IngestError(f"{where}: collection {info.name!r} has no dense model (dense => 'none'); supply 'vector'")
    sparse = _supplied(info, doc.get("sparse"), where)
    # One learned field hashes its bare vector, as before there could be several: unchanged
    # documents of older collections stay unchanged.
    hashed = (next(iter(sparse.values())) if len(info.sparse_fields) == 1 else sparse) if sparse else None
    digest = hashlib.sha256(json.dumps([values, meta_json, hashed], sort_keys=True, default=str).encode())
    if vector is not None:  # its float32 bytes: exact, and far cheaper than 384 floats as JSON
        digest.update(vector.astype("<f4").tobytes())
    return Doc(ident, values, metadata, vector, sparse, digest.hexdigest(), where)


def analysed_text(info: CollectionInfo, values: dict) -> str:
    """The text BM25 analyses: the text fields parted by NUL (no word character, so the terms
    are document_text's, and no text PostgreSQL stores holds one): where one field ends, the
    document's positions mark a break that no phrase spans, and the i-th part is the i-th text
    field (empty ones too), whose own counts BM25F weighs."""
    return "\x00".join(values.get(name) or "" for name in info.settings.text_fields)


def document_text(info: CollectionInfo, values: dict) -> str:
    """The text that BM25 analyses and the dense model embeds: the text fields, space-joined."""
    return " ".join(values[name] for name in info.settings.text_fields if values.get(name))
