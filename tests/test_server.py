"""`sparsesql serve`: who may connect, answers equal to in-process, and what bad clients get.

Against a running server process (conftest's `server`): SCRAM passwords and roles' privileges,
the injection corpus through parameters and through simple queries, ids and scores on cisi
equal to `db.query`, CancelRequest, a killed client's backend released, TLS, and malformed
protocol traffic that must end in an ErrorResponse or a closed connection while other
sessions keep working.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from datetime import date

import httpx
import psycopg
import pytest
from psycopg import sql

from sparsesql.eval import test_queries
from sparsesql.eval.run import load_beir
from tests.conftest import Served, beir_dir
from tests.test_injection import PAYLOADS, attempts, fingerprint, world  # noqa: F401  (world is a fixture)


def _ping(server: Served) -> None:
    """The server still serves a new client."""
    with psycopg.connect(server.dsn(), connect_timeout=10) as conn:
        assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
    assert server.process.poll() is None, server.log_tail()


# ----------------------------------------------------------------------------- authentication and access


def test_a_wrong_password_and_an_unknown_role_are_refused_alike(server):
    for user, password in ((server.user, "wrong"), ("nobody_at_all", "wrong")):
        with pytest.raises(psycopg.OperationalError, match=f'password authentication failed for user "{user}"'):
            psycopg.connect(server.dsn(user=user, password=password), connect_timeout=10)
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(server.dsn(password=""), connect_timeout=10)
    _ping(server)


def test_a_database_other_than_the_served_one_is_refused(server):
    with pytest.raises(psycopg.OperationalError, match='database "elsewhere" does not exist: this server serves'):
        psycopg.connect(server.dsn(dbname="elsewhere"), connect_timeout=10)


@pytest.fixture
def reader_role(db):
    role = "sparsesql_reader_test"
    exists = db.conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if not exists:
        db.conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'reader-pw'").format(sql.Identifier(role)))
    db.grant(role, "reader")
    return role


def test_a_reader_role_searches_but_cannot_insert(server, db, name, reader_role):
    coll = db.create_collection(name, {"title": "text"}, dense="none", dim=2)
    coll.add([{"id": "a", "title": "sparse retrieval", "vector": [1, 0]}])
    before = db.collection(name).info.n_docs
    with psycopg.connect(server.dsn(user=reader_role, password="reader-pw"), autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (reader_role,)
        rows = conn.execute(f"SELECT id, score FROM {name} SEARCH SPARSE(%s) LIMIT 3", ("retrieval",)).fetchall()
        assert [r[0] for r in rows] == ["a"]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"INSERT INTO {name} (id, title, embedding) VALUES (%s, %s, %s)", ("b", "dense", "[0,1]"))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"DELETE FROM {name} WHERE id = %s", ("a",))
        with pytest.raises(psycopg.Error):
            conn.execute("SET ROLE postgres")
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the session is still usable
    assert db.collection(name).info.n_docs == before == 1


# ----------------------------------------------------------------------------- injection


def _positional(statement: str, params: dict) -> tuple[str, list]:
    """`:name` placeholders as psycopg's %s, in order (and literal % doubled)."""
    order: list = []

    def swap(match: re.Match) -> str:
        order.append(params[match.group(1)])
        return "%s"

    text = re.sub(r"(?<!:):([A-Za-z_]\w*)", swap, statement.replace("%", "%%")) if params else statement
    return text, order


@pytest.mark.parametrize("payload", PAYLOADS)
def test_injection_through_the_server_changes_nothing(server, db, world, payload):  # noqa: F811
    before = fingerprint(db, world)
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        for statement, params in attempts(world, payload):
            if "\x00" in statement:
                continue  # a NUL cannot travel in a protocol string; libpq refuses it client-side
            if params:
                text, values = _positional(statement, params)
                try:
                    conn.execute(text, [v if not isinstance(v, list) else str(v) for v in values])
                except psycopg.Error:
                    pass
            result = conn.pgconn.exec_(statement.encode())  # the simple query protocol, as psql sends it
            assert result.status in (psycopg.pq.ExecStatus.TUPLES_OK, psycopg.pq.ExecStatus.COMMAND_OK, psycopg.pq.ExecStatus.FATAL_ERROR)
    assert fingerprint(db, world) == before
    _ping(server)


