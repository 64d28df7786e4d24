"""`sparsesql serve` under load, beside the same work done in-process, measured in the same run.

    .venv/bin/python benchmarks/server.py [--docs 20000] [--clients 32] [--seconds 60] [--quick]

A fresh embedded PostgreSQL in benchmarks/.cache/server/home (git-ignored; removed afterwards
unless --keep-home) holds one collection `serve_bench (title text, body text)` with
`dense => 'none', dim => 384`, loaded with --docs documents of benchmarks/synthetic.py (text
split into title = first 6 words and body = the rest, vectors supplied: no model is ever
loaded). `sparsesql --dsn <embedded> serve --port 0` then runs as a subprocess, its stderr in
benchmarks/.cache/server/serve.log; the superuser gets the password 'bench' for SCRAM.

Measured, in this order:
- memory: the server's RSS (VmRSS) before any client, after a first search (which loads the
  shared memory tier), while 4 separate client processes are connected (each having run 50
  searches), and after they leave; beside 4 processes that each hold their own tier
  (`sparsesql.connect(dsn, sparse_tier=True)`), each one's RSS growth over its first search.
- wire overhead: one client, one statement at a time, the same statement repeated (warm-up,
  then --repeat timed runs), alternating server and in-process (a Database with the tier) run by
  run: SPARSE (psycopg prepares it after 5 runs, as by default; and a client that never
  prepares), HYBRID, and `SELECT 1` relayed vs sent straight to PostgreSQL. The results of a
  set of searches are also compared, row by row, between the two paths.
- load: --clients concurrent clients for --seconds, each its own psycopg connection to the
  server (one thread each), looping over a fixed mix: 9 in 10 operations searches (SPARSE and
  HYBRID(SPARSE, DENSE(vector), rrf) alternately, queries from synthetic.queries), 1 in 10 an
  INSERT of a new document with a unique id through the dialect's
  `INSERT INTO serve_bench (id, title, body, embedding) VALUES (%s, %s, %s, %s)`. Then the same
  mix in-process as the anchor: --clients threads, each with its own
  `sparsesql.connect(dsn, sparse_tier=True)`, through db.query (the same statements, so the
  same engine path). Every operation's latency and error is recorded. Each in-process tier
  loads from the shared snapshot, then saves its own (after a compaction) to a folder of its
  own (tiers sharing SPARSESQL_HOME/tiers collided in Tiers._save until each writer got a
  temporary file of its own; --shared-snapshots shares the folder).
  CPU seconds over each load are read from /proc per process (this process, the server, this
  run's PostgreSQL) and for the whole machine, so work that ran outside them shows.
- after each load: no errors; every inserted id present exactly once; the catalog's n_docs and
  sum_len equal the documents table's count(*) and sum(doc_len); every vocabulary df equals the
  count recomputed from the documents' term arrays; the postings' total equals the term arrays'.

Writes benchmarks/results/server.{md,json}; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import synthetic  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache" / "server"
RESULTS = ROOT / "benchmarks" / "results"
COLL = "serve_bench"
PASSWORD = "bench"
K = 10
INSERT_EVERY = 10  # one operation in this many is an INSERT
MEMORY_CLIENTS = 4
MEMORY_SEARCHES = 50

SPARSE = f"SELECT id, score FROM {COLL} SEARCH SPARSE({{q}}) LIMIT {K}"
HYBRID = f"SELECT id, score FROM {COLL} SEARCH HYBRID(SPARSE({{q}}), DENSE({{v}}), fusion => rrf()) LIMIT {K}"
INSERT = f"INSERT INTO {COLL} (id, title, body, embedding) VALUES ({{id}}, {{title}}, {{body}}, {{embedding}})"


def wire(template: str) -> str:
    """The statement as a psycopg client writes it (%s placeholders, sent as $n)."""
    return re.sub(r"\{\w+\}", "%s", template)


def local(template: str) -> str:
    """The statement as db.query takes it (:name placeholders)."""
    return re.sub(r"\{(\w+)\}", r":\1", template)


def stats(ms: list[float]) -> dict:
    if not ms:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "mean": None}
    a = np.asarray(ms)
    return {"n": len(ms), "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}


def cpu_s(pid: int | str) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_s() -> tuple[float, float]:
    """CPU seconds the whole machine has spent in processes (user, nice, system) and outside any
    (irq, softirq: loopback TCP among them; steal), all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = [int(x) for x in f.readline().split()[1:9]]
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system) / tick, (irq + softirq + steal) / tick


def _postmaster_pid() -> int | None:
    try:
        return int((Path(os.environ["SPARSESQL_HOME"]) / "pgdata" / "postmaster.pid").read_text().split()[0])
    except (KeyError, OSError, ValueError, IndexError):
        return None


def cpu_by_process(server_pid: int | None) -> dict:
    """CPU seconds so far: the benchmark's own process (clients, or the in-process engine), the
    server, this run's PostgreSQL (its postmaster and the processes it forked) and, for
    comparison, the whole machine (anything else running shows as the difference)."""
    postmaster, pg = _postmaster_pid(), 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                if postmaster is not None and (int(entry) == postmaster or ppid == postmaster):
                    pg += cpu_s(entry)
            except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
                pass
    in_processes, outside = _machine_s()
    out = {"benchmark_process": cpu_s("self"), "postgres": pg, "machine": in_processes, "irq_softirq_steal": outside}
    if server_pid is not None:
        try:
            out["server"] = cpu_s(server_pid)
        except FileNotFoundError:
            pass
    return out


def rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


# ----------------------------------------------------------------------------- setup


