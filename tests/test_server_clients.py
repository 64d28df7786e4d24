"""Real PostgreSQL clients that nobody here wrote, against a running `sparsesql serve`.

Each client runs the same scenario (tests/clients/ for node-postgres and JDBC; psycopg, asyncpg
and psql here): CREATE COLLECTION, INSERT documents with parameters, HYBRID with WHERE, WITH
PRF and DIVERSIFY, EXPLAIN ANALYZE, a syntax error, then inside a transaction a plain table,
an INSERT, a search that sees it, a join of documents to the plain table, and a ROLLBACK that
leaves nothing behind. What each client saw is checked against the in-process `db.query` of
the same statements. A client that is not installed skips, saying how to get it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.conftest import REPO

CLIENTS = REPO / "tests" / "clients"
DOCS = [
    ("d1", "sparse retrieval with inverted indexes", 2019, {"venue": "SIGIR"}, "[1,0,0]"),
    ("d2", "dense retrieval with embeddings", 2020, {"venue": "ECIR"}, "[0,1,0]"),
    ("d3", "hybrid retrieval fuses sparse and dense scores", 2021, {"venue": "SIGIR"}, "[0.7,0.7,0]"),
    ("d4", "query expansion by pseudo relevance feedback", 2022, {"venue": "CIKM"}, "[0,0,1]"),
    ("d5", "learned sparse retrieval models", 2023, {"venue": "SIGIR"}, "[0.9,0.1,0.1]"),
    ("d6", "postgres extensions for search", 2024, {"venue": "VLDB"}, "[0.1,0.2,0.9]"),
]
SEARCH = (
    "SELECT id, score FROM {c} SEARCH HYBRID(SPARSE(:q), DENSE(:v)) WITH PRF "
    "DIVERSIFY BY COVERAGE(candidates => 10) WHERE year >= :y LIMIT 3"
)
SEARCH_PARAMS = {"q": "sparse retrieval", "v": [1.0, 0.0, 0.0], "y": 2020}
BROKEN = "SELECT id FROM {c} SEARCH SPARSE('x') LIMT 5"  # parentheses balanced: psql cuts statements at `;` only then


@pytest.fixture
def docs_file(tmp_path: Path) -> Path:
    path = tmp_path / "docs.tsv"
    path.write_text("".join(f"{i}\t{t}\t{y}\t{json.dumps(m)}\t{v}\n" for i, t, y, m, v in DOCS))
    return path


def check_scenario(db, coll: str, seen: dict[str, dict]) -> None:
    """What a client saw equals what the in-process API gives for the same statements."""
    expected = [[r["id"], r["score"]] for r in db.query(SEARCH.format(c=coll), **SEARCH_PARAMS)]
    assert len(expected) == 3
    got = seen["search"]["rows"]
    assert [r[0] for r in got] == [r[0] for r in expected]
    # the server's tier scores dense from its own float32 vectors, `db` in PostgreSQL: the same
    # cosine up to float32 summation order
    assert [r[1] for r in got] == pytest.approx([r[1] for r in expected], rel=1e-6, abs=1e-6)
    assert any("rows" in line for line in seen["explain"]["lines"]) and seen["explain"]["lines"][0].startswith("Plan")
    assert seen["syntax"]["code"] == "42601"
    assert seen["syntax"]["position"] == BROKEN.format(c=coll).index("LIMT") + 1
    assert seen["in_transaction"]["rows"] == ["tx"]
    assert [r[:2] for r in seen["join"]["rows"]] == [["d1", "first note"], ["tx", "note on tx"]]
    assert seen["join"]["rows"][1][2] == "zebra transaction"
    after = seen["after_rollback"]
    assert after["rows"] == [] and after["notes"] is None and after["count"] == len(DOCS)
    info = db.collection(coll).info
    assert info.n_docs == len(DOCS)
    assert db.query(f"SELECT id FROM {coll} SEARCH SPARSE('zebra') LIMIT 3") == []
    assert db.conn.execute("SELECT to_regclass(%s)", (f"{coll}_notes",)).fetchone()[0] is None


def lines(output: str) -> dict[str, dict]:
    return {row["step"]: row for row in map(json.loads, filter(None, output.splitlines()))}


def test_psycopg(server, db, name):
    seen = {}
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE COLLECTION {name} (title text, year int) WITH (dense => 'none', dim => 3)")
        for i, title, year, metadata, vector in DOCS:
            conn.execute(
                f"INSERT INTO {name} (id, title, year, metadata, embedding) VALUES (%s, %s, %s, %s, %s)",
                (i, title, year, json.dumps(metadata), vector),
            )
        rows = conn.execute(SEARCH.format(c=name).replace(":q", "%s").replace(":v", "%s").replace(":y", "%s"),
                            ("sparse retrieval", "[1,0,0]", 2020)).fetchall()
        seen["search"] = {"rows": [list(r) for r in rows]}
        seen["explain"] = {"lines": [r[0] for r in conn.execute(f"EXPLAIN ANALYZE SELECT id, score FROM {name} SEARCH SPARSE('retrieval') LIMIT 3")]}
        with pytest.raises(psycopg.Error) as failed:
            conn.execute(BROKEN.format(c=name))
        seen["syntax"] = {"code": failed.value.sqlstate, "position": int(failed.value.diag.statement_position)}
        with conn.transaction():
            conn.execute(f"CREATE TABLE {name}_notes (id text PRIMARY KEY, note text)")
            conn.execute(f"INSERT INTO {name}_notes VALUES (%s, %s), (%s, %s)", ("d1", "first note", "tx", "note on tx"))
            conn.execute(f"INSERT INTO {name} (id, title, year, embedding) VALUES (%s, %s, %s, %s)", ("tx", "zebra transaction", 2025, [0.0, 0.0, 1.0]))
            seen["in_transaction"] = {"rows": [r[0] for r in conn.execute(f"SELECT id FROM {name} SEARCH SPARSE(%s) LIMIT 3", ("zebra",))]}
            join = conn.execute(f'SELECT n.id, n.note, d.title FROM {name}_notes n JOIN sparsesql."{name}__docs" d ON d.id = n.id ORDER BY n.id')
            seen["join"] = {"rows": [list(r) for r in join]}
            raise psycopg.Rollback()
        seen["after_rollback"] = {
            "rows": [r[0] for r in conn.execute(f"SELECT id FROM {name} SEARCH SPARSE(%s) LIMIT 3", ("zebra",))],
            "notes": conn.execute("SELECT to_regclass(%s)::text", (f"{name}_notes",)).fetchone()[0],
            "count": conn.execute(f'SELECT count(*) FROM sparsesql."{name}__docs"').fetchone()[0],
        }
    check_scenario(db, name, seen)


def test_asyncpg_binary(server, db, name):
    asyncpg = pytest.importorskip("asyncpg", reason="pip install asyncpg (it is in the [test] extra)")

    async def scenario() -> dict:
        seen = {}
        conn = await asyncpg.connect(host=server.host, port=server.port, user=server.user, password=server.password,
                                     database=server.database, ssl=False)
        try:
            await conn.execute(f"CREATE COLLECTION {name} (title text, year int) WITH (dense => 'none', dim => 3)")
            insert = f"INSERT INTO {name} (id, title, year, metadata, embedding) VALUES ($1, $2, $3, $4, $5)"
            await conn.executemany(insert, [(i, t, y, json.dumps(m), [float(x) for x in json.loads(v)]) for i, t, y, m, v in DOCS])
            search = SEARCH.format(c=name).replace(":q", "$1").replace(":v", "$2").replace(":y", "$3")
            rows = await conn.fetch(search, "sparse retrieval", "[1,0,0]", 2020)
            seen["search"] = {"rows": [[r["id"], r["score"]] for r in rows]}
            plan = await conn.fetch(f"EXPLAIN ANALYZE SELECT id, score FROM {name} SEARCH SPARSE('retrieval') LIMIT 3")
            seen["explain"] = {"lines": [r[0] for r in plan]}
            try:
                await conn.fetch(BROKEN.format(c=name))
            except asyncpg.PostgresError as exc:
                seen["syntax"] = {"code": exc.sqlstate, "position": int(exc.position)}
            tx = conn.transaction()
            await tx.start()
            await conn.execute(f"CREATE TABLE {name}_notes (id text PRIMARY KEY, note text)")
            await conn.execute(f"INSERT INTO {name}_notes VALUES ($1, $2), ($3, $4)", "d1", "first note", "tx", "note on tx")
            await conn.execute(f"INSERT INTO {name} (id, title, year, embedding) VALUES ($1, $2, $3, $4)", "tx", "zebra transaction", 2025, [0.0, 0.0, 1.0])
            seen["in_transaction"] = {"rows": [r["id"] for r in await conn.fetch(f"SELECT id FROM {name} SEARCH SPARSE($1) LIMIT 3", "zebra")]}
            join = await conn.fetch(f'SELECT n.id, n.note, d.title FROM {name}_notes n JOIN sparsesql."{name}__docs" d ON d.id = n.id ORDER BY n.id')
            seen["join"] = {"rows": [list(r) for r in join]}
            await tx.rollback()
            seen["after_rollback"] = {
                "rows": [r["id"] for r in await conn.fetch(f"SELECT id FROM {name} SEARCH SPARSE($1) LIMIT 3", "zebra")],
                "notes": await conn.fetchval("SELECT to_regclass($1)::text", f"{name}_notes"),
                "count": await conn.fetchval(f'SELECT count(*) FROM sparsesql."{name}__docs"'),
            }
        finally:
            await conn.close()
        return seen

    check_scenario(db, name, asyncio.run(scenario()))


def _client_env(server) -> dict[str, str]:
    return {**os.environ, "PGHOST": server.host, "PGPORT": str(server.port), "PGUSER": server.user,
            "PGPASSWORD": server.password, "PGDATABASE": server.database, "PGSSLMODE": "disable"}


def test_psql(server, db, name, tmp_path):
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("psql not found: apt install postgresql-client")
    script = [f"CREATE COLLECTION {name} (title text, year int) WITH (dense => 'none', dim => 3);"]
    for i, title, year, metadata, vector in DOCS:  # psql (<16) binds no protocol parameters; its variables quote
        script += [f"\\set id '{i}'", f"\\set title '{title}'", f"\\set meta '{json.dumps(metadata)}'", f"\\set vec '{vector}'",
                   f"INSERT INTO {name} (id, title, year, metadata, embedding) VALUES (:'id', :'title', {year}, :'meta', :'vec');"]
    search = SEARCH.format(c=name).replace(":q", "'sparse retrieval'").replace(":v", "'[1,0,0]'").replace(":y", "2020")
    script += [
        "\\echo step=search", f"{search};",
        "\\echo step=explain", f"EXPLAIN ANALYZE SELECT id, score FROM {name} SEARCH SPARSE('retrieval') LIMIT 3;",
        "\\echo step=syntax", "\\set VERBOSITY verbose", f"{BROKEN.format(c=name)};", "\\set VERBOSITY default",
        "BEGIN;",
        f"CREATE TABLE {name}_notes (id text PRIMARY KEY, note text);",
        f"INSERT INTO {name}_notes VALUES ('d1', 'first note'), ('tx', 'note on tx');",
        f"INSERT INTO {name} (id, title, year, embedding) VALUES ('tx', 'zebra transaction', 2025, '[0,0,1]');",
        "\\echo step=in_transaction", f"SELECT id FROM {name} SEARCH SPARSE('zebra') LIMIT 3;",
        "\\echo step=join", f'SELECT n.id, n.note, d.title FROM {name}_notes n JOIN sparsesql."{name}__docs" d ON d.id = n.id ORDER BY n.id;',
        "ROLLBACK;",
        "\\echo step=after_rollback", f"SELECT id FROM {name} SEARCH SPARSE('zebra') LIMIT 3;",
        f"SELECT coalesce(to_regclass('{name}_notes')::text, 'none');", f'SELECT count(*) FROM sparsesql."{name}__docs";',
    ]
    (tmp_path / "flow.sql").write_text("\n".join(script) + "\n")
    done = subprocess.run([psql, "-X", "-A", "-t", "-F", "\t", "-f", str(tmp_path / "flow.sql")], env=_client_env(server),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    steps: dict[str, list[str]] = {}
    current = None
    for line in done.stdout.splitlines():
        if line.startswith("step="):
            current = steps.setdefault(line[5:], [])
        elif current is not None and line and not re.fullmatch(r"BEGIN|ROLLBACK|CREATE TABLE|INSERT 0 \d+", line):
            current.append(line)
    seen = {
        "search": {"rows": [[i, float(s)] for i, s in (r.split("\t") for r in steps["search"])]},
        "explain": {"lines": steps["explain"]},
        "in_transaction": {"rows": steps["in_transaction"]},
        "join": {"rows": [r.split("\t") for r in steps["join"]]},
        "after_rollback": {"rows": steps["after_rollback"][:-2], "count": int(steps["after_rollback"][-1]),
                           "notes": None if steps["after_rollback"][-2] == "none" else steps["after_rollback"][-2]},
    }
    # psql prints the error (with its SQLSTATE under VERBOSITY verbose) and a caret line of its own
    assert "ERROR:  42601:" in done.stderr, done.stderr
    broken = BROKEN.format(c=name)
    caret = next(l for l in done.stderr.splitlines() if l.strip() == "^")
    text_line = next(l for l in done.stderr.splitlines() if l.startswith("LINE 1: "))
    seen["syntax"] = {"code": "42601", "position": caret.index("^") - len("LINE 1: ") + 1 if broken in text_line else -1}
    check_scenario(db, name, seen)


def _node_modules() -> Path | None:
    for folder in (CLIENTS / "node_modules", *(Path(p) for p in os.environ.get("NODE_PATH", "").split(":") if p)):
        if (folder / "pg" / "package.json").exists():
            return folder
    return None


def test_node_postgres(server, db, name, docs_file):
    node = shutil.which("node")
    modules = _node_modules()
    if node is None or modules is None:
        pytest.skip("node-postgres not found: install Node.js, then `npm install --prefix tests/clients pg` (.ci/run does)")
    env = {**_client_env(server), "NODE_PATH": str(modules)}
    done = subprocess.run([node, str(CLIENTS / "flow.js"), name, str(docs_file)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + server.log_tail()
    check_scenario(db, name, lines(done.stdout))


def _jdbc_jar() -> Path | None:
    for path in (os.environ.get("PGJDBC_JAR"), "/usr/share/java/postgresql.jar"):
        if path and Path(path).exists():
            return Path(path)
    return None


def test_jdbc(server, db, name, docs_file, tmp_path):
    jar, javac, java = _jdbc_jar(), shutil.which("javac"), shutil.which("java")
    if jar is None or javac is None or java is None:
        pytest.skip("PostgreSQL JDBC not found: apt install libpostgresql-jdbc-java default-jdk-headless (.ci/run does)")
    subprocess.run([javac, "-d", str(tmp_path), "-cp", str(jar), str(CLIENTS / "JdbcFlow.java")], check=True, capture_output=True, timeout=180)
    url = f"jdbc:postgresql://{server.host}:{server.port}/{server.database}?sslmode=disable"
    done = subprocess.run(
        [java, "-cp", f"{jar}:{tmp_path}", "JdbcFlow", url, server.user, server.password, name, str(docs_file)],
        capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr + server.log_tail()
    check_scenario(db, name, lines(done.stdout))