# ----------------------------------------------------------------------------- equal to in-process


def test_cisi_through_the_server_equals_in_process(server, session_db):
    folder = beir_dir("cisi")
    name = load_beir(session_db, folder)
    queries = list(test_queries(folder).items())[:15]
    searches = {
        "sparse": "SPARSE(:q)",
        "dense": "DENSE(:q)",
        "hybrid": "HYBRID(SPARSE(:q), DENSE(:q))",
        "hybrid_prf": "HYBRID(SPARSE(:q), DENSE(:q)) WITH PRF",
    }
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        for label, search in searches.items():
            for _, text in queries:
                statement = f"SELECT id, score FROM {name} SEARCH {search} LIMIT 10"
                expected = [(r["id"], r["score"]) for r in session_db.query(statement, q=text)]
                got = conn.execute(statement.replace(":q", "%(q)s"), {"q": text}).fetchall()
                assert [i for i, _ in got] == [i for i, _ in expected], (label, text)
                # the server's tier scores dense from its own float32 vectors, the reference in
                # PostgreSQL: the same cosine up to float32 summation order
                assert [s for _, s in got] == pytest.approx([s for _, s in expected], rel=1e-6, abs=1e-6), (label, text)


def test_set_dense_tier_through_the_server_changes_that_session_only(server, db, name):
    db.create_collection(name, {"body": "text"}, dense="none", dim=3).add(
        [{"id": "a", "body": "x", "vector": [1, 0, 0]}, {"id": "b", "body": "y", "vector": [0, 1, 0]}]
    )
    explain = f"EXPLAIN SELECT id FROM {name} SEARCH DENSE('[1,0.2,0]') LIMIT 1"
    with psycopg.connect(server.dsn(), autocommit=True) as one, psycopg.connect(server.dsn(), autocommit=True) as other:
        one.execute("SET dense_tier = off")
        assert "memory tier" not in "\n".join(r[0] for r in one.execute(explain))
        assert "dense codes" in "\n".join(r[0] for r in other.execute(explain))
        with pytest.raises(psycopg.Error, match="dense_tier_memory takes a size"):
            one.execute("SET dense_tier_memory = 'lots'")


# ----------------------------------------------------------------------------- cancel, vanished clients, TLS


def test_cancel_request_cancels_the_running_query_only(server):
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        timer = threading.Timer(1.0, conn.cancel_safe)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")
        assert time.monotonic() - started < 15
        assert conn.execute("SELECT 'still here'").fetchone() == ("still here",)


def _backend_count(db, application: str) -> int:
    return db.conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (application,)).fetchone()[0]


def test_a_killed_client_releases_its_backend_session(server, db):
    application = "sparsesql-killed-client"
    script = f"import psycopg; c = psycopg.connect({server.dsn(application_name=application)!r}); c.execute('SELECT pg_sleep(60)')"
    child = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 30
    while _backend_count(db, application) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _backend_count(db, application) == 1
    child.kill()
    child.wait()
    deadline = time.monotonic() + 15
    while _backend_count(db, application) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _backend_count(db, application) == 0, server.log_tail()
    _ping(server)


def test_tls_when_given_a_certificate(server, dsn, tmp_path):  # server: the role has its password
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not found: apt install openssl")
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    env = {**os.environ, "SPARSESQL_HOME": str(tmp_path)}
    command = [str(__import__("pathlib").Path(sys.executable).with_name("sparsesql")), "--dsn", dsn, "serve", "--port", "0",
               "--tls-cert", str(cert), "--tls-key", str(key), "--require-tls", "--no-sparse-tier", "--http-port", "0", "--workers", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        line = process.stdout.readline()
        port = int(re.search(r":(\d+),", line).group(1))
        https = re.search(r"on (https://[\d.]+:\d+)/", process.stdout.readline()).group(1)  # the HTTP API, with the same certificate
        assert httpx.get(f"{https}/health", verify=str(cert), timeout=30).json()["status"] == "ok"
        with psycopg.connect(dsn, autocommit=True) as admin:
            user, database = admin.info.user, admin.info.dbname
        base = dict(host="127.0.0.1", port=port, dbname=database, user=user, password=server.password)
        with psycopg.connect(**base, sslmode="require") as conn:
            assert conn.pgconn.ssl_in_use
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError, match="accepts only TLS"):
            psycopg.connect(**base, sslmode="disable")
    finally:
        process.terminate()
        process.wait(20)


