"""The PostgreSQL v3 protocol's bytes: reading frontend messages and building backend ones.

Nothing here knows what a message means to a session; the session state machine
(`session.py`) decides that. Every read is bounded: a length field that is negative, smaller
than its own four bytes, or larger than `MAX_MESSAGE` is a `ProtocolViolation`, so a client
claiming a 1 GB message costs the server nothing but closing that one connection.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

import psycopg
from psycopg._encodings import pg2pyenc

PROTOCOL_3_0 = 196608
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
MAX_STARTUP = 10_000  # PostgreSQL's own limit on a startup packet
MAX_MESSAGE = 64 * 2**20  # a Bind of many documents fits; anything larger is refused


class ProtocolViolation(Exception):
    """The client broke the framing or a message's layout (SQLSTATE 08P01)."""


@dataclass
class Startup:
    """The first packet: a startup message, or one of the requests that precede or replace it."""

    code: int
    params: dict[str, str]
    payload: bytes = b""


async def read_startup(reader: asyncio.StreamReader) -> Startup:
    """Read an untyped startup-phase packet (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest)."""
    head = await reader.readexactly(8)
    length, code = struct.unpack("!iI", head)
    if length < 8 or length > MAX_STARTUP:
        raise ProtocolViolation(f"invalid startup packet length {length}")
    payload = await reader.readexactly(length - 8)
    params: dict[str, str] = {}
    if code == PROTOCOL_3_0 or code >> 16 == 3:
        parts = payload.split(b"\0")
        if len(parts) < 2 or parts[-1] != b"" or len(parts) % 2 != 0:
            raise ProtocolViolation("startup packet's parameters are not name/value pairs ending in a zero byte")
        pairs = parts[:-2] if parts[-2] == b"" else parts[:-1]
        if len(pairs) % 2:
            raise ProtocolViolation("startup packet has a parameter name without a value")
        for name, value in zip(pairs[::2], pairs[1::2]):
            params[_text(name)] = _text(value)
    return Startup(code, params, payload)


async def read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One typed message: (type byte, body)."""
    head = await reader.readexactly(5)
    kind, length = head[:1], struct.unpack("!i", head[1:])[0]
    if length < 4:
        raise ProtocolViolation(f"message {kind!r} has invalid length {length}")
    if length - 4 > MAX_MESSAGE:
        raise ProtocolViolation(f"message {kind!r} claims {length} bytes; the limit is {MAX_MESSAGE + 4}")
    return kind, await reader.readexactly(length - 4)


class Frames:
    """Typed messages cut from the bytes a client sends, as they arrive: one read can carry a
    whole pipeline (Parse, Bind, Describe, Execute, Sync), and a message can span reads. A bad
    length fails as soon as its five header bytes are in, before any body is waited for."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self.buffer += data
        out, at, buf = [], 0, self.buffer
        while len(buf) - at >= 5:
            kind = bytes(buf[at:at + 1])
            (length,) = struct.unpack_from("!i", buf, at + 1)
            if length < 4:
                raise ProtocolViolation(f"message {kind!r} has invalid length {length}")
            if length - 4 > MAX_MESSAGE:
                raise ProtocolViolation(f"message {kind!r} claims {length} bytes; the limit is {MAX_MESSAGE + 4}")
            if len(buf) - at < 1 + length:
                break
            out.append((kind, bytes(buf[at + 5:at + 1 + length])))
            at += 1 + length
        del buf[:at]
        return out


def _text(raw: bytes, encoding: str = "utf-8") -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ProtocolViolation(f"invalid {encoding} in a protocol string at byte {exc.start}") from None


def python_codec(pg_encoding: str) -> str:
    """The Python codec for a client_encoding PostgreSQL reported. One Python lacks (EUC_TW,
    MULE_INTERNAL) is carried as latin-1, which keeps every byte as it came: such a session's
    statements still reach PostgreSQL intact, only dialect text in it reads as latin-1."""
    try:
        return pg2pyenc(pg_encoding.encode())
    except psycopg.NotSupportedError:
        return "latin-1"


