"""The HTTP JSON API and the web console: a second door onto the same `Database` path.

`sparsesql serve --http-port 8433` runs this app (Starlette under FastAPI, on uvicorn) in the
same process and event loop as the wire protocol, sharing its memory tier, encoders, roles and
metrics. Every statement goes through `Database.query`, so a search answers here exactly as it
does on the wire and in process. Requests run as a PostgreSQL role (http_auth.py): 401 without
credentials, 403 where the role lacks the right.

Errors are JSON: `{"error": {"kind", "message", "sqlstate", "line", "column", "caret"}}`, with
the HTTP status the SQLSTATE implies (400 for the query's own faults, 403, 404, 409, 413, 503).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from sparsesql import errors
from sparsesql.db import ingest_validate
from sparsesql.db.catalog import get_collection
from sparsesql.lang import ast
from sparsesql.lang.parse import parse_statement
from sparsesql.server import types as t
from sparsesql.server.sqlstates import sqlstate
from sparsesql.server.http_auth import HttpSessions, Login, Unauthorized
from sparsesql.server.metrics import CONTENT_TYPE, error_kind, statement_kind

if TYPE_CHECKING:
    from sparsesql.server.host import Host

CONSOLE = Path(__file__).parent / "console"
MAX_QUERY_BYTES = 4 * 2**20  # a /query body: a statement and its parameters (vectors included)
MAX_LINE_BYTES = 16 * 2**20  # one NDJSON document
BATCH = 500  # documents per ingest transaction
_STATUS = {"42501": 403, "42P01": 404, "42703": 400, "23505": 409, "57014": 503, "55000": 503}


class QueryBody(BaseModel):
    sql: str = Field(description="One statement of the dialect (docs/dialect.md).")
    params: dict[str, Any] = Field(default_factory=dict, description="Values for :name (and $n, as key \"n\") placeholders.")
    analyze: bool = Field(False, description="Also return EXPLAIN ANALYZE's text for a SELECT (it runs once more, with timings).")


class HttpError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def jsonable(value: object) -> object:
    """A column value as JSON: dates as ISO text, numeric as a number, arrays as lists."""
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if hasattr(value, "to_list"):
        return value.to_list()
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def error_body(exc: BaseException) -> tuple[int, dict]:
    """The HTTP status and JSON body of a failed request."""
    if isinstance(exc, HttpError):
        return exc.status, {"error": {"kind": exc.kind, "message": exc.message}}
    if isinstance(exc, Unauthorized):
        return 401, {"error": {"kind": "unauthorized", "message": str(exc)}}
    code = sqlstate(exc)
    message = exc.message if isinstance(exc, errors.Error) else str(exc)
    body: dict[str, object] = {"kind": error_kind(exc), "message": message, "sqlstate": code}
    if isinstance(exc, errors.Error) and exc.line is not None:
        body.update(line=exc.line, column=exc.column, caret=exc.highlight)
    return _status(code, exc), {"error": body}


def _status(code: str, exc: BaseException) -> int:
    """The HTTP status of a SQLSTATE: the statement's own fault is 400, the server's state 503."""
    if code in _STATUS:
        return _STATUS[code]
    if code[:2] in ("08", "53", "57"):
        return 503
    if code[:2] in ("42", "22", "0A") or (isinstance(exc, errors.Error) and code != "XX000"):
        return 400
    return 500


def _stages(records) -> list[dict]:
    return [{"stage": r.stage, "label": r.label, "ms": r.ms, "rows": r.rows, "detail": r.detail, "sql": r.sql[:4000]} for r in records]


def _collection(info) -> dict:
    return {
        "name": info.name,
        "documents": info.n_docs,
        "fields": {f.name: f.type for f in info.fields},
        "sparse_fields": [{"name": f.name, "kind": f.kind} for f in info.sparse_fields],
        "dense": info.settings.dense,
        "dim": info.settings.dim,
        "settings": {"k1": info.settings.k1, "b": info.settings.b, "text_fields": list(info.settings.text_fields)},
        "graph_k": (info.extra.get("graph") or {}).get("k"),
        "tuned": info.extra.get("tuned"),
        "eval_runs": info.extra.get("eval_runs", []),
    }


async def _read_limited(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past `limit` bytes (before it is all read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HttpError(413, "too_large", f"the body is {int(declared):,} bytes; at most {limit:,} are accepted here")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HttpError(413, "too_large", f"the body is over {limit:,} bytes, the most accepted here")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(server: "Host") -> FastAPI:
    sessions = HttpSessions(server)
    server.http_sessions = sessions
    metrics = server.metrics
    app = FastAPI(
        title="sparsesql", version=server.version, docs_url=None, redoc_url=None,
        description="Hybrid sparse + dense retrieval over PostgreSQL. Authenticate with `Authorization: Bearer <token>` "
                    "(`sparsesql token create ROLE`) or Basic auth with a PostgreSQL role's password.",
    )

    async def _failed(request: Request, exc: Exception) -> JSONResponse:
        status, body = error_body(exc)
        if status != 401:
            metrics.failed("http", exc)
        # A browser answers WWW-Authenticate with its own password dialog, even for fetch():
        # the console (which asks for credentials itself) says who it is to be spared it.
        console = request.headers.get("x-requested-with") == "sparsesql-console"
        headers = {"WWW-Authenticate": 'Basic realm="sparsesql", charset="UTF-8"'} if status == 401 and not console else None
        return JSONResponse(body, status_code=status, headers=headers)

    # Named classes, not Exception: Starlette answers those in its ExceptionMiddleware, where the
    # response is sent and the exception ends; an Exception handler would re-raise afterwards.
    for kind in (HttpError, Unauthorized, errors.Error, psycopg.Error, t.BadValue):
        app.add_exception_handler(kind, _failed)

    async def login(request: Request) -> Login:
        return await run_in_threadpool(sessions.login, request.headers.get("authorization"))

    @app.post("/query", summary="Run one dialect statement")
    async def query(request: Request) -> JSONResponse:
        """Rows with their scores, each search stage's time and rows (`stages`), and with
        `analyze` the EXPLAIN ANALYZE text. The body is `{"sql": ..., "params": {...}}`."""
        who = await login(request)
        raw = await _read_limited(request, MAX_QUERY_BYTES)
        try:
            body = QueryBody.model_validate_json(raw)
        except ValueError as exc:
            raise HttpError(400, "bad_request", f'the body must be JSON {{"sql": "...", "params": {{...}}}}: {exc}') from None
        return JSONResponse(await run_in_threadpool(_run_query, who, body))

    def _run_query(who: Login, body: QueryBody) -> dict:
        start = time.perf_counter()
        statement = parse_statement(body.sql)
        kind = statement_kind(statement)
        with sessions.session(who) as lease:
            lease.changed = isinstance(statement, ast.SetOption)
            rows = lease.db.query(body.sql, **body.params)
            stages = list(lease.db.last_stages)
            plan = lease.db.explain(body.sql, analyze=True, **body.params) if body.analyze and isinstance(statement, ast.Select) else None
        seconds = time.perf_counter() - start
        metrics.observe("http", kind, seconds, stages)
        columns = list(rows[0].keys()) if rows else []
        out = {"columns": columns, "rows": [{k: jsonable(v) for k, v in r.items()} for r in rows], "row_count": len(rows),
               "ms": seconds * 1000, "stages": _stages(stages)}
        if "cursor" in columns:  # the next page: the same statement AFTER this cursor
            out["next"] = rows[-1]["cursor"]
        if plan is not None:
            out["plan"] = plan
        return out

    @app.get("/collections", summary="Every collection with its size and settings")
    async def collections(request: Request) -> JSONResponse:
        who = await login(request)

        def work() -> list[dict]:
            with sessions.session(who) as lease:
                return [_collection(c) for c in lease.db.collections()]

        return JSONResponse(await run_in_threadpool(work))

    @app.get("/collections/{name}", summary="One collection")
    async def collection(name: str, request: Request) -> JSONResponse:
        who = await login(request)

        def work() -> dict:
            with sessions.session(who) as lease:
                found = lease.db._guard(lambda: get_collection(lease.db.conn, name))
            if found is None:
                raise HttpError(404, "not_found", f"collection {name!r} does not exist")
            return _collection(found)

        return JSONResponse(await run_in_threadpool(work))

    @app.post("/collections/{name}/documents", summary="Add or replace documents (NDJSON, streamed)")
    async def add_documents(name: str, request: Request, on_error: str = "skip") -> JSONResponse:
        """One JSON document a line, as `sparsesql ingest` takes them. Each line is checked on its
        own; a bad one is reported by line number and skipped (`on_error=skip`) or stops the load
        (`on_error=abort`: the lines before it stay written). Documents are written in
        transactions of 500: a batch is all there or all absent."""
        if on_error not in ("skip", "abort"):
            raise HttpError(400, "bad_request", f"on_error must be 'skip' or 'abort', not {on_error!r}")
        who = await login(request)
        report = {"lines": 0, "added": 0, "updated": 0, "unchanged": 0, "rejected": []}
        lease = await run_in_threadpool(sessions.acquire, who)
        try:
            coll = lease.db.collection(name)
            info = await run_in_threadpool(lambda: coll.info)
            batch: list[tuple[int, dict]] = []

            def flush() -> None:
                if not batch:
                    return
                try:
                    added = coll.add([d for _, d in batch], batch_size=BATCH)
                except errors.IngestError as exc:
                    report["rejected"].extend({"line": n, "error": exc.message} for n, _ in batch)
                else:
                    for key in ("added", "updated", "unchanged"):
                        report[key] += getattr(added, key)
                batch.clear()

            async for number, line in _lines(request):
                report["lines"] = number
                problem = _check_line(info, line, number)
                if isinstance(problem, str):
                    report["rejected"].append({"line": number, "error": problem})
                    if on_error == "abort":
                        break
                    continue
                if problem is not None:
                    batch.append((number, problem))
                if len(batch) >= BATCH:
                    await run_in_threadpool(flush)
            await run_in_threadpool(flush)
        finally:
            await run_in_threadpool(sessions.release, who, lease)
        for key in ("added", "updated", "unchanged"):
            metrics.documents.labels(key).inc(report[key])
        metrics.documents.labels("rejected").inc(len(report["rejected"]))
        status = 400 if report["rejected"] and on_error == "abort" else 200
        return JSONResponse(report, status_code=status)

    @app.delete("/collections/{name}/documents/{doc_id}", summary="Delete one document by id")
    async def delete_document(name: str, doc_id: str, request: Request) -> JSONResponse:
        who = await login(request)

        def work() -> int:
            with sessions.session(who) as lease:
                return lease.db.collection(name).delete([doc_id])

        deleted = await run_in_threadpool(work)
        if not deleted:
            raise HttpError(404, "not_found", f"collection {name!r} has no document {doc_id!r}")
        return JSONResponse({"deleted": deleted})

    @app.get("/health", summary="Whether the server and its database answer (no credentials needed)")
    async def health() -> JSONResponse:
        def work() -> bool:
            try:
                with server.admin_lock:
                    server.admin.execute("SELECT 1").fetchone()
                return True
            except Exception:  # noqa: BLE001 - any failure means "not healthy", which is the answer
                return False

        ok = await run_in_threadpool(work)
        return JSONResponse({"status": "ok" if ok else "database unreachable", "version": server.version, "database": server.database},
                            status_code=200 if ok else 503)

    @app.get("/metrics", summary="Prometheus text format (no credentials needed; no collection names or query text)")
    async def metrics_text() -> Response:
        return Response(metrics.text(), media_type=CONTENT_TYPE)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="sparsesql API", swagger_js_url="/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/swagger/swagger-ui.css", swagger_favicon_url="/swagger/favicon-32x32.png")

    @app.get("/", include_in_schema=False)
    async def console() -> FileResponse:
        return FileResponse(CONSOLE / "index.html")

    app.mount("/console", StaticFiles(directory=CONSOLE), name="console")
    try:
        from swagger_ui_bundle import swagger_ui_path

        app.mount("/swagger", StaticFiles(directory=swagger_ui_path), name="swagger")
    except ImportError:  # the API works without its browsable docs; /openapi.json stays
        pass
    return app


async def _lines(request: Request):
    """(line number, bytes) of an NDJSON body as it streams in; a line over MAX_LINE_BYTES is refused."""
    pending, number = b"", 0
    async for chunk in request.stream():
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            number += 1
            yield number, line
        if len(pending) > MAX_LINE_BYTES:
            raise HttpError(413, "too_large", f"line {number + 1} is over {MAX_LINE_BYTES:,} bytes")
    if pending.strip():
        yield number + 1, pending


def _check_line(info, line: bytes, number: int) -> dict | str | None:
    """The document on a line, its problem as text, or None for a blank line."""
    if not line.strip():
        return None
    try:
        doc = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"line {number} is not JSON: {exc}"
    try:
        ingest_validate.validate(info, doc, number, where=f"line {number}")
    except errors.IngestError as exc:
        return exc.message
    return doc
