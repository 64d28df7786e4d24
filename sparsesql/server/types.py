"""Values between the wire and Python, for the dialect's statements only.

Pass-through statements never come here: their parameters and rows travel as PostgreSQL's own
bytes. A dialect statement's parameters arrive as text or binary in the types the client chose
(or the ones `describe` inferred, when it sent OID 0), and its rows leave in the formats the
client asked for; these are the types clients bind and read for search: text, numbers,
booleans, dates, JSON and numeric arrays (an embedding).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import struct
from decimal import Decimal

import numpy as np

BOOL, BYTEA, NAME, INT8, INT2, INT4, TEXT, OID = 16, 17, 19, 20, 21, 23, 25, 26
JSON, FLOAT4, FLOAT8, UNKNOWN, BPCHAR, VARCHAR = 114, 700, 701, 705, 1042, 1043
DATE, TIMESTAMP, TIMESTAMPTZ, NUMERIC, JSONB = 1082, 1114, 1184, 1700, 3802
INT4_ARRAY, TEXT_ARRAY, FLOAT4_ARRAY, FLOAT8_ARRAY, INT8_ARRAY, NUMERIC_ARRAY = 1007, 1009, 1021, 1022, 1016, 1231

# A collection field's declared type -> the OID its column carries.
FIELD_OIDS = {
    "text": TEXT, "integer": INT4, "bigint": INT8, "real": FLOAT4, "double precision": FLOAT8,
    "numeric": NUMERIC, "boolean": BOOL, "date": DATE, "timestamp": TIMESTAMP, "timestamptz": TIMESTAMPTZ,
    "jsonb": JSONB,
}
TYPE_SIZES = {BOOL: 1, INT2: 2, INT4: 4, INT8: 8, FLOAT4: 4, FLOAT8: 8, DATE: 4, TIMESTAMP: 8, TIMESTAMPTZ: 8, OID: 4}
_TEXTS = {0, TEXT, VARCHAR, BPCHAR, NAME, UNKNOWN}
_ARRAY_ITEMS = {INT4_ARRAY: INT4, INT8_ARRAY: INT8, FLOAT4_ARRAY: FLOAT4, FLOAT8_ARRAY: FLOAT8, TEXT_ARRAY: TEXT, NUMERIC_ARRAY: NUMERIC}
_EPOCH = dt.date(2000, 1, 1)
_EPOCH_TS = dt.datetime(2000, 1, 1)
_EPOCH_TZ = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
_FIXED = {INT2: "!h", INT4: "!i", INT8: "!q", OID: "!I", FLOAT4: "!f", FLOAT8: "!d"}


class BadValue(Exception):
    """A parameter's bytes do not hold a value of its type (SQLSTATE 22P02)."""


# ----------------------------------------------------------------------------- parameters in


def decode(raw: bytes | None, oid: int, binary: bool) -> object:
    """A parameter as the Python value the dialect's checker takes."""
    if raw is None:
        return None
    try:
        return _decode_binary(raw, oid) if binary else _decode_text(raw.decode("utf-8"), oid)
    except (ValueError, struct.error, UnicodeDecodeError, IndexError, json.JSONDecodeError) as exc:
        kind = "binary" if binary else "text"
        raise BadValue(f"invalid {kind} value for type oid {oid}: {exc}") from None


def _number(text: str) -> int | float:
    value = Decimal(text.strip())
    if value.is_finite() and value == value.to_integral_value() and "." not in text and "e" not in text.lower():
        return int(value)
    return float(value)


def _decode_text(text: str, oid: int) -> object:
    if oid in _TEXTS or oid == BYTEA:
        return text
    if oid in (INT2, INT4, INT8, OID):
        return int(text)
    if oid in (FLOAT4, FLOAT8):
        return float(text)
    if oid == NUMERIC:
        return _number(text)
    if oid == BOOL:
        low = text.strip().lower()
        if low in ("t", "true", "1", "on", "yes", "y"):
            return True
        if low in ("f", "false", "0", "off", "no", "n"):
            return False
        raise ValueError(f"{text!r} is not a boolean")
    if oid in (JSON, JSONB):
        return json.loads(text)
    if oid == DATE:
        return dt.date.fromisoformat(text)
    if oid in (TIMESTAMP, TIMESTAMPTZ):
        return dt.datetime.fromisoformat(text)
    if oid in _ARRAY_ITEMS:
        inner = text.strip()
        if len(inner) < 2 or inner[0] not in "{[" or inner[-1] not in "}]":
            raise ValueError(f"{text[:40]!r} is not an array")
        body = inner[1:-1]
        if oid in (FLOAT4_ARRAY, FLOAT8_ARRAY) and body.strip() and not any(c in body for c in '"Nn'):
            return list(map(float, body.split(",")))  # a vector: no per-item dispatch
        items = [i.strip() for i in body.split(",") if i.strip()]
        return [None if i.upper() == "NULL" else _decode_text(i.strip('"'), _ARRAY_ITEMS[oid]) for i in items]
    return text  # any other type (pgvector's vector among them) reaches the checker as its text


