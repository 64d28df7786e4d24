"""`sparsesql serve --workers 2`: clients spread over two worker processes sharing one port; a write
through one worker is seen by the next search through the other; a CancelRequest reaches the
worker that holds the session; metrics count every worker; a worker killed with SIGKILL is
replaced and only its own clients lose their connection; SIGTERM lets a running statement finish."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import psycopg
import pytest

from tests.conftest import Served, start_server, stop_server


@pytest.fixture(scope="module")
def pool(dsn: str, tmp_path_factory: pytest.TempPathFactory):
    served = start_server(dsn, tmp_path_factory.mktemp("pool"), "--workers", "2")
    yield served
    stop_server(served)


def workers(served: Served) -> list[psutil.Process]:
    return psutil.Process(served.process.pid).children()


def owner(served: Served, conn: psycopg.Connection) -> int:
    """The pid of the worker holding this client's connection."""
    with socket.socket(fileno=os.dup(conn.pgconn.socket)) as own:
        local = own.getsockname()[1]
    for worker in workers(served):
        if any(c.raddr and c.raddr.port == local for c in worker.net_connections("tcp")):
            return worker.pid
    raise AssertionError("no worker holds the connection")


def spread(served: Served, count: int = 12) -> dict[int, list[psycopg.Connection]]:
    """Connections until both workers hold at least one, by worker pid."""
    by_worker: dict[int, list[psycopg.Connection]] = {}
    for _ in range(count * 4):
        conn = psycopg.connect(served.dsn(), autocommit=True)
        by_worker.setdefault(owner(served, conn), []).append(conn)
        if len(by_worker) == 2 and sum(map(len, by_worker.values())) >= count:
            break
    assert len(by_worker) == 2, "the kernel gave every connection to one worker"
    return by_worker


def test_a_write_through_one_worker_is_seen_through_the_other(pool, db, name):
    coll = db.create_collection(name, {"body": "text"}, dense="none", dim=8)
    rng = np.random.default_rng(3)
    coll.add([{"id": f"d{i}", "body": f"common words {i}", "vector": rng.standard_normal(8).tolist()} for i in range(50)])
    by_worker = spread(pool)
    first, second = (conns[0] for conns in by_worker.values())
    search = f"SELECT id FROM {name} SEARCH HYBRID(SPARSE('zebra'), DENSE(%s)) LIMIT 3"
    v = str(rng.standard_normal(8).tolist())
    for conn in (first, second):  # both workers load their tiers first
        assert "fresh" not in [r[0] for r in conn.execute(search, [v]).fetchall()]
    first.execute(f"INSERT INTO {name} (id, body, embedding) VALUES ('fresh', 'zebra crossing', %s)", [v])
    assert second.execute(search, [v]).fetchall()[0][0] == "fresh"
    first.execute(f"DELETE FROM {name} WHERE id = 'fresh'")
    assert "fresh" not in [r[0] for r in second.execute(search, [v]).fetchall()]
    for conns in by_worker.values():
        for conn in conns:
            conn.close()


def test_cancel_reaches_the_worker_that_holds_the_session(pool, dsn):
    by_worker = spread(pool, 6)
    with psycopg.connect(dsn, autocommit=True) as watcher:
        for conns in by_worker.values():
            for conn in conns:
                pid = conn.info.backend_pid

                def cancel_once_running() -> None:
                    # a cancel that arrives before the statement runs cancels nothing, as in PostgreSQL
                    for _ in range(200):
                        if watcher.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s AND query LIKE '%%pg_sleep%%' "
                                           "AND state = 'active'", (pid,)).fetchone():
                            break
                        time.sleep(0.05)
                    conn.cancel_safe()

                canceller = threading.Thread(target=cancel_once_running)
                canceller.start()
                start = time.monotonic()
                with pytest.raises(psycopg.errors.QueryCanceled):
                    conn.execute("SELECT pg_sleep(20)")
                assert time.monotonic() - start < 10
                canceller.join()
                conn.close()


def test_metrics_count_every_worker(pool):
    def searches() -> float:
        text = urllib.request.urlopen(f"{pool.http}/metrics", timeout=10).read().decode()
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith('sparsesql_queries_total{door="wire",kind="show"}'))

    before = searches()
    by_worker = spread(pool, 6)
    conns = [c for cs in by_worker.values() for c in cs]
    for conn in conns:
        conn.execute("SHOW COLLECTIONS").fetchall()
        conn.close()
    assert searches() - before == len(conns)


def test_a_killed_worker_is_replaced_and_only_its_clients_are_cut(pool):
    by_worker = spread(pool, 6)
    (victim, lost), (_, kept) = by_worker.items()
    psutil.Process(victim).kill()
    for conn in lost:
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    for conn in kept:
        assert conn.execute("SELECT 2").fetchone() == (2,)
        conn.close()
    deadline = time.monotonic() + 30
    while len(workers(pool)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(workers(pool)) == 2 and victim not in {w.pid for w in workers(pool)}
    for _ in range(6):
        with psycopg.connect(pool.dsn(), autocommit=True) as conn:
            assert conn.execute("SELECT 3").fetchone() == (3,)
    assert "ended (signal SIGKILL); starting another" in pool.log_tail()


def test_sigterm_lets_a_running_statement_finish(dsn, tmp_path):
    served = start_server(dsn, tmp_path, "--workers", "2")
    pids = [w.pid for w in workers(served)]
    conn = psycopg.connect(served.dsn(), autocommit=True)
    got = {}
    thread = threading.Thread(target=lambda: got.update(row=conn.execute("SELECT 'done' FROM pg_sleep(1.5)").fetchone()))
    thread.start()
    time.sleep(0.5)
    stop_server(served)
    thread.join(10)
    assert got.get("row") == ("done",)
    assert served.process.returncode == 0
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)


def test_a_second_server_on_the_port_is_refused_not_sharing_it(pool, dsn):
    for workers in ("2", "1"):
        second = subprocess.run([str(Path(sys.executable).with_name("sparsesql")), "--dsn", dsn, "serve", "--port", str(pool.port),
                                 "--workers", workers], capture_output=True, text=True, timeout=120)
        assert second.returncode != 0
        assert f"cannot listen on 127.0.0.1:{pool.port}" in second.stderr and "Traceback" not in second.stderr