class Fields:
    """A cursor over a message body, raising ProtocolViolation instead of reading past its end.
    Strings are read in the session's client_encoding, as PostgreSQL reads them."""

    def __init__(self, body: bytes, kind: bytes, encoding: str = "utf-8") -> None:
        self.body = body
        self.at = 0
        self.kind = kind
        self.encoding = encoding

    def _need(self, n: int) -> None:
        if n < 0 or self.at + n > len(self.body):
            raise ProtocolViolation(f"message {self.kind.decode(errors='replace')!r} is truncated")

    def cstring(self) -> str:
        end = self.body.find(b"\0", self.at)
        if end < 0:
            raise ProtocolViolation(f"message {self.kind.decode(errors='replace')!r} has an unterminated string")
        raw, self.at = self.body[self.at:end], end + 1
        return _text(raw, self.encoding)

    def int16(self) -> int:
        self._need(2)
        (value,) = struct.unpack_from("!h", self.body, self.at)
        self.at += 2
        return value

    def int32(self) -> int:
        self._need(4)
        (value,) = struct.unpack_from("!i", self.body, self.at)
        self.at += 4
        return value

    def uint32(self) -> int:
        self._need(4)
        (value,) = struct.unpack_from("!I", self.body, self.at)
        self.at += 4
        return value

    def bytes(self, n: int) -> bytes:
        self._need(n)
        raw, self.at = self.body[self.at:self.at + n], self.at + n
        return raw

    def rest(self) -> bytes:
        raw, self.at = self.body[self.at:], len(self.body)
        return raw

    def count(self, what: str) -> int:
        n = self.int16()
        if n < 0:
            raise ProtocolViolation(f"negative count of {what}")
        return n

    def end(self) -> None:
        if self.at != len(self.body):
            raise ProtocolViolation(f"message {self.kind.decode(errors='replace')!r} has {len(self.body) - self.at} stray bytes")


# ----------------------------------------------------------------------------- backend messages


def message(kind: bytes, body: bytes = b"") -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def cstr(text: str | bytes, encoding: str = "utf-8") -> bytes:
    raw = text.encode(encoding, errors="replace") if isinstance(text, str) else text
    return raw.replace(b"\0", b"") + b"\0"


def auth(code: int, data: bytes = b"") -> bytes:
    return message(b"R", struct.pack("!i", code) + data)


def parameter_status(name: str, value: str, encoding: str = "utf-8") -> bytes:
    return message(b"S", cstr(name) + cstr(value, encoding))


def backend_key(pid: int, secret: int) -> bytes:
    return message(b"K", struct.pack("!iI", pid, secret))


def ready(status: bytes) -> bytes:
    return message(b"Z", status)


def command_complete(tag: str | bytes) -> bytes:
    return message(b"C", cstr(tag))


@dataclass(frozen=True)
class Column:
    """One RowDescription field."""

    name: str | bytes
    type_oid: int
    type_size: int = -1
    type_mod: int = -1
    table_oid: int = 0
    column: int = 0
    format: int = 0


def format_of(formats: list[int] | None, i: int) -> int:
    """Column or parameter i's format code under Bind's rule: none = all text, one = all alike."""
    if not formats:
        return 0
    return formats[0] if len(formats) == 1 else formats[i]


def row_description(columns: list[Column]) -> bytes:
    body = [struct.pack("!h", len(columns))]
    for c in columns:
        body.append(cstr(c.name) + struct.pack("!IhIhih", c.table_oid, c.column, c.type_oid, c.type_size, c.type_mod, c.format))
    return message(b"T", b"".join(body))


def data_row(values: list[bytes | None]) -> bytes:
    body = [struct.pack("!h", len(values))]
    for v in values:
        body.append(b"\xff\xff\xff\xff" if v is None else struct.pack("!i", len(v)) + v)
    return message(b"D", b"".join(body))


def parameter_description(oids: list[int]) -> bytes:
    return message(b"t", struct.pack(f"!h{len(oids)}I", len(oids), *oids))


def notice_or_error(kind: bytes, fields: dict[str, str], encoding: str = "utf-8") -> bytes:
    """ErrorResponse (`E`) or NoticeResponse (`N`) from {field code: value}."""
    body = b"".join(code.encode() + cstr(value, encoding) for code, value in fields.items() if value is not None)
    return message(kind, body + b"\0")


def copy_response(kind: bytes, binary: bool, formats: list[int]) -> bytes:
    """CopyInResponse (`G`) or CopyOutResponse (`H`): the overall format and each column's."""
    return message(kind, struct.pack(f"!bh{len(formats)}h", int(binary), len(formats), *formats))


def notification(pid: int, channel: bytes, payload: bytes) -> bytes:
    return message(b"A", struct.pack("!i", pid) + cstr(channel) + cstr(payload))


def error(sqlstate: str, text: str, *, severity: str = "ERROR", **extra: str | None) -> bytes:
    """An ErrorResponse; `extra` takes the protocol's field letters (P position, D detail, H hint)."""
    fields = {"S": severity, "V": severity, "C": sqlstate, "M": text}
    fields.update({k: v for k, v in extra.items() if v})
    return notice_or_error(b"E", fields)


PARSE_COMPLETE = message(b"1")
COPY_DONE = message(b"c")
BIND_COMPLETE = message(b"2")
CLOSE_COMPLETE = message(b"3")
NO_DATA = message(b"n")
PORTAL_SUSPENDED = message(b"s")
EMPTY_QUERY = message(b"I")