def _decode_binary(raw: bytes, oid: int) -> object:
    if oid in _TEXTS:
        return raw.decode("utf-8")
    if oid in _FIXED:
        (value,) = struct.unpack(_FIXED[oid], raw)
        return value
    if oid == BOOL:
        if len(raw) != 1:
            raise ValueError("a boolean is one byte")
        return raw != b"\0"
    if oid == NUMERIC:
        return _numeric_from_binary(raw)
    if oid == JSON:
        return json.loads(raw.decode("utf-8"))
    if oid == JSONB:
        if raw[:1] != b"\x01":
            raise ValueError("jsonb binary version must be 1")
        return json.loads(raw[1:].decode("utf-8"))
    if oid == DATE:
        (days,) = struct.unpack("!i", raw)
        return _EPOCH + dt.timedelta(days=days)
    if oid in (TIMESTAMP, TIMESTAMPTZ):
        (micros,) = struct.unpack("!q", raw)
        return (_EPOCH_TS if oid == TIMESTAMP else _EPOCH_TZ) + dt.timedelta(microseconds=micros)
    if oid in _ARRAY_ITEMS:
        return _array_from_binary(raw)
    raise ValueError(f"binary format of type oid {oid} is not supported for dialect parameters; send it as text")


def _array_from_binary(raw: bytes) -> list:
    ndim, _, item_oid = struct.unpack_from("!iiI", raw, 0)
    if ndim == 0:
        return []
    if ndim != 1:
        raise ValueError("only one-dimensional arrays are accepted")
    size, _ = struct.unpack_from("!ii", raw, 12)
    width = {FLOAT8: 8, FLOAT4: 4, INT4: 4, INT8: 8}.get(item_oid)
    if width and len(raw) == 20 + size * (4 + width):
        # A dense vector's components, each behind its length, read in one numpy pass (a
        # 384-d embedding element by element costs a third of a millisecond).
        code = {FLOAT8: ">f8", FLOAT4: ">f4", INT4: ">i4", INT8: ">i8"}[item_oid]
        items = np.frombuffer(raw, dtype=np.dtype([("n", ">i4"), ("v", code)]), offset=20, count=size)
        if (items["n"] == width).all():
            return items["v"].tolist()
    at, out = 20, []
    for _ in range(size):
        (length,) = struct.unpack_from("!i", raw, at)
        at += 4
        if length < 0:
            out.append(None)
            continue
        out.append(_decode_binary(raw[at:at + length], item_oid))
        at += length
    return out


def _numeric_from_binary(raw: bytes) -> int | float:
    ndigits, weight, sign, dscale = struct.unpack_from("!hhHh", raw, 0)
    if sign == 0xC000:
        return math.nan
    if sign in (0xD000, 0xF000):
        return math.inf if sign == 0xD000 else -math.inf
    digits = struct.unpack_from(f"!{ndigits}h", raw, 8)
    text = "".join(f"{d:04d}" for d in digits) or "0"
    value = Decimal((1 if sign == 0x4000 else 0, tuple(int(c) for c in text), (weight - ndigits + 1) * 4 if digits else 0))
    return int(value) if dscale == 0 else float(value)


# ----------------------------------------------------------------------------- rows out


def encode(value: object, oid: int, binary: bool) -> bytes | None:
    """A result value in its column's type, text or binary."""
    if value is None:
        return None
    return _encode_binary(value, oid) if binary else _encode_text(value, oid).encode("utf-8")


def _float_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(float(value))


def _encode_text(value: object, oid: int) -> str:
    if oid in (JSON, JSONB) or isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return str(value)


def _encode_binary(value: object, oid: int) -> bytes:
    if oid in _TEXTS:
        return _encode_text(value, oid).encode("utf-8")
    if oid in _FIXED:  # an avg of integers is a Decimal in a double precision column
        return struct.pack(_FIXED[oid], float(value) if oid in (FLOAT4, FLOAT8) else value)
    if oid == BOOL:
        return b"\x01" if value else b"\x00"
    if oid == JSONB:
        return b"\x01" + _encode_text(value, oid).encode("utf-8")
    if oid == JSON:
        return _encode_text(value, oid).encode("utf-8")
    if oid == NUMERIC:
        return _numeric_to_binary(Decimal(str(value)))
    if oid == DATE:
        return struct.pack("!i", (value - _EPOCH).days)
    if oid in (TIMESTAMP, TIMESTAMPTZ):
        epoch = _EPOCH_TZ if value.tzinfo is not None else _EPOCH_TS
        delta = value - epoch
        return struct.pack("!q", (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds)
    raise BadValue(f"no binary output for type oid {oid}")


def _numeric_to_binary(value: Decimal) -> bytes:
    if value.is_nan():
        return struct.pack("!hhHh", 0, 0, 0xC000, 0)
    if value.is_infinite():
        return struct.pack("!hhHh", 0, 0, 0xD000 if value > 0 else 0xF000, 0)
    sign = 0x4000 if value < 0 else 0
    value = value.copy_abs()
    dscale = max(-value.as_tuple().exponent, 0)
    whole, _, frac = f"{value:f}".partition(".")
    whole = whole.lstrip("0")
    whole = "0" * (-len(whole) % 4) + whole
    frac = frac + "0" * (-len(frac) % 4)
    groups = [int(whole[i:i + 4]) for i in range(0, len(whole), 4)] + [int(frac[i:i + 4]) for i in range(0, len(frac), 4)]
    weight = len(whole) // 4 - 1
    while groups and groups[0] == 0:
        groups.pop(0)
        weight -= 1
    while groups and groups[-1] == 0:
        groups.pop()
    if not groups:
        weight = 0
    return struct.pack(f"!hhHh{len(groups)}h", len(groups), weight, sign, dscale, *groups)
