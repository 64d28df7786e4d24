"""The `sparsesql` command: thin over the library; library errors become click errors."""

from __future__ import annotations

import json
import sys
from functools import wraps
from pathlib import Path

import click

from sparsesql.cli.output import print_rows
from sparsesql.errors import Error


def _fail_cleanly(fn):
    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Error as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def _db(ctx: click.Context):
    from sparsesql.database import connect

    if ctx.obj.get("db") is None:
        ctx.obj["db"] = connect(ctx.obj.get("dsn"))
        ctx.call_on_close(ctx.obj["db"].close)
    return ctx.obj["db"]


def _param(text: str) -> tuple[str, object]:
    """`name=value`; the value is parsed as JSON when it is valid JSON, else kept as text."""
    if "=" not in text:
        raise click.BadParameter(f"{text!r} is not name=value")
    name, value = text.split("=", 1)
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


@click.group()
@click.option("--dsn", envvar="SPARSESQL_DSN", help="PostgreSQL DSN; default: the embedded server in SPARSESQL_HOME.")
@click.pass_context
def cli(ctx: click.Context, dsn: str | None) -> None:
    """sparsesql: hybrid sparse + dense retrieval in PostgreSQL."""
    ctx.ensure_object(dict)
    ctx.obj["dsn"] = dsn


@cli.command()
@click.pass_context
@_fail_cleanly
def dsn(ctx: click.Context) -> None:
    """Print the connection string (starts the embedded server if needed): psql "$(sparsesql dsn)"."""
    click.echo(_db(ctx).dsn)


@cli.command()
@_fail_cleanly
def stop() -> None:
    """Stop the embedded server in SPARSESQL_HOME."""
    from sparsesql.db import embedded

    click.echo("stopped" if embedded.stop() else f"no embedded server runs in {embedded.home()}")


@cli.command()
@click.argument("statement")
@click.option("-p", "--param", "params", multiple=True, help="Bind :name, as name=value (JSON or text).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row.")
@click.pass_context
@_fail_cleanly
def query(ctx: click.Context, statement: str, params: tuple[str, ...], as_json: bool) -> None:
    """Run one dialect statement, e.g. "SELECT id, score FROM docs SEARCH SPARSE(:q) LIMIT 5" -p q=text."""
    bound = dict(_param(p) for p in params)
    print_rows(_db(ctx).query(statement, **bound), as_json)


@cli.command()
@click.argument("collection")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--batch-size", type=int, help="Documents a transaction (500; with --bulk 100,000 or a minute's worth).")
@click.option("--on-error", type=click.Choice(["abort", "skip"]), default="abort", show_default=True,
              help="A bad document stops the load (batches before it stay) or is reported by line and skipped.")
@click.option("--bulk", is_flag=True, help="Large batches, postings formed once a batch, a first load's indexes built at the end.")
@click.pass_context
@_fail_cleanly
def ingest(ctx: click.Context, collection: str, path: Path, batch_size: int | None, on_error: str, bulk: bool) -> None:
    """Add documents from a JSONL file or a BEIR folder (its corpus.jsonl).

    A BEIR folder creates the collection (title text, text text) when it does not exist;
    for a JSONL file, create the collection first with CREATE COLLECTION. Prints what was
    added, updated, unchanged and rejected (each rejected line with its reason) and the rate.
    An interrupted load resumes when run again: stored documents are skipped by their hash.
    """
    import time

    from sparsesql.eval.beir import load_corpus, read_jsonl

    db = _db(ctx)
    rejected: list[tuple[int, str]] = []  # lines that are not JSON objects (with --on-error skip)
    source = path / "corpus.jsonl" if path.is_dir() else path
    if path.is_dir():
        if collection.lower() not in {c.name for c in db.collections()}:
            from sparsesql.eval.run import BEIR_FIELDS

            db.create_collection(collection, BEIR_FIELDS)
        docs = load_corpus(path)
    else:
        docs = ((n, {("id" if k == "_id" else k): v for k, v in d.items()})
                for n, d in read_jsonl(path, required=None, rejected=rejected if on_error == "skip" else None))
    with source.open("rb") as handle:  # the bar's total and ETA
        total = sum(1 for line in handle if line.strip())
    start = time.perf_counter()
    report = db.collection(collection).add(docs, batch_size=batch_size, progress=sys.stderr.isatty(), on_error=on_error,
                                           total=total, numbered=not path.is_dir(), bulk=bulk)
    seconds = time.perf_counter() - start
    rejected += report.rejected
    done = report.added + report.updated + report.unchanged
    click.echo(f"added {report.added}, updated {report.updated}, unchanged {report.unchanged}, rejected {len(rejected)} "
               f"in {seconds:.1f} s ({done / seconds if seconds else 0:,.0f} documents/s)")
    for _, why in sorted(rejected):
        click.echo(f"  rejected {why}", err=True)


@cli.command()
@click.argument("role")
@click.option("--access", type=click.Choice(["reader", "writer"]), default="reader", show_default=True)
@click.pass_context
@_fail_cleanly
def grant(ctx: click.Context, role: str, access: str) -> None:
    """Let an existing ROLE query the collections (reader) or also add and delete documents (writer)."""
    db = _db(ctx)
    db.grant(role, access)
    click.echo(f"granted {access} access to sparsesql's collections to {role}")


@cli.group()
def token() -> None:
    """Bearer tokens for the HTTP API, each standing for a PostgreSQL role (needs a superuser's DSN)."""


@cli.group()
def cluster() -> None:
    """A local Citus cluster (a coordinator and workers on loopback) from the embedded server's binaries."""


@cluster.command("start")
@click.option("--workers", default=2, show_default=True, help="Workers of a new cluster.")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None, help="Folder of the cluster (default: SPARSESQL_HOME).")
@_fail_cleanly
def cluster_start(workers: int, home: Path | None) -> None:
    """Build Citus if needed (once, from ../shared/vendor), start every node, print the coordinator's DSN."""
    from sparsesql import cluster as local

    click.echo(f"citus: {local.ensure_citus()}", err=True)
    started = local.start(home, workers)
    for node in started.nodes():
        click.echo(f"{node.name}: 127.0.0.1:{node.port} ({node.pgdata})", err=True)
    click.echo(started.dsn)