# ----------------------------------------------------------------------------- malformed traffic


def _raw(server: Served) -> tuple[psycopg.Connection, socket.socket]:
    """An authenticated session whose socket we then write to by hand."""
    conn = psycopg.connect(server.dsn(), autocommit=True)
    return conn, socket.socket(fileno=os.dup(conn.pgconn.socket))


def _replies(sock: socket.socket, timeout: float = 10.0, until: bytes = b"Z") -> list[tuple[bytes, bytes]]:
    """Messages until `until` (ReadyForQuery), a FATAL error, or the server closing the connection."""
    sock.settimeout(timeout)
    data, out = b"", []
    while True:
        while len(data) >= 5:
            kind, length = data[:1], struct.unpack("!i", data[1:5])[0]
            if len(data) < 1 + length:
                break
            out.append((kind, data[5:1 + length]))
            data = data[1 + length:]
            if kind in (b"Z", until) or (kind == b"E" and b"SFATAL" in out[-1][1]):
                return out
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError, socket.timeout):
            return out
        if not chunk:
            return out
        data += chunk


def _msg(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def _sqlstate(body: bytes) -> str:
    return next(part[1:].decode() for part in body.split(b"\0") if part.startswith(b"C"))


FATAL_CASES = {
    "unknown message type": _msg(b"@", b""),
    "length below four": b"Q" + struct.pack("!i", 2),
    "negative length": b"Q" + struct.pack("!i", -7),
    "a 1 GB length claim": b"Q" + struct.pack("!i", 2**30),
    "unterminated string": _msg(b"Q", b"SELECT 1"),
    "Parse cut short": _msg(b"P", b"\0SELECT 1\0" + struct.pack("!h", 3) + struct.pack("!I", 23)),
    "Bind with a value longer than the message": _msg(b"B", b"\0\0" + struct.pack("!hhi", 0, 1, 1000) + b"xy"),
    "Describe of neither S nor P": _msg(b"D", b"X\0"),
    "stray bytes after Sync": _msg(b"S", b"junk"),
}


@pytest.mark.parametrize("case", list(FATAL_CASES))
def test_malformed_messages_get_a_fatal_error_and_only_that_client_is_closed(server, case):
    bystander = psycopg.connect(server.dsn(), autocommit=True)
    conn, sock = _raw(server)
    try:
        sock.sendall(FATAL_CASES[case] + _msg(b"S", b""))  # replies are due at Sync
        replies = _replies(sock)
        assert replies and replies[-1][0] == b"E", (case, replies, server.log_tail())
        assert _sqlstate(replies[-1][1]) == "08P01"
        assert sock.recv(1) == b""  # then the connection is closed
        assert bystander.execute("SELECT 'unaffected'").fetchone() == ("unaffected",)
    finally:
        sock.close()
        conn.close()
        bystander.close()
    _ping(server)


def test_errors_in_the_extended_protocol_skip_to_sync_and_the_session_goes_on(server):
    conn, sock = _raw(server)
    try:
        bind_missing = _msg(b"B", b"\0nope\0" + struct.pack("!hhh", 0, 0, 0))
        execute = _msg(b"E", b"\0" + struct.pack("!i", 0))
        sock.sendall(bind_missing + execute + _msg(b"S", b""))
        replies = _replies(sock)
        assert [k for k, _ in replies] == [b"E", b"Z"]
        assert _sqlstate(replies[0][1]) == "26000"
        parse = _msg(b"P", b"\0SELECT id FROM nowhere SEARCH SPARSE('x') LIMT 5\0" + struct.pack("!h", 0))
        sock.sendall(parse + _msg(b"S", b""))
        replies = _replies(sock)
        assert [k for k, _ in replies] == [b"E", b"Z"] and _sqlstate(replies[0][1]) == "42601"
        sock.sendall(_msg(b"Q", b"SELECT 7\0"))
        assert [k for k, _ in _replies(sock)] == [b"T", b"D", b"C", b"Z"]
    finally:
        sock.close()
        conn.close()


def test_startup_garbage_and_truncated_packets_close_quietly(server):
    for junk in (b"\x00\x00\x00\x08\x00\x00\x00\x00", struct.pack("!i", 2**30) + b"\x00\x03\x00\x00", b"\x00\x00", os.urandom(64)):
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(junk)
            sock.shutdown(socket.SHUT_WR)
            _replies(sock)
    conn, sock = _raw(server)
    sock.sendall(b"Q" + struct.pack("!i", 100) + b"SELECT")  # then vanish mid-message
    sock.close()
    conn.close()
    _ping(server)


def test_random_traffic_never_crashes_the_server_or_hangs_it(server):
    rng = random.Random(16)
    kinds = b"QPBDESHCXdcf@p"
    for _ in range(40):
        conn, sock = _raw(server)
        try:
            for _ in range(rng.randint(1, 6)):
                body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))
                if rng.random() < 0.5:
                    body += b"\0"
                message = _msg(bytes([rng.choice(kinds)]), body)
                if rng.random() < 0.2:
                    message = message[: rng.randint(1, len(message))]
                sock.sendall(message)
            sock.sendall(_msg(b"S", b""))
            sock.shutdown(socket.SHUT_WR)  # a message cut short waits for its bytes; the end of input ends it
            sock.settimeout(10)
            while sock.recv(65536):  # whatever it answers, the server then closes: no hang
                pass
        except OSError:
            pass  # the server closed first (a FATAL for a malformed message): reset, pipe, not connected
        finally:
            sock.close()
            conn.close()
    _ping(server)


