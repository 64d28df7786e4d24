"""Concurrent load: pgbench through `sparsesql serve` beside pgbench sending the anchors' statements
straight to PostgreSQL, in the same run, on the same machine and data.

    .venv/bin/python benchmarks/load.py [--docs 100000] [--vectors calibrated] [--clients 1 8 32]
                                        [--seconds 15] [--workers 2] [--queries 64]

The collection is the one benchmarks/speed.py builds (`speed_<n>_<vectors>`, built here when
missing), with its recipe table and pgvector HNSW index. Each cell is one pgbench run (-T seconds,
-c clients, -j min(clients, 4), -n), one script file per query (pgbench picks one at random per
transaction), the query vector written inline, latencies from pgbench's per-transaction log:
- HYBRID via serve (the default fusion, memory tier) beside the plain PostgreSQL recipe
  (tsvector + GIN, HNSW ef_search 100, RRF, one statement; k = 10 per list as benchmarks/speed.py);
- DENSE via serve beside pgvector HNSW at ef_search 100;
- SPARSE via serve beside pg_textsearch 1.4's BM25 index (its own server, benchmarks/textsearch.py;
  left out, with the reason, where it cannot be built).
Recall@10 of every side is measured against the exact answer (sparsesql's SQL path with the memory
tier off: exhaustive BM25, exact cosine, the default fusion over them). Then: HYBRID at the largest
client count through `--workers 1` and through `--workers N` (throughput ratio), the servers'
proportional set size (PSS: shared pages split between the processes that map them) after that
load, and a 9:1 mix of HYBRID and dialect INSERTs through the server, checked afterwards (every
INSERT pgbench counted is stored, and no other document). Writes benchmarks/results/load.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import psycopg
from psycopg.conninfo import conninfo_to_dict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sparsesql  # noqa: E402
from benchmarks import speed, synthetic  # noqa: E402
from benchmarks.anchors import TSQUERY, _RECIPE_QUERY  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "benchmarks" / ".cache" / "load"
PASSWORD = "bench"
K = 10


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def vector_text(v: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in np.asarray(v, dtype=np.float32)) + "]"


def scripts(folder: Path, kind: str, statements: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, s in enumerate(statements):
        path = folder / f"{kind}_{i}.sql"
        path.write_text(s + "\n")
        paths.append(path)
    return paths


def pgbench(target: dict, files: list[str], clients: int, seconds: int, *, by_script: bool = False) -> dict:
    """One pgbench run; throughput, latency percentiles (ms) and per-script transaction counts
    (with `by_script`, every latency by script too)."""
    with tempfile.TemporaryDirectory() as logs:
        command = ["pgbench", "-n", "-T", str(seconds), "-c", str(clients), "-j", str(min(clients, 4)), "-l",
                   "--log-prefix", f"{logs}/tx", "-h", target["host"], "-p", str(target["port"]), "-U", target["user"]]
        for f in files:
            command += ["-f", f]
        command.append(target["dbname"])
        out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PGPASSWORD": target.get("password", "")})
        ms, per_script, failed, latencies = [], {}, 0, {}
        for log in Path(logs).glob("tx*"):
            for line in log.read_text().splitlines():
                parts = line.split()
                if parts[2] == "failed":
                    failed += 1
                    continue
                ms.append(int(parts[2]) / 1000)
                per_script[int(parts[3])] = per_script.get(int(parts[3]), 0) + 1
                latencies.setdefault(int(parts[3]), []).append(int(parts[2]) / 1000)
    tps = re.search(r"tps = ([\d.]+) \(without", out.stdout)
    if tps is None or out.returncode != 0:
        raise RuntimeError(f"pgbench failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    ms.sort()
    return {"tps": float(tps.group(1)), "p50": ms[len(ms) // 2], "p95": ms[int(len(ms) * 0.95)], "p99": ms[int(len(ms) * 0.99)],
            "transactions": len(ms), "failed": failed, "per_script": per_script, **({"latency_by_script": latencies} if by_script else {}),
            "errors": sum(int(x) for x in re.findall(r"number of failed transactions: (\d+)", out.stdout)[:1])}


class Serve:
    """`sparsesql serve --workers N` on a free port over the benchmark database."""

    def __init__(self, dsn: str, workers: int) -> None:
        self.log = CACHE / f"serve-{workers}.log"
        command = [str(ROOT / ".venv" / "bin" / "sparsesql"), "--dsn", dsn, "serve", "--port", "0", "--workers", str(workers)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log.open("w"), text=True, env=env)
        line = self.process.stdout.readline()
        match = re.search(r"listening on ([\d.]+):(\d+)", line)
        if match is None:
            raise RuntimeError(f"sparsesql serve did not start: {line}\n{self.log.read_text()[-3000:]}")
        self.port = int(match.group(2))

    def warm(self, database: str, user: str, files: list[str]) -> None:
        """Every worker past its first searches (tiers mapped, compiled code loaded) before a
        measurement: a few seconds of the load itself, not counted."""
        pgbench(self.target(database, user), files, 8, 3)

    def target(self, database: str, user: str) -> dict:
        return {"host": "127.0.0.1", "port": self.port, "dbname": database, "user": user, "password": PASSWORD}

    def pss_mb(self) -> float:
        """PSS of the supervisor and its workers: what the server costs the machine's memory."""
        pids = [self.process.pid] + [int(p) for p in Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()]
        total = 0
        for pid in pids:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        return total / 1024

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def recall(got: list[list[str]], exact: list[list[str]]) -> float:
    return float(np.mean([len(set(g[:K]) & set(e[:K])) / max(1, min(K, len(e))) for g, e in zip(got, exact)]))