def documents(first: int, count: int) -> list[dict]:
    """Synthetic documents first .. first + count - 1 as collection rows (title, body, vector)."""
    out = []
    for start in range(first, first + count, 5000):
        b = synthetic.make_batch(start, min(first + count, start + 5000))
        for i, text in enumerate(b.texts()):
            words = text.split(" ")
            out.append({"id": f"d{start + i}", "title": " ".join(words[:6]), "body": " ".join(words[6:]),
                        "vector": b.vectors[i]})
    return out


def setup(home: Path, n_docs: int) -> tuple[str, dict]:
    """A fresh embedded PostgreSQL in `home` with the loaded collection; its DSN and timings."""
    if home.exists():
        from sparsesql.db import embedded

        embedded.stop(home)
        shutil.rmtree(home)
    home.mkdir(parents=True)
    os.environ["SPARSESQL_HOME"] = str(home)
    os.environ.pop("SPARSESQL_DSN", None)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import sparsesql
    from sparsesql.db import embedded

    started = time.perf_counter()
    dsn = embedded.start(home)
    pg_s = time.perf_counter() - started
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"ALTER ROLE {conn.info.user} PASSWORD '{PASSWORD}'")
        max_connections = int(conn.execute("SHOW max_connections").fetchone()[0])
    db = sparsesql.connect(dsn, sparse_tier=False)
    coll = db.create_collection(COLL, {"title": "text", "body": "text"}, dense="none", dim=synthetic.DIM)
    started = time.perf_counter()
    docs = documents(0, n_docs)
    gen_s = time.perf_counter() - started
    started = time.perf_counter()
    for lo in range(0, n_docs, 5000):
        coll.add(docs[lo:lo + 5000], batch_size=5000)
    ingest_s = time.perf_counter() - started
    db.conn.execute(f'ANALYZE sparsesql."{COLL}__postings"')
    db.conn.execute(f'ANALYZE sparsesql."{COLL}__docs"')
    db.close()
    # the tier's snapshot, so that the server and every in-process tier load from it alike
    tiered = sparsesql.connect(dsn, sparse_tier=True)
    tiered.query(local(SPARSE), q="alpha")
    snapshot = tiered.tiers.loaded[(COLL, 0)].source
    tiered.close()
    return dsn, {"postgres_start_s": pg_s, "generate_s": gen_s, "ingest_s": ingest_s,
                 "ingest_docs_per_s": n_docs / ingest_s, "max_connections": max_connections,
                 "tier_snapshot_written_by": snapshot}


class Served:
    def __init__(self, dsn: str, log: Path) -> None:
        self.log = log
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        env.pop("SPARSESQL_DSN", None)
        command = [str(Path(sys.executable).with_name("sparsesql")), "--dsn", dsn, "serve", "--port", "0", "--http-port", "0"]
        self.command = command
        with log.open("w") as err:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, env=env, text=True)
        deadline = time.monotonic() + 120
        self.port = None
        while time.monotonic() < deadline and self.process.poll() is None:
            ready, _, _ = select.select([self.process.stdout], [], [], 1.0)
            if ready:
                line = self.process.stdout.readline()
                match = re.search(r"listening on ([\d.]+):(\d+), database '([^']+)'", line)
                if match:
                    self.host, self.port, self.database = match.group(1), int(match.group(2)), match.group(3)
                    http = re.search(r"on http://([\d.]+):(\d+)/", self.process.stdout.readline())  # written with the first line
                    self.http = f"http://{http.group(1)}:{http.group(2)}" if http else None
                    break
        if self.port is None:
            self.process.kill()
            raise RuntimeError(f"sparsesql serve did not start:\n{self.log_tail()}")
        self.user = "postgres"

    @property
    def pid(self) -> int:
        return self.process.pid

    def dsn(self) -> str:
        return make_conninfo(host=self.host, port=self.port, dbname=self.database, user=self.user,
                             password=PASSWORD, sslmode="disable")

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ----------------------------------------------------------------------------- clients