def test_a_client_that_vanishes_mid_query_leaves_the_server_serving(server, db):
    conn, sock = _raw(server)
    sock.sendall(_msg(b"Q", b"SELECT pg_sleep(20) /* vanishing */\0"))
    time.sleep(0.5)
    sock.shutdown(socket.SHUT_RDWR)  # gone without a Terminate, as when a machine drops off the network
    sock.close()
    conn.close()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        busy = db.conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%%vanishing */'").fetchone()[0]
        if busy == 0:
            break
        time.sleep(0.2)
    assert busy == 0, server.log_tail()
    _ping(server)


def test_notices_and_parameter_changes_reach_the_client(server):
    with psycopg.connect(server.dsn(options="-c search_path=public"), autocommit=True) as conn:
        notices = []
        conn.add_notice_handler(lambda diag: notices.append((diag.severity_nonlocalized, diag.message_primary)))
        conn.execute("DO $$BEGIN RAISE NOTICE 'hello from plpgsql'; END$$")
        assert notices == [("NOTICE", "hello from plpgsql")]
        assert conn.execute("SHOW search_path").fetchone() == ("public",)  # the startup option reached the backend
        conn.execute("SET application_name = 'renamed-by-set'")
        assert conn.info.parameter_status("application_name") == "renamed-by-set"
        assert conn.info.parameter_status("sparsesql_version")
        assert conn.info.parameter_status("server_version").split(".")[0].isdigit()


def test_executes_before_one_sync_are_one_transaction(server, db):
    """As in PostgreSQL (and as JDBC's executeBatch expects): a failure rolls back the batch."""
    db.conn.execute("DROP TABLE IF EXISTS public.batch_atomic")
    db.conn.execute("CREATE TABLE public.batch_atomic (x int PRIMARY KEY)")
    conn, sock = _raw(server)
    try:
        parse = _msg(b"P", b"ins\0INSERT INTO public.batch_atomic VALUES ($1::int)\0" + struct.pack("!h", 0))
        def run(value: bytes) -> bytes:
            return (_msg(b"B", b"\0ins\0" + struct.pack("!hhi", 0, 1, len(value)) + value + struct.pack("!h", 0))
                    + _msg(b"E", b"\0" + struct.pack("!i", 0)))
        sock.sendall(parse + run(b"1") + run(b"2") + run(b"1") + run(b"3") + _msg(b"S", b""))
        replies = _replies(sock)
        assert [k for k, _ in replies] == [b"1", b"2", b"C", b"2", b"C", b"2", b"E", b"Z"]
        assert _sqlstate(replies[-2][1]) == "23505" and replies[-1][1] == b"I"
        assert db.conn.execute("SELECT count(*) FROM public.batch_atomic").fetchone() == (0,)
        sock.sendall(run(b"1") + run(b"2") + _msg(b"S", b""))
        assert [k for k, _ in _replies(sock)] == [b"2", b"C", b"2", b"C", b"Z"]
        assert db.conn.execute("SELECT count(*) FROM public.batch_atomic").fetchone() == (2,)
    finally:
        sock.close()
        conn.close()
        db.conn.execute("DROP TABLE IF EXISTS public.batch_atomic")