def answers(conn: psycopg.Connection, statements: list[str]) -> list[list[str]]:
    out = []
    for s in statements:
        rows = _in_transaction(conn, s) if s.startswith("BEGIN") else conn.execute(s).fetchall()
        out.append([str(r[0]) for r in rows])
    return out


def _in_transaction(conn: psycopg.Connection, script: str) -> list[tuple]:
    """The rows of a BEGIN ... COMMIT script's query, its statements run one by one."""
    parts = [p.strip() for p in script.split(";\n") if p.strip()]
    rows = []
    with conn.transaction():
        for p in parts[1:-1]:
            cur = conn.execute(p)
            if cur.description is not None:
                rows = cur.fetchall()
    return rows


class Ground(NamedTuple):
    """What a load run stands on: the benchmark database, the collection with its recipe table
    and HNSW index, the role's password set for pgbench, and the queries."""

    dsn: str
    reference: sparsesql.Database  # the SQL path, memory tier off: exact answers
    name: str
    conn: psycopg.Connection
    user: str
    info: dict  # the DSN's parts
    direct: dict  # pgbench's target straight to PostgreSQL
    queries: list[dict]


def load_arguments(description: str, argv: list[str] | None, *, seconds: int, out: str | None = None) -> argparse.Namespace:
    """A load run's arguments; refuses to start without pgbench."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--vectors", default="calibrated", choices=list(synthetic.VECTOR_MODELS))
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=int, default=seconds)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--queries", type=int, default=64)
    if out is not None:
        parser.add_argument("--out", default=out)
    args = parser.parse_args(argv)
    if shutil.which("pgbench") is None:
        sys.exit("pgbench is not installed (Debian: apt-get install postgresql-client)")
    CACHE.mkdir(parents=True, exist_ok=True)
    return args


def prepare(args: argparse.Namespace) -> Ground:
    dsn = speed.speed_dsn()
    reference = sparsesql.connect(dsn, sparse_tier=False)
    name = speed.build(reference, args.docs, args.vectors)["name"]
    conn = psycopg.connect(dsn, autocommit=True)
    from pgvector.psycopg import register_vector

    register_vector(conn)
    speed.hnsw(conn, name)
    speed.recipe(conn, args.docs, args.vectors)
    user = conn.info.user
    conn.execute(psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(psycopg.sql.Identifier(user), psycopg.sql.Literal(PASSWORD)))
    info = conninfo_to_dict(dsn)
    direct = {"host": info.get("host", "/tmp"), "port": info.get("port", 5432), "dbname": info["dbname"], "user": user, "password": PASSWORD}
    bands = synthetic.queries_by_band(args.docs, args.queries, model=args.vectors)
    queries = [q for qs in bands.values() for q in qs][: args.queries]
    return Ground(dsn, reference, name, conn, user, info, direct, queries)


def main(argv: list[str] | None = None) -> int:
    args = load_arguments(__doc__.splitlines()[0], argv, seconds=15, out="load")
    dsn, reference, name, conn, user, info, direct, queries = prepare(args)
    recipe_sql = _RECIPE_QUERY.replace("{tsquery}", TSQUERY["all"]).replace("anchor_docs", f"{name}_recipe")
    sides: dict[str, list[str]] = {"hybrid": [], "recipe": [], "dense": [], "hnsw": [], "sparse": []}
    for q in queries:
        v, t = vector_text(q["vector"]), literal(q["text"])
        sides["hybrid"].append(f"SELECT id, score FROM {name} SEARCH HYBRID(SPARSE({t}), DENSE('{v}')) LIMIT {K};")
        sides["dense"].append(f"SELECT id, score FROM {name} SEARCH DENSE('{v}') LIMIT {K};")
        sides["sparse"].append(f"SELECT id, score FROM {name} SEARCH SPARSE({t}) LIMIT {K};")
        recipe = " ".join(recipe_sql.replace("%(text)s", t).replace("%(vector)s", f"'{v}'::vector").replace("%(k)s", str(K)).replace("%(rrf_k)s", "60").split())
        sides["recipe"].append(f"BEGIN;\nSET LOCAL hnsw.ef_search = 100;\n{recipe};\nCOMMIT;")
        sides["hnsw"].append(f"BEGIN;\nSET LOCAL hnsw.ef_search = 100;\nSELECT d.id FROM sparsesql.\"{name}__dense\" e JOIN sparsesql.\"{name}__docs\" d "
                             f"USING (doc_id) ORDER BY e.embedding <=> '{v}' LIMIT {K};\nCOMMIT;")
    files = {kind: [str(p) for p in scripts(CACHE / "scripts", kind, s)] for kind, s in sides.items()}

    exact = {
        "hybrid": [[r["id"] for r in reference.query(f"SELECT id FROM {name} SEARCH HYBRID(SPARSE(:q), DENSE(:v)) LIMIT {K}",
                                                        q=q["text"], v=q["vector"].tolist())] for q in queries],
        "dense": [[r["id"] for r in reference.query(f"SELECT id FROM {name} SEARCH DENSE(:v) LIMIT {K}", v=q["vector"].tolist())] for q in queries],
        "sparse": [[r["id"] for r in reference.query(f"SELECT id FROM {name} SEARCH SPARSE(:q) LIMIT {K}", q=q["text"])] for q in queries],
    }
    result: dict = {"docs": args.docs, "vectors": args.vectors, "collection": name, "queries": len(queries), "seconds": args.seconds,
                    "workers": args.workers, "machine": f"{platform.machine()}, {os.cpu_count()} cores", "cells": [], "recall": {}}

    from benchmarks import textsearch

    ts_dsn = textsearch.ensure_server(ROOT / "benchmarks" / ".cache")
    ts_target = None
    if ts_dsn is None:
        result["textsearch"] = "not available (see stderr)"
    else:
        ts_info = conninfo_to_dict(ts_dsn)
        ts_table = f"load_{args.docs}_{args.vectors}"
        result["textsearch_load_s"] = textsearch.load(
            ts_dsn, ts_table, ((d["id"], d["text"]) for b in synthetic.generate(args.docs, seed=0, batch=5000, model=args.vectors) for d in b),
            expected=args.docs)
        ts_statements = [textsearch.statement(ts_table, q["text"], K) + ";" for q in queries]
        files["textsearch"] = [str(p) for p in scripts(CACHE / "scripts", "textsearch", ts_statements)]
        ts_target = {"host": ts_info.get("host", ""), "port": ts_info.get("port", 5432), "dbname": ts_info["dbname"], "user": ts_info.get("user", user)}
        with psycopg.connect(ts_dsn, autocommit=True) as ts_conn:
            result["recall"]["pg_textsearch BM25 (its k1 1.2, b 0.75)"] = recall(answers(ts_conn, ts_statements), exact["sparse"])

    result["recall"]["recipe (tsvector + HNSW + RRF)"] = recall(answers(conn, sides["recipe"]), exact["hybrid"])
    result["recall"]["pgvector HNSW ef_search 100"] = recall(answers(conn, sides["hnsw"]), exact["dense"])

    server = Serve(dsn, args.workers)
    try:
        with psycopg.connect(f"host=127.0.0.1 port={server.port} dbname={info['dbname']} user={user} password={PASSWORD}", autocommit=True) as sconn:
            for kind in ("hybrid", "dense", "sparse"):
                result["recall"][f"{kind.upper()} via serve"] = recall(answers(sconn, sides[kind]), exact[kind])
        for kind in ("hybrid", "dense", "sparse"):
            server.warm(info["dbname"], user, files[kind])
        pairs = [("hybrid", "recipe", direct), ("dense", "hnsw", direct)] + ([("sparse", "textsearch", ts_target)] if ts_target else [])
        for ours, anchor, anchor_target in pairs:
            for clients in args.clients:
                mine = pgbench(server.target(info["dbname"], user), files[ours], clients, args.seconds)
                theirs = pgbench(anchor_target, files[anchor], clients, args.seconds)
                result["cells"].append({"search": ours, "anchor": anchor, "clients": clients, "serve": mine, "anchor_result": theirs,
                                        "ratio": mine["tps"] / theirs["tps"]})
                print(f"{ours} {clients:>3} clients: serve {mine['tps']:.0f} tps p50 {mine['p50']:.1f} ms | {anchor} {theirs['tps']:.0f} tps "
                      f"p50 {theirs['p50']:.1f} ms | {mine['tps'] / theirs['tps']:.2f}x", flush=True)
        top = max(args.clients)
        result["workers_n"] = pgbench(server.target(info["dbname"], user), files["hybrid"], top, args.seconds)
        result["pss_mb_n"] = server.pss_mb()
        result["mix"] = mixed(server, info["dbname"], user, name, files["hybrid"], queries, top, args.seconds, conn)
    finally:
        server.stop()
        if ts_dsn is not None:
            textsearch.stop(ROOT / "benchmarks" / ".cache")
    if args.workers > 1:
        single = Serve(dsn, 1)
        try:
            single.warm(info["dbname"], user, files["hybrid"])
            result["workers_1"] = pgbench(single.target(info["dbname"], user), files["hybrid"], top, args.seconds)
            result["pss_mb_1"] = single.pss_mb()
        finally:
            single.stop()
    command = "benchmarks/load.py " + " ".join(argv if argv is not None else sys.argv[1:])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=1, default=str))
    (RESULTS / f"{args.out}.md").write_text(report(result, command))
    print(report(result, command))
    return 0


def mixed(server: Serve, database: str, user: str, name: str, hybrid: list[str], queries: list[dict], clients: int, seconds: float,
          conn: psycopg.Connection) -> dict:
    """9 HYBRID to 1 INSERT (a new document, text and vector) through the server; afterwards every
    INSERT pgbench counted must be stored, then the inserted documents are deleted again."""
    before = conn.execute(f'SELECT count(*) FROM sparsesql."{name}__docs"').fetchone()[0]
    q = queries[0]
    insert = CACHE / "scripts" / "insert.sql"
    insert.write_text("\\set r random(1, 2000000000)\n"
                      f"INSERT INTO {name} (id, text, bucket, embedding) VALUES ('load-:client_id-:r', {literal(q['text'])}, 7, "
                      f"'{vector_text(q['vector'])}');\n")
    files = [f"{f}@9" for f in hybrid] + [f"{insert}@{len(hybrid)}"]  # nine searches to one insert
    out = pgbench(server.target(database, user), files, clients, seconds, by_script=True)
    inserted = out["per_script"].get(len(hybrid), 0)
    after = conn.execute(f'SELECT count(*) FROM sparsesql."{name}__docs"').fetchone()[0]
    stored = conn.execute(f"SELECT count(*) FROM sparsesql.\"{name}__docs\" WHERE id LIKE 'load-%'").fetchone()[0]
    with sparsesql.connect(conn.info.dsn, sparse_tier=False) as db:
        db.query(f"DELETE FROM {name} WHERE id LIKE 'load-%'")
    searches = sum(n for script, n in out["per_script"].items() if script != len(hybrid))
    by_script = out.pop("latency_by_script")
    insert_ms = sorted(by_script.get(len(hybrid), [0.0]))
    search_ms = sorted(x for script, values in by_script.items() if script != len(hybrid) for x in values) or [0.0]
    return {**out, "searches": searches, "search_p50": search_ms[len(search_ms) // 2], "search_p95": search_ms[int(len(search_ms) * 0.95)],
            "insert_p50": insert_ms[len(insert_ms) // 2], "insert_p95": insert_ms[int(len(insert_ms) * 0.95)], "inserts": inserted, "stored": stored, "docs_before": before, "docs_after": after,
            "check": "ok" if stored == inserted and after == before + inserted else "MISMATCH",
            "insert_share": inserted / max(1, inserted + searches)}


def _row(r: dict) -> str:
    return f"{r['tps']:,.0f} tps, p50 {r['p50']:.1f} / p95 {r['p95']:.1f} / p99 {r['p99']:.1f} ms"


def report(r: dict, command: str) -> str:
    lines = [f"# Load through `sparsesql serve` beside PostgreSQL ({r['docs']:,} documents, {r['vectors']} vectors)", "",
             f"`{command}` on {r['machine']}; {r['seconds']:.0f} s per cell, {r['queries']} queries, `serve --workers {r['workers']}`. "
             "pgbench on both sides; ratio = serve's throughput / the anchor's.", "",
             "| search | clients | via serve | anchor | anchor straight to PostgreSQL | ratio |", "|---|---|---|---|---|---|"]
    for c in r["cells"]:
        lines.append(f"| {c['search'].upper()} | {c['clients']} | {_row(c['serve'])} | {c['anchor']} | {_row(c['anchor_result'])} | {c['ratio']:.2f}x |")
    lines += ["", "Recall@10 against the exact answer (sparsesql's SQL path, memory tier off):", ""]
    lines += [f"- {k}: {v:.3f}" for k, v in r["recall"].items() if isinstance(v, float)]
    if "textsearch" in r:
        lines.append(f"- pg_textsearch: {r['textsearch']}")
    if "workers_1" in r:
        n, one = r["workers_n"], r["workers_1"]
        lines += ["", f"HYBRID, {max(c['clients'] for c in r['cells'])} clients: `--workers {r['workers']}` {_row(n)}; `--workers 1` {_row(one)}: "
                      f"{n['tps'] / one['tps']:.2f}x. Server PSS after the load: {r['pss_mb_n']:.0f} MB with {r['workers']} workers, "
                      f"{r['pss_mb_1']:.0f} MB with one ({r['pss_mb_n'] / r['pss_mb_1']:.2f}x)."]
    m = r["mix"]
    lines += ["", f"9:1 HYBRID:INSERT mix through serve: {_row(m)}; {m['searches']:,} searches (p50 {m['search_p50']:.1f} / p95 "
                  f"{m['search_p95']:.1f} ms), {m['inserts']:,} inserts (p50 {m['insert_p50']:.1f} / p95 {m['insert_p95']:.1f} ms, "
                  f"{m['insert_share']:.1%} of the transactions), {m['stored']:,} stored: {m['check']}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