class ServerClient:
    """One psycopg connection to `sparsesql serve`."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)

    def sparse(self, q: dict) -> list:
        return self.conn.execute(wire(SPARSE), (q["text"],)).fetchall()

    def hybrid(self, q: dict) -> list:
        return self.conn.execute(wire(HYBRID), (q["text"], q["vlist"])).fetchall()

    def insert(self, doc: dict) -> None:
        cur = self.conn.execute(wire(INSERT), (doc["id"], doc["title"], doc["body"], doc["vlist"]))
        if cur.statusmessage != "INSERT 0 1":
            raise AssertionError(f"INSERT of {doc['id']} answered {cur.statusmessage!r}")

    def warmed(self) -> None:
        pass

    def close(self) -> None:
        self.conn.close()


class HttpClient:
    """One httpx client of the HTTP API (keep-alive, a bearer token), the same statements as db.query takes."""

    def __init__(self, base: str, token: str) -> None:
        import httpx

        self.http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120)

    def _query(self, statement: str, **params) -> dict:
        answer = self.http.post("/query", json={"sql": statement, "params": params})
        if answer.status_code != 200:
            raise AssertionError(f"HTTP {answer.status_code}: {answer.text[:300]}")
        return answer.json()

    def sparse(self, q: dict) -> list:
        return [(r["id"], r["score"]) for r in self._query(local(SPARSE), q=q["text"])["rows"]]

    def hybrid(self, q: dict) -> list:
        return [(r["id"], r["score"]) for r in self._query(local(HYBRID), q=q["text"], v=q["vlist"])["rows"]]

    def insert(self, doc: dict) -> None:
        rows = self._query(local(INSERT), id=doc["id"], title=doc["title"], body=doc["body"], embedding=doc["vlist"])["rows"]
        if rows[0]["added"] != 1:
            raise AssertionError(f"INSERT of {doc['id']} answered {rows[0]!r}")

    def warmed(self) -> None:
        pass

    def close(self) -> None:
        self.http.close()


class LocalClient:
    """One in-process Database with its own memory tier, as the server's sessions use one.

    `snapshot_home`: once warm (its tier loaded from the shared snapshot), the tier writes its
    later snapshots (after each compaction) there instead of SPARSESQL_HOME/tiers, which every
    Database of the process shares (Tiers._save once wrote a fixed `index.tmp.npz`, so two tiers
    compacting at once collided; each writer now has its own temporary file).
    """

    def __init__(self, dsn: str, snapshot_home: Path | None = None) -> None:
        import sparsesql

        self.db = sparsesql.connect(dsn, sparse_tier=True)
        self.snapshot_home = snapshot_home

    def warmed(self) -> None:
        if self.snapshot_home is not None:
            self.db.tiers.home = self.snapshot_home

    def sparse(self, q: dict) -> list:
        return [(r["id"], r["score"]) for r in self.db.query(local(SPARSE), q=q["text"])]

    def hybrid(self, q: dict) -> list:
        return [(r["id"], r["score"]) for r in self.db.query(local(HYBRID), q=q["text"], v=q["vector"])]

    def insert(self, doc: dict) -> None:
        rows = self.db.query(local(INSERT), id=doc["id"], title=doc["title"], body=doc["body"], embedding=doc["vlist"])
        if rows[0]["added"] != 1:
            raise AssertionError(f"INSERT of {doc['id']} answered {dict(rows[0])!r}")

    def close(self) -> None:
        self.db.close()


def load(make_client, n_clients: int, seconds: float, queries: list[dict], pool: list[dict], prefix: str,
         server_pid: int | None = None) -> dict:
    """n_clients threads, each its own client, looping over the mix for `seconds`."""
    clients: list = [None] * n_clients
    setup_errors: list[str] = []

    def connect(i: int) -> None:
        try:
            c = make_client(i)
            c.sparse(queries[i % len(queries)])  # warm-up, not timed: connection, tier, statement
            c.hybrid(queries[(i + 1) % len(queries)])
            c.warmed()
            clients[i] = c
        except Exception as exc:  # noqa: BLE001
            setup_errors.append(f"client {i}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=connect, args=(i,)) for i in range(n_clients)]
    connect_start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    connect_s = time.perf_counter() - connect_start
    if setup_errors:
        for c in clients:
            if c is not None:
                c.close()
        return {"setup_errors": setup_errors, "errors": setup_errors, "inserted": [], "ops": {}}

    records: list[list[tuple]] = [[] for _ in range(n_clients)]
    inserted: list[list[str]] = [[] for _ in range(n_clients)]
    barrier = threading.Barrier(n_clients + 1)
    state = {"t0": 0.0, "deadline": 0.0}

    def worker(i: int) -> None:
        c, rec, rng = clients[i], records[i], random.Random(i)
        barrier.wait()
        k = 0
        while time.perf_counter() < state["deadline"]:
            if k % INSERT_EVERY == INSERT_EVERY - 1:
                kind = "insert"
                n = k // INSERT_EVERY
                doc = pool[(n * n_clients + i) % len(pool)]
                doc = {"id": f"{prefix}-{i}-{n}", "title": doc["title"], "body": doc["body"], "vlist": doc["vector"].tolist()}
            else:
                kind = "sparse" if (k - k // INSERT_EVERY) % 2 == 0 else "hybrid"
                q = queries[rng.randrange(len(queries))]
            start = time.perf_counter()
            error = None
            try:
                if kind == "insert":
                    c.insert(doc)
                elif kind == "sparse":
                    c.sparse(q)
                else:
                    c.hybrid(q)
            except Exception as exc:  # noqa: BLE001
                error = f"{type(exc).__name__}: {str(exc).strip()[:500]}"
            end = time.perf_counter()
            if kind == "insert" and error is None:
                inserted[i].append(doc["id"])
            rec.append((kind, start - state["t0"], (end - start) * 1000, end - state["t0"], error))
            k += 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n_clients)]
    for t in threads:
        t.start()
    cpu_before = cpu_by_process(server_pid)
    state["t0"] = time.perf_counter()
    state["deadline"] = state["t0"] + seconds
    barrier.wait()
    hung = []
    for i, t in enumerate(threads):
        t.join(timeout=max(0.0, state["deadline"] + 120 - time.perf_counter()))
        if t.is_alive():
            hung.append(i)
    cpu_after = cpu_by_process(server_pid)
    cpu_after_t = time.perf_counter()
    flat = [r for rec in records for r in rec]
    elapsed = max((r[3] for r in flat), default=seconds)
    errors = [f"{kind} at {t:.2f}s: {e}" for kind, t, _, _, e in flat if e]
    errors += [f"client {i} still inside an operation 120 s after the deadline (hang)" for i in hung]
    ok = [r for r in flat if r[4] is None]
    by_kind = {kind: [r[2] for r in ok if r[0] == kind] for kind in ("sparse", "hybrid", "insert")}
    out = {
        "clients": n_clients,
        "seconds": seconds,
        "elapsed_s": elapsed,
        "connect_and_warmup_s": connect_s,
        "ops": {kind: stats(ms) for kind, ms in by_kind.items()},
        "search": stats(by_kind["sparse"] + by_kind["hybrid"]),
        "completed": len(ok),
        "ops_per_s": len(ok) / elapsed,
        "searches_per_s": (len(by_kind["sparse"]) + len(by_kind["hybrid"])) / elapsed,
        "inserts_per_s": len(by_kind["insert"]) / elapsed,
        "errors": errors,
        "error_count": len(errors),
        "hung_clients": hung,
        "inserted": [x for ids in inserted for x in ids],
    }
    used = {k: cpu_after[k] - cpu_before[k] for k in cpu_after if k in cpu_before}
    machine, outside = used.pop("machine"), used.pop("irq_softirq_steal")
    used["other processes"] = max(0.0, machine - sum(used.values()))
    used["irq/softirq/steal"] = outside
    out["cpu_s"] = used
    out["cpu_ms_per_op"] = {k: 1000 * v / max(len(ok), 1) for k, v in used.items()}
    out["cpu_share_of_machine"] = (machine + outside) / (os.cpu_count() * (cpu_after_t - state["t0"]))
    if not hung:
        for c in clients:
            c.close()
    return out


# ----------------------------------------------------------------------------- checks


def check_state(dsn: str, inserted: list[str], expected_docs: int) -> dict:
    """Counts and statistics on the backing database, recomputed from the documents."""
    docs, vocab, postings = (f'sparsesql."{COLL}__{t}"' for t in ("docs", "vocab", "postings"))
    with psycopg.connect(dsn, autocommit=True) as conn:
        total, distinct, sum_len, terms = conn.execute(
            f"SELECT count(*), count(DISTINCT id), coalesce(sum(doc_len), 0), coalesce(sum(cardinality(term_ids)), 0) FROM {docs}"
        ).fetchone()
        found, found_distinct = conn.execute(f"SELECT count(*), count(DISTINCT id) FROM {docs} WHERE id = ANY(%s)", (inserted,)).fetchone()
        n_docs, cat_sum_len = conn.execute("SELECT n_docs, sum_len FROM sparsesql.collections WHERE name = %s", (COLL,)).fetchone()
        df_rows, df_wrong, df_examples = conn.execute(
            f"""WITH r AS (SELECT t AS term_id, count(DISTINCT d.doc_id) AS n FROM {docs} d, unnest(d.term_ids) AS t GROUP BY t),
                    j AS (SELECT coalesce(v.term_id, r.term_id) AS term_id, coalesce(v.df, 0) AS df, coalesce(r.n, 0) AS n,
                                 v.term_id IS NULL AS missing
                          FROM {vocab} v FULL JOIN r ON r.term_id = v.term_id)
                SELECT count(*), count(*) FILTER (WHERE df <> n OR missing),
                       (array_agg(format('term %s: df %s, recomputed %s', term_id, df, n)) FILTER (WHERE df <> n OR missing))[1:5]
                FROM j"""
        ).fetchone()
        posting_total = conn.execute(f"SELECT coalesce(sum(cardinality(doc_ids)), 0) FROM {postings}").fetchone()[0]
    checks = {
        "inserted ids present exactly once": found == len(inserted) and found_distinct == len(inserted) and len(set(inserted)) == len(inserted),
        "documents table: count(*) = count(DISTINCT id)": total == distinct,
        "documents = loaded + inserted": total == expected_docs,
        "catalog n_docs = count(*)": n_docs == total,
        "catalog sum_len = sum(doc_len)": cat_sum_len == sum_len,
        "vocabulary df = recomputed from term_ids": df_wrong == 0,
        "postings total = term arrays' total": posting_total == terms,
    }
    return {
        "checks": checks,
        "values": {"inserted": len(inserted), "inserted_found": found, "inserted_found_distinct": found_distinct,
                   "docs": total, "docs_distinct_ids": distinct, "expected_docs": expected_docs, "catalog_n_docs": n_docs,
                   "sum_doc_len": int(sum_len), "catalog_sum_len": cat_sum_len, "vocab_terms": df_rows,
                   "df_mismatches": df_wrong, "df_mismatch_examples": df_examples or [],
                   "postings": int(posting_total), "term_array_entries": int(terms)},
    }


# ----------------------------------------------------------------------------- wire overhead


def overhead(server: Served, dsn: str, queries: list[dict], repeat: int, warmup: int = 50) -> dict:
    """One client, sequential: the same statement through the server and in-process, alternating."""
    remote = ServerClient(server.dsn())
    unprepared = ServerClient(server.dsn())
    unprepared.conn.prepare_threshold = None  # Parse + Bind + Describe + Execute every time
    mine = LocalClient(dsn)
    mine_unprepared = LocalClient(dsn)
    mine_unprepared.db.conn.prepare_threshold = None  # as the server sets its backend sessions
    direct = psycopg.connect(dsn, autocommit=True)
    q = queries[0]
    cases = {
        "SPARSE (memory tier)": (lambda: remote.sparse(q), lambda: mine.sparse(q)),
        "SPARSE, client never prepares (prepare_threshold=None)": (lambda: unprepared.sparse(q), lambda: mine.sparse(q)),
        "HYBRID rrf (tier + exact dense)": (lambda: remote.hybrid(q), lambda: mine.hybrid(q)),
        "diagnostic: SPARSE in-process, engine's statements never prepared (the server's backend setting) vs default": (
            lambda: mine_unprepared.sparse(q), lambda: mine.sparse(q)),
        "SELECT 1 (relayed vs straight to PostgreSQL)": (
            lambda: remote.conn.execute("SELECT 1").fetchall(), lambda: direct.execute("SELECT 1").fetchall()),
    }
    out = {}
    for name, (a, b) in cases.items():
        for _ in range(warmup):
            a()
            b()
        ta, tb = [], []
        for _ in range(repeat):
            s = time.perf_counter()
            a()
            ta.append((time.perf_counter() - s) * 1000)
            s = time.perf_counter()
            b()
            tb.append((time.perf_counter() - s) * 1000)
        sa, sb = stats(ta), stats(tb)
        out[name] = {"server": sa, "in_process": sb, "added_p50_ms": sa["p50"] - sb["p50"], "added_p95_ms": sa["p95"] - sb["p95"]}
    # the same results both ways, on a set of queries (same database state)
    mismatches = []
    for qq in queries[:40]:
        for kind in ("sparse", "hybrid"):
            got, want = getattr(remote, kind)(qq), getattr(mine, kind)(qq)
            if [r[0] for r in got] != [r[0] for r in want] or not np.allclose([r[1] for r in got], [r[1] for r in want], rtol=1e-9, atol=0):
                mismatches.append({"query": qq["id"], "kind": kind, "server": [list(r) for r in got], "in_process": [list(r) for r in want]})
    remote.close()
    unprepared.close()
    mine.close()
    mine_unprepared.close()
    direct.close()
    return {"repeat": repeat, "warmup": warmup, "query": q["text"], "cases": out,
            "result_compare": {"queries": min(40, len(queries)), "kinds": 2, "mismatches": mismatches}}


def c_client(server: Served, dsn: str, q: dict, repeat: int) -> dict | None:
    """The same SPARSE search from a client written in C (pgbench, prepared statements) through
    the server, beside db.query in-process: how much of the wire overhead is the server's, with a
    driver that costs little of its own. None when pgbench is not installed."""
    pgbench = shutil.which("pgbench")
    if pgbench is None:
        return None
    text = SPARSE.format(q="'" + q["text"].replace("'", "''") + "'")
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "search.sql"
        script.write_text(text + ";\n")
        env = {**os.environ, "PGPASSWORD": PASSWORD}
        subprocess.run(
            [pgbench, "-n", "-M", "prepared", "-t", str(repeat + 50), "-f", str(script), "-l", "--log-prefix", str(Path(folder) / "log"),
             "-h", server.host, "-p", str(server.port), "-U", server.user, server.database],
            env=env, check=True, capture_output=True, text=True, cwd=folder,
        )
        latencies = [int(line.split()[2]) / 1000 for log in Path(folder).glob("log*") for line in log.read_text().splitlines()]
    mine = LocalClient(dsn)
    try:
        for _ in range(50):
            mine.db.query(text)
        local_ms = []
        for _ in range(repeat):
            start = time.perf_counter()
            mine.db.query(text)
            local_ms.append((time.perf_counter() - start) * 1000)
    finally:
        mine.close()
    sa, sb = stats(latencies[50:]), stats(local_ms)
    return {"server": sa, "in_process": sb, "added_p50_ms": sa["p50"] - sb["p50"], "added_p95_ms": sa["p95"] - sb["p95"]}


# ----------------------------------------------------------------------------- memory

_SERVER_CLIENT = """
import json, sys, psycopg
def rss():
    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS:')) / 1024