def test_a_bind_mixing_text_and_binary_columns_gets_each_in_its_format(server):
    """JDBC asks for binary integers and floats beside text columns; libpq takes one format for
    all, so the relay converts. The bytes must equal what PostgreSQL itself sends in binary."""
    conn, sock = _raw(server)
    try:
        query = b"SELECT 7::int4, 'seven'::text, 2.5::float8, '2024-02-29'::date, 12.50::numeric, true, NULL::int8"
        formats = [1, 0, 1, 1, 1, 1, 1]
        bind = b"\0\0" + struct.pack("!hh", 0, 0) + struct.pack(f"!h{len(formats)}h", len(formats), *formats)
        sock.sendall(_msg(b"P", b"\0" + query + b"\0" + struct.pack("!h", 0)) + _msg(b"B", bind)
                     + _msg(b"D", b"P\0") + _msg(b"E", b"\0" + struct.pack("!i", 0)) + _msg(b"S", b""))
        replies = dict((k, b) for k, b in _replies(sock))
        described = replies[b"T"]
        assert struct.unpack_from("!h", described)[0] == 7
        row = replies[b"D"]
        values, at = [], 2
        for _ in range(struct.unpack_from("!h", row)[0]):
            (length,) = struct.unpack_from("!i", row, at)
            at += 4
            values.append(None if length < 0 else row[at:at + length])
            at += max(length, 0)
        with psycopg.connect(server.dsn()) as plain:  # all binary: PostgreSQL's bytes, relayed as they came
            expected = plain.execute(query.decode(), binary=True).pgresult
        assert values[1] == b"seven"
        assert values[6] is None
        for col in (0, 2, 3, 4, 5):
            assert values[col] == expected.get_value(0, col), col
    finally:
        sock.close()
        conn.close()


def test_execute_with_a_row_limit_pages_through_a_portal(server, db, name):
    coll = db.create_collection(name, {"title": "text"}, dense="none", dim=2)
    coll.add([{"id": f"d{i}", "title": f"retrieval paper {i}", "vector": [1, i]} for i in range(5)])
    for query in (f"SELECT id, score FROM {name} SEARCH SPARSE('retrieval') LIMIT 5".encode(),
                  b"SELECT g FROM generate_series(1, 5) g"):
        conn, sock = _raw(server)
        try:
            execute = _msg(b"E", b"\0" + struct.pack("!i", 2))
            sock.sendall(_msg(b"P", b"\0" + query + b"\0" + struct.pack("!h", 0))
                         + _msg(b"B", b"\0\0" + struct.pack("!hhh", 0, 0, 0)) + execute + _msg(b"H", b""))
            assert [k for k, _ in _replies(sock, until=b"s")] == [b"1", b"2", b"D", b"D", b"s"], query  # Flush: no Sync
            sock.sendall(execute + execute + _msg(b"S", b""))
            kinds = [k for k, _ in _replies(sock)]
            assert kinds == [b"D", b"D", b"s", b"D", b"C", b"Z"], query
        finally:
            sock.close()
            conn.close()


def test_a_collection_recreated_with_other_fields_is_described_anew(server, name):
    """Descriptions of searches are kept per text: a namesake with other fields must not be
    answered with the old columns (a client would read rows that do not match their header)."""
    query = f"SELECT * FROM {name} SEARCH SPARSE(%s) LIMIT 3"
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE COLLECTION {name} (title text) WITH (dense => 'none', dim => 2)")
        conn.execute(f"INSERT INTO {name} (id, title, embedding) VALUES ('a', 'sparse retrieval', '[1,0]')")
        first = conn.execute(query, ("sparse",))
        assert [c.name for c in first.description] == ["id", "title", "metadata", "score"]
        conn.execute(f"DROP COLLECTION {name}")
        conn.execute(f"CREATE COLLECTION {name} (title text, year int) WITH (dense => 'none', dim => 2)")
        conn.execute(f"INSERT INTO {name} (id, title, year, embedding) VALUES ('b', 'sparse again', 2024, '[0,1]')")
        again = conn.execute(query, ("sparse",))
        assert [c.name for c in again.description] == ["id", "title", "year", "metadata", "score"]
        assert again.fetchall()[0][:3] == ("b", "sparse again", 2024)


