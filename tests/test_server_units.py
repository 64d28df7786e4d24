"""The server's pure parts: splitting simple queries, routing statements, values on the wire,
and SCRAM against a verifier PostgreSQL itself made."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from decimal import Decimal

import pytest

from sparsesql.server import types as t
from sparsesql.server.auth import AuthFailed, ScramExchange, Verifier
from sparsesql.server.dialect import Described
from sparsesql.lang.statements import split
from sparsesql.server.route import is_dialect


def test_split_cuts_only_at_top_level_semicolons():
    text = "select 'a;b'; select E'x\\';y'; select \"q;\"; select $t$;$t$; /* ; /* ; */ */ select 1; -- c;\nselect (1;2)"
    parts = [s.strip() for _, s in split(text)]
    assert parts == ["select 'a;b'", "select E'x\\';y'", 'select "q;"', "select $t$;$t$", "/* ; /* ; */ */ select 1", "-- c;\nselect (1;2)"]
    assert all(text[at:at + len(s)] == s for at, s in split(text))
    assert split(" ; -- nothing\n;") == ()
    assert [s for _, s in split("select $1; select 2")] == ["select $1", " select 2"]  # $1 is no dollar quote


@pytest.mark.parametrize("statement, dialect", [
    ("CREATE COLLECTION c (title text)", True),
    ("create collection if not exists c ()", True),
    ("CREATE TABLE c (x int)", False),
    ("SELECT id FROM c SEARCH SPARSE('x')", True),
    ("SELECT id FROM anything SEARCH SPARSE($1)", True),
    ("EXPLAIN ANALYZE SELECT id FROM c SEARCH DENSE('x')", True),
    ("SELECT 'SEARCH' FROM t", False),
    ("SELECT id FROM papers WHERE year > 2020", True),
    ("SELECT id FROM notes", False),
    ("SELECT * FROM papers p JOIN notes n ON p.id = n.id", False),
    ("SELECT * FROM public.papers", False),
    ("SELECT * FROM papers, notes", False),
    ("INSERT INTO papers (id) VALUES ('a')", True),
    ("INSERT INTO notes VALUES ('a')", False),
    ("DELETE FROM papers WHERE id = 'a'", True),
    ("DELETE FROM notes", False),
    ("SET sparse_tier = off", True),
    ("SET dense_tier = off", True),
    ("SET dense_tier_memory = '1GB'", True),
    ("SET search_path TO public", False),
    ("SHOW COLLECTIONS", True),
    ("SHOW server_version", False),
    ("BUILD GRAPH ON papers", True),
    ("BEGIN", False),
    ("WITH x AS (SELECT 1) SELECT * FROM x", False),
])
def test_routing(statement, dialect):
    assert is_dialect(statement, lambda name: name == "papers") is dialect


@pytest.mark.parametrize("value, oid", [
    (42, t.INT4), (-2**40, t.INT8), (7, t.INT2), (0.1, t.FLOAT8), (True, t.BOOL), ("héllo", t.TEXT),
    ({"a": [1, "x"]}, t.JSONB), (dt.date(2021, 3, 4), t.DATE), (dt.datetime(2021, 3, 4, 5, 6, 7, 89), t.TIMESTAMP),
    (dt.datetime(2021, 3, 4, 5, 6, 7, tzinfo=dt.timezone.utc), t.TIMESTAMPTZ),
])
def test_values_survive_binary_and_text(value, oid):
    assert t.decode(t.encode(value, oid, True), oid, True) == value
    assert t.decode(t.encode(value, oid, False), oid, False) == value


def test_numeric_binary_matches_postgresql(db):
    for text in ("0", "1", "-12345.678", "10000", "0.0001", "123456789012345678901234567890", "3.14159"):
        raw = db.conn.execute("SELECT %s::numeric", (text,), binary=True).pgresult.get_value(0, 0)
        assert t.encode(Decimal(text), t.NUMERIC, True) == raw, text
        expected = int(text) if "." not in text else float(text)
        assert t.decode(raw, t.NUMERIC, True) == expected


def test_bad_parameter_bytes_name_the_type():
    with pytest.raises(t.BadValue, match="invalid binary value for type oid 23"):
        t.decode(b"\x00\x01", t.INT4, True)
    with pytest.raises(t.BadValue, match="invalid text value for type oid 16"):
        t.decode(b"maybe", t.BOOL, False)


def test_a_dense_parameter_sent_as_text_is_a_vector_or_a_bad_value():
    """Text shaped like a vector that holds no numbers is the client's bad value (22P02), not an
    exception that would close its connection."""
    described = Described([t.TEXT], None, "SELECT", vector_params=frozenset({"1"}))
    assert described.bind("1", "[0.5, -1e3,0]") == [0.5, -1000.0, 0.0] and described.bind("1", "{1,2}") == [1.0, 2.0]
    assert described.bind("2", "[1..2]") == "[1..2]"  # not a DENSE parameter: passed on as text
    for text in ("[1..2, 0]", "{e}", "[+-1]"):
        with pytest.raises(t.BadValue, match="is not a vector of numbers"):
            described.bind("1", text)


def _client_proof(password: str, salt: bytes, iterations: int, auth_message: bytes) -> bytes:
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    signature = hmac.new(hashlib.sha256(client_key).digest(), auth_message, hashlib.sha256).digest()
    return bytes(a ^ b for a, b in zip(client_key, signature))


def test_scram_accepts_the_password_postgresql_hashed_and_nothing_else(db):
    stored = db.conn.pgconn.encrypt_password(b"right", b"someone", b"scram-sha-256").decode()
    verifier = Verifier.parse(stored)
    for password, ok in (("right", True), ("wrong", False)):
        exchange = ScramExchange("someone", verifier, b"secret")
        first = exchange.first(b"n,,n=someone,r=abc")
        attrs = dict(part.split("=", 1) for part in first.decode().split(","))
        assert attrs["r"].startswith("abc") and int(attrs["i"]) == verifier.iterations
        without_proof = f"c={base64.b64encode(b'n,,').decode()},r={attrs['r']}"
        auth_message = f"n=someone,r=abc,{first.decode()},{without_proof}".encode()
        proof = _client_proof(password, verifier.salt, verifier.iterations, auth_message)
        final = f"{without_proof},p={base64.b64encode(proof).decode()}".encode()
        if ok:
            _, keys = exchange.final(final)
            assert hashlib.sha256(keys.client_key).digest() == verifier.stored_key
        else:
            with pytest.raises(AuthFailed, match='password authentication failed for user "someone"'):
                exchange.final(final)
    with pytest.raises(AuthFailed, match="channel binding"):
        ScramExchange("someone", verifier, b"secret").first(b"p=tls-server-end-point,,n=someone,r=abc")
    mock = ScramExchange("ghost", None, b"secret")
    assert b"s=" in mock.first(b"n,,n=ghost,r=abc")  # a role that does not exist still gets a salt
