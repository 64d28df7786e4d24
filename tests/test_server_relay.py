"""The relay's protocol paths through `sparsesql serve`, each against what PostgreSQL does itself:
COPY in and out, cursors (PostgreSQL's and the dialect's), notifications, a backend that ends,
client encodings, zero-column rows; and the server's own behaviour on those paths: no CPU spent
after a client vanishes in the middle of one, and SIGTERM ends it whatever its sessions do."""

from __future__ import annotations

import signal
import socket
import struct
import threading
import time

import psutil
import psycopg
import pytest
import sqlalchemy as sa

from sparsesql.server.serve import DRAIN_SECONDS, EXIT_SECONDS
from tests.conftest import Served, start_server, stop_server
from tests.test_server import _msg, _raw, _replies, _sqlstate


@pytest.fixture
def notes(server: Served, name: str) -> str:
    """A small collection, made through the server."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE COLLECTION {name} (title text, year int) WITH (dense => 'none', dim => 2)")
        for i in range(30):
            title = f"note {i} on sparse retrieval" + " query" * (i % 4)
            conn.execute(f"INSERT INTO {name} (id, title, year, embedding) VALUES (%s, %s, %s, %s)", (f"n{i}", title, 2000 + i, f"[1, {i}]"))
    return name


def _both(server: Served, dsn: str):
    """The same statements through the server and straight to PostgreSQL."""
    return [psycopg.connect(server.dsn(), autocommit=True), psycopg.connect(dsn, autocommit=True)]


# ----------------------------------------------------------------------------- COPY


def test_copy_out_and_in_match_postgresql(server, dsn):
    for conn in _both(server, dsn):
        with conn:
            conn.execute("DROP TABLE IF EXISTS relay_copy; CREATE TABLE relay_copy (a int, b text)")
            with conn.cursor().copy("COPY relay_copy FROM STDIN") as copy:
                for i in range(5000):
                    copy.write_row((i, f"row {i} \u00e9"))
            with conn.cursor().copy("COPY (SELECT a, b FROM relay_copy ORDER BY a) TO STDOUT") as copy:
                rows = list(copy.rows())
            assert len(rows) == 5000 and rows[7] == ("7", "row 7 \u00e9")
            with conn.cursor().copy("COPY relay_copy TO STDOUT (FORMAT binary)") as copy:
                copy.set_types(["int4", "text"])
                assert sum(1 for _ in copy.rows()) == 5000
            with pytest.raises(psycopg.errors.InvalidTextRepresentation, match="invalid input syntax for type integer"):
                with conn.cursor().copy("COPY relay_copy FROM STDIN") as copy:
                    copy.write(b"1\tone\nnot a number\ttwo\n")
            with pytest.raises(RuntimeError, match="stopped here"):
                with conn.cursor().copy("COPY relay_copy FROM STDIN") as copy:
                    copy.write(b"1\tone\n")
                    raise RuntimeError("stopped here")  # psycopg sends CopyFail, then raises this
            assert conn.execute("SELECT count(*) FROM relay_copy").fetchone() == (5000,)  # the failed ones left nothing
            conn.execute("DROP TABLE relay_copy")


def test_copy_in_the_middle_of_a_simple_query(server):
    conn, sock = _raw(server)
    try:
        sock.sendall(_msg(b"Q", b"CREATE TEMP TABLE mid (a int); COPY mid FROM STDIN; SELECT sum(a) FROM mid\0"))
        replies = _replies(sock, until=b"G")
        assert [k for k, _ in replies] == [b"C", b"G"]
        sock.sendall(_msg(b"d", b"1\n2\n") + _msg(b"d", b"39\n") + _msg(b"c", b""))
        replies = _replies(sock)
        assert [k for k, _ in replies] == [b"C", b"T", b"D", b"C", b"Z"]
        assert replies[0][1] == b"COPY 3\0" and replies[2][1].endswith(b"42")
        # the extended protocol: Sync during the copy is ignored, CopyFail fails it, and the
        # messages up to the next Sync are skipped
        parse = _msg(b"P", b"\0COPY mid FROM STDIN\0" + struct.pack("!h", 0))
        bind = _msg(b"B", b"\0\0" + struct.pack("!hhh", 0, 0, 0))
        sock.sendall(parse + bind + _msg(b"E", b"\0" + struct.pack("!i", 0)) + _msg(b"S", b""))
        assert [k for k, _ in _replies(sock, until=b"G")] == [b"1", b"2", b"G"]
        sock.sendall(_msg(b"d", b"5\n") + _msg(b"f", b"client gave up\0") + _msg(b"S", b""))
        replies = _replies(sock)
        assert [k for k, _ in replies] == [b"E", b"Z"] and _sqlstate(replies[0][1]) == "57014"
        sock.sendall(_msg(b"Q", b"SELECT count(*) FROM mid\0"))
        assert _replies(sock)[1][1].endswith(b"3")
    finally:
        sock.close()
        conn.close()


# ----------------------------------------------------------------------------- cursors


def test_postgresqls_own_cursors_pass_through(server, dsn):
    for conn in _both(server, dsn):
        with conn:
            with conn.transaction():
                cur = conn.cursor("pg_cursor")
                cur.execute("SELECT g, g * 2 AS twice FROM generate_series(1, 100) g")
                assert [c.name for c in cur.description] == ["g", "twice"]
                assert cur.fetchmany(3) == [(1, 2), (2, 4), (3, 6)]
                assert len(cur.fetchall()) == 97
                cur.close()
            assert conn.execute("SELECT count(*) FROM pg_cursors").fetchone() == (0,)


def test_a_search_as_a_server_side_cursor(server, notes):
    with psycopg.connect(server.dsn()) as conn:
        expected = conn.execute(f"SELECT id, score FROM {notes} SEARCH SPARSE('query retrieval') LIMIT 25").fetchall()
        cur = conn.cursor("search_cursor")
        cur.execute(f"SELECT id, score FROM {notes} SEARCH SPARSE(%s) LIMIT %s", ("query retrieval", 25))
        assert [c.name for c in cur.description] == ["id", "score"]
        assert cur.fetchmany(4) + cur.fetchall() == expected
        cur.close()
        plain = conn.execute(f"SELECT id, year FROM {notes} SEARCH SPARSE('query') LIMIT 3").fetchall()
        binary = conn.cursor("binary_cursor", binary=True)
        binary.execute(f"SELECT id, year FROM {notes} SEARCH SPARSE(%s) LIMIT 3", ("query",))
        assert binary.fetchall() == plain and len(plain) == 3
        conn.rollback()
        conn.autocommit = True
        with pytest.raises(psycopg.errors.NoActiveSqlTransaction, match="transaction blocks"):
            conn.execute(f"DECLARE outside CURSOR FOR SELECT id FROM {notes} SEARCH SPARSE('note') LIMIT 5")
        conn.execute(f"DECLARE held CURSOR WITH HOLD FOR SELECT id FROM {notes} SEARCH SPARSE('note') LIMIT 7")
        first = conn.execute("FETCH 3 FROM held").fetchall()
        assert conn.execute("MOVE 2 IN held").statusmessage == "MOVE 2"
        rest = conn.execute("FETCH ALL held").fetchall()
        assert len(first) == 3 and len(rest) == 2
        assert conn.execute("FETCH NEXT FROM held").fetchall() == []
        conn.execute("CLOSE held")
        with pytest.raises(psycopg.errors.InvalidCursorName, match='cursor "held" does not exist'):
            conn.execute("FETCH 1 FROM held")
        with conn.transaction():
            conn.execute(f"DECLARE gone CURSOR FOR SELECT id FROM {notes} SEARCH SPARSE('note') LIMIT 2")
        with pytest.raises(psycopg.errors.InvalidCursorName):  # it ended with its transaction
            conn.execute("FETCH 1 FROM gone")


def test_sqlalchemy_streams_a_search(server, notes):
    engine = sa.create_engine(f"postgresql+psycopg://{server.user}:{server.password}@{server.host}:{server.port}/{server.database}")
    try:
        with engine.connect() as conn:
            query = sa.text(f"SELECT id, score FROM {notes} SEARCH SPARSE(:q) LIMIT 20")
            expected = conn.execute(query, {"q": "query"}).all()
            streamed = conn.execution_options(stream_results=True, max_row_buffer=3).execute(query, {"q": "query"})
            assert list(streamed) == expected and len(expected) == 20
            batches = [len(batch) for batch in conn.execution_options(yield_per=6).execute(query, {"q": "query"}).partitions(6)]
            assert batches == [6, 6, 6, 2]
    finally:
        engine.dispose()


def test_a_search_in_pipeline_mode(server, notes):
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        with conn.pipeline():
            search = conn.execute(f"SELECT id FROM {notes} SEARCH SPARSE(%s) LIMIT 2", ("query",))
            plain = conn.execute("SELECT 1")
        assert len(search.fetchall()) == 2 and plain.fetchall() == [(1,)]
        conn.execute("CREATE TEMP TABLE piped (a int)")
        with pytest.raises(psycopg.errors.UndefinedColumn, match="nope"):
            with conn.pipeline():
                conn.execute("INSERT INTO piped VALUES (1)")
                conn.execute(f"SELECT id FROM {notes} SEARCH SPARSE(%s) WHERE nope = 1 LIMIT 2", ("query",))
                conn.execute("INSERT INTO piped VALUES (2)")  # skipped: the error skips to the Sync
        # as in PostgreSQL, the statements before one Sync are one transaction: none is left
        assert conn.execute("SELECT array_agg(a) FROM piped").fetchone() == (None,)


# ----------------------------------------------------------------------------- what the backend says


def test_notifications_arrive_while_idle(server):
    with psycopg.connect(server.dsn(), autocommit=True) as listener, psycopg.connect(server.dsn(), autocommit=True) as sender:
        listener.execute("LISTEN relay_channel")
        sender_pid = sender.info.backend_pid
        threading.Timer(0.3, lambda: sender.execute("NOTIFY relay_channel, 'hello'")).start()
        got = list(listener.notifies(timeout=5, stop_after=1))
        assert [(n.channel, n.payload, n.pid) for n in got] == [("relay_channel", "hello", sender_pid)]
        listener.execute("NOTIFY relay_channel, 'to myself'")  # delivered with the statement's own reply
        assert [n.payload for n in listener.notifies(timeout=1, stop_after=1)] == ["to myself"]


def test_a_backend_that_ends_ends_the_client_with_its_reason(server):
    conn = psycopg.connect(server.dsn(), autocommit=True)
    with pytest.raises(psycopg.errors.AdminShutdown):
        conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    assert conn.closed
    conn = psycopg.connect(server.dsn())
    conn.execute("SET idle_in_transaction_session_timeout = 100")
    time.sleep(1)
    with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
        conn.execute("SELECT 1")
    assert conn.closed


def test_client_encodings_other_than_utf8(server, dsn):
    for conn in _both(server, dsn):
        with conn:
            conn.execute("SET client_encoding TO latin9")
            assert conn.info.encoding == "iso8859-15"
            assert conn.execute("SELECT 'caf\u00e9 \u20ac'").fetchone() == ("caf\u00e9 \u20ac",)
            with pytest.raises(psycopg.errors.RaiseException, match="\u20ac"):
                conn.execute("DO $$BEGIN RAISE EXCEPTION 'price in \u20ac'; END$$")
            conn.execute("SET client_encoding TO EUC_TW")  # no Python codec: PostgreSQL still takes it
            with pytest.raises(psycopg.NotSupportedError):
                conn.execute("SELECT 1")


def test_replication_connections_are_refused_at_once(server):
    with pytest.raises(psycopg.OperationalError, match="replication connections do not pass through"):
        psycopg.connect(server.dsn(replication="database"), connect_timeout=10)


def test_zero_column_rows(server, dsn):
    for conn in _both(server, dsn):
        with conn:
            assert list(conn.cursor().stream("SELECT")) == [()]
            assert conn.execute("SELECT", prepare=True).fetchall() == [()]


# ----------------------------------------------------------------------------- the server on those paths


def _stuck_sessions(served: Served) -> list[socket.socket]:
    """Sessions left in each protocol path: a COPY TO nobody reads, a COPY FROM STDIN waiting for
    data, a long query, an open transaction, a LISTEN, a pipeline without its Sync, a message
    cut in half, a portal suspended mid-result."""
    held = []
    for steps in (
        [_msg(b"Q", b"COPY (SELECT repeat('x', 1000) FROM generate_series(1, 200000)) TO STDOUT\0")],
        [_msg(b"Q", b"CREATE TEMP TABLE stuck (a int); COPY stuck FROM STDIN\0"), _msg(b"d", b"1\n")],
        [_msg(b"Q", b"SELECT pg_sleep(60)\0")],
        [_msg(b"Q", b"BEGIN; SELECT 1\0")],
        [_msg(b"Q", b"LISTEN stuck\0")],
        [_msg(b"P", b"\0SELECT 1\0" + struct.pack("!h", 0)) + _msg(b"B", b"\0\0" + struct.pack("!hhh", 0, 0, 0))],
        [_msg(b"Q", b"SELECT 1\0")[:7]],
        [_msg(b"Q", b"BEGIN\0"), _msg(b"P", b"\0SELECT generate_series(1, 1000)\0" + struct.pack("!h", 0))
         + _msg(b"B", b"p\0\0" + struct.pack("!hhh", 0, 0, 0)) + _msg(b"E", b"p\0" + struct.pack("!i", 5)) + _msg(b"S", b"")],
    ):
        conn, sock = _raw(served)
        conn.pgconn.nonblocking = 1  # psycopg keeps its socket: ours is a duplicate
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        for step in steps:
            sock.sendall(step)
            time.sleep(0.2)
        held.append(sock)
        held.append(conn)
    return held


def _cpu(served: Served) -> float:
    total = 0.0
    for p in [psutil.Process(served.process.pid), *psutil.Process(served.process.pid).children(recursive=True)]:
        times = p.cpu_times()
        total += times.user + times.system
    return total


def test_no_cpu_spent_after_clients_vanish_in_each_path(dsn, tmp_path):
    served = start_server(dsn, tmp_path, "--workers", "1")
    try:
        held = _stuck_sessions(served)
        time.sleep(1)
        for thing in held:
            thing.close()  # every one of them vanishes, mid-path
        time.sleep(2)  # the backends' queries are cancelled, the sessions closed
        before = _cpu(served)
        time.sleep(10)
        spent = _cpu(served) - before
        assert spent < 0.3, f"{spent:.2f} s of CPU in 10 s with no clients"
        with psycopg.connect(served.dsn(), autocommit=True) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND (query LIKE 'COPY%' OR query LIKE '%pg_sleep(60)%')").fetchone() == (0,)
    finally:
        stop_server(served)


def test_sigterm_ends_the_server_whatever_its_sessions_do(dsn, tmp_path):
    served = start_server(dsn, tmp_path, "--workers", "2")
    held = _stuck_sessions(served)
    try:
        start = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        served.process.wait(DRAIN_SECONDS + EXIT_SECONDS + 5)
        took = time.monotonic() - start
        assert took <= DRAIN_SECONDS + EXIT_SECONDS + 2, took
        assert served.process.returncode == 0, served.log_tail()
    finally:
        for thing in held:
            thing.close()
        if served.process.poll() is None:
            served.process.kill()
            pytest.fail("SIGTERM did not end the server: SIGKILL was needed")


def test_a_portal_read_a_page_at_a_time_runs_in_a_cursor(server):
    """JDBC with a fetch size: Execute with a row limit inside a transaction reads one page per
    Execute from a PostgreSQL cursor, never the whole result at once."""
    conn, sock = _raw(server)
    try:
        sock.sendall(_msg(b"Q", b"BEGIN\0"))
        _replies(sock)
        query = b"SELECT g, repeat('x', 10) FROM generate_series(1, $1::int) g"
        bind = _msg(b"B", b"big\0\0" + struct.pack("!hhi", 0, 1, 6) + b"100000" + struct.pack("!hh", 1, 1))  # binary results
        page = _msg(b"E", b"big\0" + struct.pack("!i", 1000))
        sock.sendall(_msg(b"P", b"\0" + query + b"\0" + struct.pack("!h", 0)) + bind + _msg(b"D", b"Pbig\0") + page + _msg(b"S", b""))
        replies = _replies(sock)
        assert [k for k, _ in replies][:3] == [b"1", b"2", b"T"] and [k for k, _ in replies][-2:] == [b"s", b"Z"]
        rows = [body for k, body in replies if k == b"D"]
        assert len(rows) == 1000 and rows[0][6:10] == struct.pack("!i", 1)  # binary int4, the first row
        sock.sendall(_msg(b"Q", b"SELECT count(*) FROM pg_cursors WHERE name LIKE 'sparsesql_portal_%'\0"))
        assert _replies(sock)[1][1].endswith(b"1")  # the portal is a cursor of this session
        sock.sendall(page + _msg(b"S", b""))
        rows = [body for k, body in _replies(sock) if k == b"D"]
        assert len(rows) == 1000 and rows[0][6:10] == struct.pack("!i", 1001)
        sock.sendall(_msg(b"C", b"Pbig\0") + _msg(b"S", b"") + _msg(b"Q", b"COMMIT\0"))
        assert [k for k, _ in _replies(sock)] == [b"3", b"Z"]
    finally:
        sock.close()
        conn.close()


def test_another_message_during_copy_in_fails_the_copy_and_leaves_nothing(server):
    conn, sock = _raw(server)
    try:
        sock.sendall(_msg(b"Q", b"CREATE TEMP TABLE interrupted (a int)\0"))
        _replies(sock)
        sock.sendall(_msg(b"Q", b"COPY interrupted FROM STDIN\0"))
        assert [k for k, _ in _replies(sock, until=b"G")] == [b"G"]
        sock.sendall(_msg(b"d", b"1\n") + _msg(b"Q", b"SELECT 1\0"))  # a Query where CopyData belongs
        replies = _replies(sock)
        assert [k for k, _ in replies] == [b"E", b"Z"] and b"unexpected message type 0x51 during COPY from stdin" in replies[0][1]
        sock.sendall(_msg(b"Q", b"SELECT count(*) FROM interrupted\0"))
        assert _replies(sock)[1][1].endswith(b"0")
    finally:
        sock.close()
        conn.close()