@cluster.command("add-worker")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--rebalance", is_flag=True, help="Move shards onto the new worker now (citus_rebalance_start) and wait.")
@_fail_cleanly
def cluster_add_worker(home: Path | None, rebalance: bool) -> None:
    """Start one more worker and register it with the coordinator."""
    from sparsesql import cluster as local

    node = local.add_worker(home, rebalance=rebalance)
    click.echo(f"{node.name}: 127.0.0.1:{node.port} ({node.pgdata})" + (", shards rebalanced" if rebalance else ""))


@cluster.command("remove-worker")
@click.argument("name")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None)
@_fail_cleanly
def cluster_remove_worker(name: str, home: Path | None) -> None:
    """Move a worker's shards to the others (citus_drain_node), then stop and delete it."""
    from sparsesql import cluster as local

    node = local.remove_worker(home, name)
    click.echo(f"{node.name}: drained and removed")


@cluster.command("stop")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--remove", is_flag=True, help="Also delete the nodes' data folders.")
@_fail_cleanly
def cluster_stop(home: Path | None, remove: bool) -> None:
    """Stop every node of the cluster."""
    from sparsesql import cluster as local

    click.echo("stopped" + (" and removed" if remove else "") if local.stop(home, remove=remove) else "no cluster here")


@cluster.command("status")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None)
@_fail_cleanly
def cluster_status(home: Path | None) -> None:
    """Each node, its port, and whether it answers."""
    from sparsesql import cluster as local

    nodes = local.status(home)
    if not nodes:
        raise click.ClickException("no cluster here: sparsesql cluster start")
    for name, port, running in nodes:
        click.echo(f"{name}\t127.0.0.1:{port}\t{'running' if running else 'stopped'}")


@token.command("create")
@click.argument("role")
@click.option("--name", default=None, help="A name to list and revoke it by (default: ROLE-<random>).")
@click.pass_context
@_fail_cleanly
def token_create(ctx: click.Context, role: str, name: str | None) -> None:
    """A new token for ROLE, printed once (only its SHA-256 is stored)."""
    from sparsesql.server import tokens

    name, secret = tokens.create(_db(ctx).conn, role, name)
    click.echo(f"token {name!r} for role {role!r} (shown once; send it as 'Authorization: Bearer <token>'):", err=True)
    click.echo(secret)


@token.command("list")
@click.pass_context
@_fail_cleanly
def token_list(ctx: click.Context) -> None:
    """Every token's name, role and creation time (never the token)."""
    from sparsesql.server import tokens

    for name, role, created in tokens.listed(_db(ctx).conn):
        click.echo(f"{name}\t{role}\t{created:%Y-%m-%d %H:%M:%S %Z}")


@token.command("revoke")
@click.argument("name")
@click.pass_context
@_fail_cleanly
def token_revoke(ctx: click.Context, name: str) -> None:
    """Revoke the token NAME (servers stop accepting it within a minute)."""
    from sparsesql.server import tokens

    if not tokens.revoke(_db(ctx).conn, name):
        raise click.ClickException(f"no token named {name!r} (sparsesql token list shows them)")
    click.echo(f"revoked {name!r}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", default=6433, show_default=True, type=int, help="TCP port (0: any free one, printed).")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="PEM certificate: answer SSLRequest with TLS.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="PEM private key of --tls-cert.")