def test_a_results_page_through_the_wire(server, db, name):
    """Pages, cursors, snippets, collapse and facets through `sparsesql serve` as a driver sees
    them: the same rows as db.query, in PostgreSQL types."""
    db.create_collection(name, {"title": "text", "year": "int", "day": "date"}, dense="none", dim=2)
    db.collection(name).add([{"id": f"d{i}", "title": ("sparse retrieval" if i % 2 else "dense retrieval") + f" number {i}",
                              "year": 2018 + i % 3, "day": f"2021-0{1 + i % 9}-01", "vector": [1.0, float(i)]} for i in range(30)])
    page = f"SELECT id, HIGHLIGHT(title), score, cursor FROM {name} SEARCH SPARSE('sparse') LIMIT 4"
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        first = conn.execute(page).fetchall()
        assert [r[0] for r in first] == [r.id for r in db.query(page)] and "<mark>sparse</mark>" in first[0][1]
        second = conn.execute(page + " AFTER %s", (first[-1][3],)).fetchall()
        assert [r[0] for r in second] == [r.id for r in db.query(page + " OFFSET 4")]
        facets = conn.execute(f"SELECT year, count(*), max(day) FROM {name} SEARCH SPARSE('retrieval') GROUP BY year ORDER BY year").fetchall()
        assert facets == [tuple(r.values()) for r in db.query(f"SELECT year, count(*), max(day) FROM {name} SEARCH SPARSE('retrieval') GROUP BY year ORDER BY year")]
        assert sum(n for _, n, _ in facets) == 30 and all(isinstance(d, date) for *_, d in facets)
        averaged = f"SELECT day, avg(year), sum(year) FROM {name} SEARCH SPARSE('retrieval') GROUP BY day ORDER BY day"
        expected = [(r.day, float(r.avg_year), r.sum_year) for r in db.query(averaged)]
        assert [(d, float(a), s) for d, a, s in conn.execute(averaged).fetchall()] == expected
        assert [(d, float(a), s) for d, a, s in conn.cursor(binary=True).execute(averaged).fetchall()] == expected
        collapsed = conn.execute(f"SELECT DISTINCT ON (year) id, year FROM {name} SEARCH SPARSE('sparse retrieval') LIMIT 10").fetchall()
        assert sorted(y for _, y in collapsed) == [2018, 2019, 2020]
        with pytest.raises(psycopg.errors.Error, match="this cursor comes from another search"):
            conn.execute(f"SELECT id FROM {name} SEARCH SPARSE('dense') LIMIT 4 AFTER %s", (first[-1][3],))
        like = f"SELECT id, score FROM {name} SEARCH HYBRID(SPARSE(LIKE 'd3'), DENSE(LIKE ('d3', 'd5') UNLIKE %s)) LIMIT 5"
        got, expected = conn.execute(like, ("d7",)).fetchall(), db.query(like.replace("%s", ":u"), u="d7")
        assert [r[0] for r in got] == [r.id for r in expected] and [r[1] for r in got] == pytest.approx([r.score for r in expected], abs=1e-6)
        boosted = f"SELECT id, score FROM {name} SEARCH SPARSE('retrieval') ORDER BY score * exp_decay(day, %s, 30) LIMIT 5"
        got, expected = conn.execute(boosted, ("2021-03-01",)).fetchall(), db.query(boosted.replace("%s", ":o"), o="2021-03-01")
        assert [r[0] for r in got] == [r.id for r in expected] and [r[1] for r in got] == pytest.approx([r.score for r in expected])
        with pytest.raises(psycopg.errors.Error, match="ORDER BY reads numbers and dates"):
            conn.execute(f"SELECT id FROM {name} SEARCH SPARSE('retrieval') ORDER BY title LIMIT 3")
        with pytest.raises(psycopg.errors.Error, match="RERANK's model folder 'none-here' does not exist|RERANK loads models only from"):
            conn.execute(f"SELECT id FROM {name} SEARCH SPARSE('retrieval') RERANK(model => 'none-here') LIMIT 3")
        with pytest.raises(psycopg.errors.Error, match="LIKE names document 'd99'"):
            conn.execute(f"SELECT id FROM {name} SEARCH DENSE(LIKE 'd99') LIMIT 3")
