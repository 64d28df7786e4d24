"""The local Citus cluster (`sparsesql cluster`): Citus built from ../shared/vendor when missing
(cached outside the clone), a coordinator and two workers started from the embedded server's
binaries, distributed tables spread over both workers with pgvector kNN pushed down to every
shard, sparsesql's own collections on the coordinator, and a clean stop."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

import sparsesql
from sparsesql import cluster as local


def _buildable() -> str | None:
    """Why the cluster cannot be had here, or None."""
    if local.citus_installed() or (local._cache() / "lib" / "citus.so").exists():
        return None
    if local._source() is None:
        return "Citus is not installed and ../shared/vendor/citus-*.tar.gz is absent"
    missing = [tool for tool in ("gcc", "make") if shutil.which(tool) is None]
    return f"building Citus needs {' and '.join(missing)}: apt-get install build-essential" if missing else None


@pytest.fixture(scope="module")
def citus(tmp_path_factory):
    why = _buildable()
    if why:
        pytest.skip(why)
    home = tmp_path_factory.mktemp("citus")
    started = local.start(home, workers=2)
    yield started
    local.stop(home, remove=True)


def test_a_coordinator_and_two_workers_spread_a_distributed_table(citus):
    with psycopg.connect(citus.dsn, autocommit=True) as conn:
        nodes = conn.execute("SELECT nodeport, groupid FROM pg_dist_node ORDER BY groupid").fetchall()
        assert [port for port, _ in nodes] == [citus.coordinator.port, *(w.port for w in citus.workers)]
        conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, embedding vector(3))")
        conn.execute("SELECT create_distributed_table('items', 'id', shard_count => 8)")
        conn.execute("INSERT INTO items SELECT g, ARRAY[cos(g), sin(g), 1]::vector FROM generate_series(1, 2000) AS g")
        placed = conn.execute("SELECT nodeport, count(*) FROM citus_shards WHERE table_name = 'items'::regclass GROUP BY 1 ORDER BY 1").fetchall()
        assert sorted(port for port, _ in placed) == sorted(w.port for w in citus.workers) and sum(n for _, n in placed) == 8
        conn.execute("CREATE INDEX ON items USING hnsw (embedding vector_cosine_ops)")
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT id FROM items ORDER BY embedding <=> '[1,0,1]' LIMIT 5").fetchall())
        assert "Custom Scan (Citus Adaptive)" in plan and "Task Count: 8" in plan
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (2000,)


def test_sparsesql_runs_on_the_coordinator(citus):
    db = sparsesql.connect(citus.dsn, sparse_tier=False)
    coll = db.create_collection("on_coordinator", {"body": "text"}, dense="none", dim=2)
    coll.add([{"id": "a", "body": "sparse retrieval", "vector": [1, 0]}, {"id": "b", "body": "dense retrieval", "vector": [0, 1]}])
    rows = db.query("SELECT id FROM on_coordinator SEARCH HYBRID(SPARSE(:q), DENSE(:v)) LIMIT 2", q="sparse", v=[1, 0])
    assert [r["id"] for r in rows] == ["a", "b"]
    db.close()


def test_the_cli_reports_and_stops_the_cluster(citus):
    sparsesql_cli = str(Path(sys.executable).with_name("sparsesql"))
    status = subprocess.run([sparsesql_cli, "cluster", "status", "--home", str(Path(citus.home).parent)], capture_output=True, text=True, check=True)
    assert status.stdout.count("running") == 3
    again = subprocess.run([sparsesql_cli, "cluster", "start", "--home", str(Path(citus.home).parent)], capture_output=True, text=True, check=True)
    assert again.stdout.strip() == citus.dsn  # already running: the same cluster
    missing = subprocess.run([sparsesql_cli, "cluster", "status", "--home", str(Path(citus.home).parent / "elsewhere")], capture_output=True, text=True)
    assert missing.returncode != 0 and "no cluster here" in missing.stderr