@click.option("--require-tls", is_flag=True, help="Refuse clients that do not use TLS.")
@click.option("--no-sparse-tier", is_flag=True, help="Run SPARSE candidates in SQL instead of the shared memory tier.")
@click.option("--sparse-tier-memory", default="auto", show_default=True,
              help='Cap per collection of the memory tier, e.g. "2GB"; "auto": a quarter of this machine\'s memory; "none": no cap.')
@click.option("--no-dense-tier", is_flag=True, help="Run DENSE candidates in SQL instead of from the shared in-memory codes.")
@click.option("--dense-tier-memory", default="auto", show_default=True, help='Cap per collection of the dense codes, as --sparse-tier-memory.')
@click.option("--http-port", type=int, default=None, help="Also serve the HTTP JSON API and the web console on this port (0: any free one).")
@click.option("--http-host", default=None, help="Address of the HTTP API (default: --host).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes sharing the ports (default: one per core; 1: a single process).")
@click.pass_context
@_fail_cleanly
def serve(ctx: click.Context, host: str, port: int, tls_cert: str | None, tls_key: str | None, require_tls: bool,
          no_sparse_tier: bool, sparse_tier_memory: str | None, no_dense_tier: bool, dense_tier_memory: str | None,
          http_port: int | None, http_host: str | None, workers: int | None) -> None:
    """Serve the dialect over the PostgreSQL wire protocol (psql -h 127.0.0.1 -p 6433 -U postgres sparsesql)
    and, with --http-port, over HTTP (the web console at http://127.0.0.1:<port>/)."""
    import asyncio
    import logging

    from sparsesql.server.pool import default_workers, one_malloc_arena, run_pool

    one_malloc_arena()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    options = dict(
        dsn=ctx.obj.get("dsn"), host=host, port=port, tls_cert=tls_cert, tls_key=tls_key, require_tls=require_tls,
        sparse_tier=not no_sparse_tier, sparse_tier_memory=sparse_tier_memory,
        dense_tier=not no_dense_tier, dense_tier_memory=dense_tier_memory, http_port=http_port, http_host=http_host,
    )
    workers = workers or default_workers()

    def ready(s, port: int, http_port: int | None) -> None:
        processes = f", {workers} worker processes" if workers > 1 else ""
        click.echo(f"sparsesql serve: listening on {s.host}:{port}, database {s.database!r}" + (" (TLS)" if s.ssl else "") + processes)
        if http_port is not None:
            scheme = "https" if s.ssl else "http"
            click.echo(f"  HTTP API and web console on {scheme}://{s.http_host}:{http_port}/ (OpenAPI at /docs)")
        if s.password_file is not None:
            click.echo(f"  log in as {s.user!r}; its password is in {s.password_file} (mode 0600)")
        sys.stdout.flush()

    if workers > 1:
        sys.exit(run_pool(workers, options, ready))
    from sparsesql.server.serve import Server

    server = Server(**options)
    asyncio.run(server.serve_forever(lambda s: ready(s, s.port, s.http_port)))