dsn, statement, texts, n = json.loads(sys.argv[1])
conn = psycopg.connect(dsn, autocommit=True)
for i in range(n):
    conn.execute(statement, (texts[i % len(texts)],)).fetchall()
print(json.dumps({"rss_mb": rss()}), flush=True)
sys.stdin.readline()
conn.close()
"""

_LOCAL_CLIENT = """
import json, sys
def rss():
    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS:')) / 1024
dsn, statement, texts, n, coll = json.loads(sys.argv[1])
import sparsesql
db = sparsesql.connect(dsn, sparse_tier=True)
db.query("SELECT id FROM " + coll + " LIMIT 1")
before = rss()
db.query(statement, q=texts[0])
first = rss()
for i in range(1, n):
    db.query(statement, q=texts[i % len(texts)])
loaded = db.tiers.loaded[(coll, 0)]
print(json.dumps({"rss_before_mb": before, "rss_after_first_mb": first, "rss_mb": rss(),
                  "tier_bytes": loaded.memory_bytes(), "tier_source": loaded.source}), flush=True)
sys.stdin.readline()
db.close()
"""


def _run_clients(code: str, args: list, count: int) -> tuple[list[subprocess.Popen], list[dict]]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", code, json.dumps(args)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(count)]
    reports = []
    for p in procs:
        line = p.stdout.readline()
        if not line:
            raise RuntimeError(f"a memory client failed:\n{p.stderr.read()[-3000:]}")
        reports.append(json.loads(line))
    return procs, reports


def _release(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.stdin.write("\n")
        p.stdin.flush()
    for p in procs:
        p.wait(60)


def memory_server(server: Served, queries: list[dict]) -> dict:
    texts = [q["text"] for q in queries[:MEMORY_SEARCHES]]
    time.sleep(0.5)
    r0 = rss_mb(server.pid)
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(wire(SPARSE), (texts[0],)).fetchall()
    time.sleep(0.5)
    r1 = rss_mb(server.pid)
    procs, reports = _run_clients(_SERVER_CLIENT, [server.dsn(), wire(SPARSE), texts, MEMORY_SEARCHES], MEMORY_CLIENTS)
    time.sleep(0.5)
    r2 = rss_mb(server.pid)
    _release(procs)
    time.sleep(1.0)
    r3 = rss_mb(server.pid)
    return {"server_rss_start_mb": r0, "server_rss_after_first_search_mb": r1, "server_rss_with_clients_mb": r2,
            "server_rss_after_clients_left_mb": r3, "tier_load_mb": r1 - r0,
            "server_growth_per_client_mb": (r2 - r1) / MEMORY_CLIENTS,
            "client_process_rss_mb": [r["rss_mb"] for r in reports]}


def memory_local(dsn: str, queries: list[dict]) -> dict:
    texts = [q["text"] for q in queries[:MEMORY_SEARCHES]]
    procs, reports = _run_clients(_LOCAL_CLIENT, [dsn, local(SPARSE), texts, MEMORY_SEARCHES, COLL], MEMORY_CLIENTS)
    _release(procs)
    growth = [r["rss_after_first_mb"] - r["rss_before_mb"] for r in reports]
    return {"processes": reports, "growth_over_first_search_mb": growth, "mean_growth_mb": float(np.mean(growth)),
            "tier_mb": reports[0]["tier_bytes"] / 2**20, "client_process_rss_mb": [r["rss_mb"] for r in reports]}


# ----------------------------------------------------------------------------- report


def fmt(s: dict | None, key: str = "p50") -> str:
    return "–" if not s or s.get(key) is None else f"{s[key]:.2f}"


def pair(s: dict | None) -> str:
    return "–" if not s or s.get("p50") is None else f"{s['p50']:.2f} / {s['p95']:.2f}"


def report(r: dict) -> str:
    srv, web, loc = r["load"]["server"], r["load"]["http"], r["load"]["in_process"]
    lines = [
        f"## sparsesql serve under load, {r['date']}",
        "",
        f"`{r['command']}` at commit {r.get('git', 'unknown')}, on {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs (clients, server and "
        f"PostgreSQL share them). Collection `{COLL}`: {r['docs']:,} synthetic documents (benchmarks/synthetic.py), "
        f"384-d vectors supplied (`dense => 'none'`, no model loaded), memory tier on in both paths; exact dense. "
        f"Latency in ms (p50 / p95); ratio = server / in-process in the same run.",
        "",
        f"### Load: {srv.get('clients')} concurrent clients, {r['seconds']:.0f} s each path",
        "",
        f"Mix per client: 9 in 10 operations searches (SPARSE and HYBRID(SPARSE, DENSE(vector), rrf) alternately, "
        f"{r['n_queries']} synthetic queries drawn at random), 1 in 10 an `INSERT INTO {COLL} (id, title, body, embedding)` "
        f"of a new document with a unique id.",
        "",
        "| path | ops/s | searches/s | inserts/s | search | SPARSE | HYBRID | INSERT | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, x in (("sparsesql serve: psycopg clients, one connection each", srv),
                    ("sparsesql serve --http-port: httpx clients (keep-alive, bearer token), POST /query", web),
                    ("in-process: threads, own `sparsesql.connect(dsn, sparse_tier=True)` each", loc)):
        if not x.get("ops"):
            lines.append(f"| {name} | – | – | – | – | – | – | – | {len(x.get('errors', []))} (setup) |")
            continue
        lines.append(
            f"| {name} | {x['ops_per_s']:.0f} | {x['searches_per_s']:.0f} | {x['inserts_per_s']:.1f} | {pair(x['search'])} | "
            f"{pair(x['ops']['sparse'])} | {pair(x['ops']['hybrid'])} | {pair(x['ops']['insert'])} | {x['error_count']} |"
        )
    if srv.get("ops") and loc.get("ops"):
        ratio = lambda a, b: f"{a / b:.2f}x" if a and b else "–"  # noqa: E731
        lines += [
            "",
            f"- server / in-process: ops/s {ratio(srv['ops_per_s'], loc['ops_per_s'])}, "
            f"search p50 {ratio(srv['search']['p50'], loc['search']['p50'])}, p95 {ratio(srv['search']['p95'], loc['search']['p95'])}; "
            f"INSERT p50 {ratio(srv['ops']['insert']['p50'], loc['ops']['insert']['p50'])}, "
            f"p95 {ratio(srv['ops']['insert']['p95'], loc['ops']['insert']['p95'])}",
            (f"- HTTP / in-process: ops/s {ratio(web['ops_per_s'], loc['ops_per_s'])}, search p50 {ratio(web['search']['p50'], loc['search']['p50'])}, "
             f"p95 {ratio(web['search']['p95'], loc['search']['p95'])}; HTTP / wire: search p50 {ratio(web['search']['p50'], srv['search']['p50'])}, "
             f"p95 {ratio(web['search']['p95'], srv['search']['p95'])}; {web['completed']:,} HTTP operations ({web['ops']['insert']['n']:,} inserts)")
            if web.get("ops") else "- HTTP: no operation completed",
            f"- operations completed: server {srv['completed']:,} ({srv['ops']['insert']['n']:,} inserts), "
            f"in-process {loc['completed']:,} ({loc['ops']['insert']['n']:,} inserts); connect + warm-up "
            f"{srv['connect_and_warmup_s']:.1f} s vs {loc['connect_and_warmup_s']:.1f} s (each in-process Database loads its own tier)",
            "- CPU per completed operation (ms; user + system, over the load): "
            + "; ".join(f"{name}: " + ", ".join(f"{k.replace('_', ' ')} {v:.1f}" for k, v in x["cpu_ms_per_op"].items())
                        for name, x in (("server path", srv), ("in-process path", loc)))
            + f" (the benchmark process holds the {srv['clients']} psycopg clients in the server path, the engine in the in-process path; "
            f"'other processes': the machine's process time minus these: processes that ended meanwhile, such as autovacuum "
            f"workers, or anything else that ran; irq/softirq/steal: "
            f"kernel time outside processes, loopback TCP's among it); machine busy "
            f"{srv['cpu_share_of_machine']:.0%} and {loc['cpu_share_of_machine']:.0%} of its {os.cpu_count()} CPUs",
            f"- server RSS {r['load']['server_rss_before_mb']:.0f} MB before the load, {r['load']['server_rss_after_mb']:.0f} MB after",
            f"- in-process tiers load from the shared snapshot, then save theirs (after each compaction) to "
            f"{r['in_process_snapshots']} (--shared-snapshots: one folder for all)",
        ]
    lines += ["", f"### Wire overhead: one client, sequential, the same statement {r['overhead']['repeat']} times (after {r['overhead']['warmup']} warm-up), alternating paths", "",
              "| statement | server | in-process | added p50 (ms) | added p95 (ms) |", "|---|---|---|---|---|"]
    for name, c in r["overhead"]["cases"].items():
        lines.append(f"| {name} | {pair(c['server'])} | {pair(c['in_process'])} | {c['added_p50_ms']:+.3f} | {c['added_p95_ms']:+.3f} |")
    sp = r["overhead"]["cases"]["SPARSE (memory tier)"]["added_p50_ms"]
    diag = next(c["added_p50_ms"] for n, c in r["overhead"]["cases"].items() if n.startswith("diagnostic"))
    hop = r["overhead"]["cases"]["SELECT 1 (relayed vs straight to PostgreSQL)"]["added_p50_ms"]
    rc = r["overhead"]["result_compare"]
    lines += [
        "",
        f"- SPARSE through the server adds {sp:.3f} ms at p50 (goal: at most 0.3 ms): {'met' if sp <= 0.3 else 'NOT met'}",
        f"- of that, the diagnostic row (both columns in-process: a Database whose connection never prepares, as the server "
        f"sets its backend sessions, vs the default) accounts for {diag:+.3f} ms, and the relay hop itself (SELECT 1: TCP, the "
        f"asyncio loop, the session's thread) for {hop:+.3f} ms",
        f"- results compared on {rc['queries']} queries x {rc['kinds']} searches: {len(rc['mismatches'])} differ between server and in-process",
        "",
        f"### Memory: {MEMORY_CLIENTS} client processes, {MEMORY_SEARCHES} SPARSE searches each",
        "",
    ]
    ms, ml = r["memory"]["server"], r["memory"]["in_process"]
    lines += [
        "| | MB |", "|---|---|",
        f"| server RSS, no client yet | {ms['server_rss_start_mb']:.0f} |",
        f"| server RSS after the first search (shared tier loaded) | {ms['server_rss_after_first_search_mb']:.0f} (+{ms['tier_load_mb']:.0f}) |",
        f"| server RSS with {MEMORY_CLIENTS} client processes connected | {ms['server_rss_with_clients_mb']:.0f} |",
        f"| **server growth per connected client** | **{ms['server_growth_per_client_mb']:.1f}** |",
        f"| server RSS after they left | {ms['server_rss_after_clients_left_mb']:.0f} |",
        f"| each psycopg client process's RSS | {', '.join(f'{x:.0f}' for x in ms['client_process_rss_mb'])} |",
        f"| **in-process: each process's growth over its first search (own tier)** | **{', '.join(f'{x:.0f}' for x in ml['growth_over_first_search_mb'])}** |",
        f"| in-process: tier size reported by the index (memory_bytes) | {ml['tier_mb']:.1f} |",
        f"| each in-process client process's RSS | {', '.join(f'{x:.0f}' for x in ml['client_process_rss_mb'])} |",
        "",
        f"- tier memory per added client: server {ms['server_growth_per_client_mb']:.1f} MB (session only; the tier is loaded once, "
        f"+{ms['tier_load_mb']:.0f} MB), in-process {ml['mean_growth_mb']:.0f} MB per process",
        "",
        "### Checks",
        "",
    ]
    for phase in ("server", "http", "in_process"):
        c = r["checks"][phase]
        lines.append(f"- after the {phase.replace('_', '-')} load: " + "; ".join(f"{k}: {'ok' if v else 'FAILED'}" for k, v in c["checks"].items())
                     + f" ({c['values']['docs']:,} documents, {c['values']['inserted']:,} inserted, {c['values']['vocab_terms']:,} terms)")
    lines.append(f"- errors: server {srv.get('error_count', len(srv.get('errors', [])))}, HTTP {web.get('error_count', len(web.get('errors', [])))}, "
                 f"in-process {loc.get('error_count', len(loc.get('errors', [])))}"
                 + (f"; first: {(srv.get('errors') or web.get('errors') or loc.get('errors'))[0]}" if srv.get("errors") or web.get("errors") or loc.get("errors") else ""))
    if r.get("server_died"):
        lines.append(f"- the server exited during the run (code {r['server_died']}); log tail in the JSON")
    lines.append(f"- setup: {r['docs']:,} documents ingested in {r['setup']['ingest_s']:.1f} s ({r['setup']['ingest_docs_per_s']:,.0f} docs/s)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def git_state() -> str:
    """The commit measured, and whether sparsesql/ differed from it (the server changes often)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "sparsesql"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes in sparsesql/" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=None, help="documents loaded first (default 20000; --quick 2000)")
    parser.add_argument("--clients", type=int, default=None, help="concurrent clients (default 32; --quick 8)")
    parser.add_argument("--seconds", type=float, default=None, help="load seconds per path (default 60; --quick 10)")
    parser.add_argument("--repeat", type=int, default=None, help="timed runs per statement in the overhead test (default 300; --quick 100)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2,000 documents, 8 clients, 10 s")
    parser.add_argument("--keep-home", action="store_true", help="leave the embedded PostgreSQL and its folder afterwards")
    parser.add_argument("--shared-snapshots", action="store_true",
                        help="in-process threads keep saving tier snapshots to the one shared folder (shows the collision)")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write benchmarks/results/server.*")
    args = parser.parse_args(argv)
    quick = args.quick
    n_docs = args.docs or (2_000 if quick else 20_000)
    n_clients = args.clients or (8 if quick else 32)
    seconds = args.seconds or (10.0 if quick else 60.0)
    repeat = args.repeat or (100 if quick else 300)
    command = " ".join(["benchmarks/server.py", *(sys.argv[1:] if argv is None else argv)])
    CACHE.mkdir(parents=True, exist_ok=True)
    home, log = CACHE / "home", CACHE / "serve.log"

    print(f"setting up {n_docs:,} documents in {home} ...", flush=True)
    dsn, setup_info = setup(home, n_docs)
    from sparsesql.db import embedded

    if setup_info["max_connections"] < 2 * n_clients + 20:
        print(f"warning: max_connections {setup_info['max_connections']} for {n_clients} clients", flush=True)
    queries = synthetic.queries(n_docs, 200, seed=1)
    for q in queries:
        q["vlist"] = [float(x) for x in q["vector"]]
    pool_size = 2000  # new documents per path; past that, texts repeat under new ids
    pool = documents(n_docs, 3 * pool_size)
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": command, "git": git_state(), "docs": n_docs,
                    "clients": n_clients, "seconds": seconds, "n_queries": len(queries), "setup": setup_info,
                    "cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg(), "platform": f"{platform.system()} {platform.machine()}", "log": str(log)}
    result["in_process_snapshots"] = "shared SPARSESQL_HOME/tiers" if args.shared_snapshots else "private folder per thread after warm-up"
    server = None
    try:
        server = Served(dsn, log)
        result["server_command"] = " ".join(server.command)
        print(f"server on port {server.port}, pid {server.pid}, log {log}", flush=True)

        print("memory ...", flush=True)
        result["memory"] = {"server": memory_server(server, queries), "in_process": memory_local(dsn, queries)}
        print("wire overhead ...", flush=True)
        result["overhead"] = overhead(server, dsn, queries, repeat)
        c_side = c_client(server, dsn, queries[0], repeat)
        if c_side is not None:
            result["overhead"]["cases"]["SPARSE from a C client (pgbench -M prepared) vs db.query"] = c_side

        print(f"load through the server: {n_clients} clients, {seconds:.0f} s ...", flush=True)
        before = rss_mb(server.pid)
        srv = load(lambda i: ServerClient(server.dsn()), n_clients, seconds, queries, pool[:pool_size], "srv", server.pid)
        after = rss_mb(server.pid) if server.alive() else float("nan")
        if not server.alive():
            result["server_died"] = server.process.returncode
        result["load"] = {"server": srv, "server_rss_before_mb": before, "server_rss_after_mb": after}
        result.setdefault("checks", {})["server"] = check_state(dsn, srv["inserted"], n_docs + len(srv["inserted"]))
        print(f"  {srv.get('completed', 0)} ops, {len(srv.get('errors', []))} errors", flush=True)

        print(f"load through the HTTP API: {n_clients} clients, {seconds:.0f} s ...", flush=True)
        from sparsesql.server import tokens

        with psycopg.connect(dsn, autocommit=True) as admin:
            _, token = tokens.create(admin, "postgres")
        web = load(lambda i: HttpClient(server.http, token), n_clients, seconds, queries, pool[pool_size:2 * pool_size], "web", server.pid)
        result["load"]["http"] = web
        result["checks"]["http"] = check_state(dsn, srv["inserted"] + web["inserted"], n_docs + len(srv["inserted"]) + len(web["inserted"]))
        print(f"  {web.get('completed', 0)} ops, {len(web.get('errors', []))} errors", flush=True)

        print(f"load in-process: {n_clients} threads, {seconds:.0f} s ...", flush=True)
        private = None if args.shared_snapshots else home / "private-tiers"
        loc = load(lambda i: LocalClient(dsn, None if private is None else private / str(i)), n_clients, seconds, queries, pool[2 * pool_size:], "inp")
        result["load"]["in_process"] = loc
        inserted = srv["inserted"] + web["inserted"] + loc["inserted"]
        result["checks"]["in_process"] = check_state(dsn, inserted, n_docs + len(inserted))
        print(f"  {loc.get('completed', 0)} ops, {len(loc.get('errors', []))} errors", flush=True)
    finally:
        if server is not None:
            server.stop()
            result["server_log_tail"] = server.log_tail(3000)
        if not args.keep_home:
            embedded.stop(home)
            shutil.rmtree(home, ignore_errors=True)

    result["loadavg_at_end"] = os.getloadavg()
    for phase in ("server", "http", "in_process"):
        result["load"][phase]["inserted_count"] = len(result["load"][phase].pop("inserted"))
    failed = [f"{phase}: {name}" for phase, c in result["checks"].items() for name, ok in c["checks"].items() if not ok]
    failed += [f"{phase}: {x['error_count'] if 'error_count' in x else len(x['errors'])} errors"
               for phase, x in result["load"].items() if isinstance(x, dict) and x.get("errors")]
    if result["overhead"]["result_compare"]["mismatches"]:
        failed.append("server and in-process results differ")
    if result.get("server_died") is not None:
        failed.append("the server exited")
    result["failed"] = failed
    text = report(result)
    if failed:
        text += "\n\n**Failed:** " + "; ".join(failed)
    for phase in ("server", "http", "in_process"):  # keep the JSON readable: the first errors only
        errs = result["load"][phase].get("errors", [])
        result["load"][phase]["errors"] = errs[:50]
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "server.md").write_text(text + "\n")
        (RESULTS / "server.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