@cli.command("eval")
@click.argument("beir_dir", type=click.Path(path_type=Path))
@click.option("--search", default="HYBRID(SPARSE(:q), DENSE(:q))", show_default=True, help="Any SEARCH clause of the dialect.")
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line of the metrics.")
@click.option("--sparse-model", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A local masked-LM folder: load into <name>_splade with a learned field 'splade' it encodes.")
@click.pass_context
@_fail_cleanly
def eval_(ctx: click.Context, beir_dir: Path, search: str, limit: int, as_json: bool, sparse_model: Path | None) -> None:
    """Load BEIR_DIR (once), run every test query, print nDCG@10, Recall@100 and latency."""
    from sparsesql.eval.run import evaluate

    model = str(sparse_model) if sparse_model is not None else None
    result = evaluate(_db(ctx), beir_dir, search, limit=limit, progress=sys.stderr.isatty(), sparse_model=model)
    s = result.summary()
    click.echo(f"collection  {result.collection}   search  {search}")
    click.echo(f"queries     {s['queries']}")
    click.echo(f"nDCG@10     {s['ndcg@10']:.4f}")
    click.echo(f"Recall@100  {s['recall@100']:.4f}")
    click.echo(f"latency     p50 {s['p50_ms']:.1f} ms   p95 {s['p95_ms']:.1f} ms")
    if as_json:
        click.echo(json.dumps(s))


@cli.command()
@click.argument("beir_dirs", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--search", "template", default=None, help="SEARCH clause with {name} placeholders (default: HYBRID's fusion and candidates).")
@click.option("--grid", "grid_specs", multiple=True, help="name=value;value;... for each {name} of --search (repeat per name).")
@click.option("--folds", default=5, show_default=True, help="Cross-validation folds over each collection's queries.")
@click.option("--apply", "apply_to", metavar="COLL", help="Store the chosen settings as COLL's defaults for a bare HYBRID / WITH PRF.")
@click.option("--clear", "clear_from", metavar="COLL", help="Drop COLL's tuned defaults first (alone: nothing else runs).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("sparsesql-tune"), show_default=True,
              help="Write OUT.md (table), OUT.json and OUT.png (nDCG@10 per setting, folds as error bars).")
@click.pass_context
@_fail_cleanly
def tune(ctx: click.Context, beir_dirs: tuple[Path, ...], template: str | None, grid_specs: tuple[str, ...], folds: int,
         apply_to: str | None, clear_from: str | None, out: Path) -> None:
    """Sweep search settings against the judgments of BEIR_DIRS; print the table, the chosen
    setting and its cross-validated nDCG@10."""
    from sparsesql.eval import tune as tuning

    grid = tuning.parse_grid(list(grid_specs)) if grid_specs else None
    if template is not None and grid is None:
        raise click.UsageError("--search with placeholders needs --grid name=value;value;... for each of them")
    if not beir_dirs and clear_from is None:
        raise click.UsageError("give at least one BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv)")
    if clear_from is not None:
        tuning.clear_defaults(_db(ctx), clear_from)
        click.echo(f"collection {clear_from.lower()!r} uses the built-in defaults again")
        if not beir_dirs:
            return
    result = tuning.tune(_db(ctx), list(beir_dirs), search=template or tuning.DEFAULT_TEMPLATE, grid=grid, folds=folds,
                         apply=apply_to, progress=sys.stderr.isatty())
    given = sys.argv[sys.argv.index("tune") + 1 :] if "tune" in sys.argv else [str(d) for d in beir_dirs]
    command = "sparsesql tune " + " ".join(given)
    files = tuning.write_report(result, out, command)
    click.echo(result.table())
    click.echo("")
    click.echo(result.summary())
    click.echo("wrote " + ", ".join(str(f) for f in files))


@cli.command()
@click.argument("revision", default="head")
@click.option("--down", is_flag=True, help="Downgrade to REVISION instead (e.g. base).")
@click.pass_context
@_fail_cleanly
def migrate(ctx: click.Context, revision: str, down: bool) -> None:
    """Upgrade (or downgrade) sparsesql's catalog with its Alembic history."""
    from sparsesql.db import migrate as m
    from sparsesql.db.connect import resolve_dsn

    dsn = resolve_dsn(ctx.obj.get("dsn"))
    (m.downgrade if down else m.upgrade)(dsn, revision)
    click.echo(f"catalog {'downgraded' if down else 'upgraded'} to {revision}")


@cli.command("install-extension")
@click.option("--sharedir", type=click.Path(file_okay=False, path_type=Path), help="PostgreSQL's share directory (`pg_config --sharedir`).")
@click.option("--print", "print_sql", is_flag=True, help="Print the SQL that creates the functions without the extension.")
@click.pass_context
@_fail_cleanly
def install_extension(ctx: click.Context, sharedir: Path | None, print_sql: bool) -> None:
    """Install the sparsesql PostgreSQL extension's files, for CREATE EXTENSION sparsesql."""
    from sparsesql import extension

    if print_sql:
        click.echo(extension.standalone_sql(), nl=False)
        return
    if sharedir is None and ctx.obj.get("dsn"):
        click.echo(
            "An external server loads extensions from its own share directory. On the server's machine run\n"
            '  sparsesql install-extension --sharedir "$(pg_config --sharedir)"\n'
            "then, in each database: CREATE EXTENSION sparsesql CASCADE;\n"
            "Without access to the server's files: sparsesql install-extension --print | psql \"$SPARSESQL_DSN\"\n"
            "(or op.install_extension() in an Alembic migration)."
        )
        return
    paths = extension.install_files(sharedir or extension.embedded_sharedir())
    click.echo(f"installed sparsesql {extension.VERSION} into {paths[0].parent}: {', '.join(p.name for p in paths)}")


@cli.command()
@click.option("--data", type=click.Path(path_type=Path), default=None, help="BEIR folder to load (default: the shipped CISI copy).")
@click.pass_context
@_fail_cleanly
def demo(ctx: click.Context, data: Path | None) -> None:
    """Load a small public corpus, run sparse, dense, hybrid and filtered queries, and evaluate."""
    from sparsesql.cli.demo import run_demo

    run_demo(_db(ctx), data)
