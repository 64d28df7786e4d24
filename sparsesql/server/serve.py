"""`sparsesql serve`: one server (a process, or a worker of a pool) for one database, many clients.

The server keeps one administrative connection (the DSN's role) for reading the SCRAM
verifiers of the roles clients log in as, and opens one backend session per client, as that
client's role, so GRANTs, `sparsesql grant` roles and row-level security apply unchanged. The
in-memory sparse tier is shared by every session (its lock serialises each search's use of an
index); dense encoders are cached per process and loaded once.

On the embedded database the superuser has no password (it is reached over a Unix socket in
the data folder, with trust); the first `serve` gives it a random one, stored in
`SPARSESQL_HOME/server-password` with mode 0600, since TCP clients must authenticate.

In a pool (`serve --workers N`, server/pool.py) each worker is one `Server`, handed the
listening sockets the supervisor bound (`listen`, `http_listen`) and the `Peers` a CancelRequest
for another worker's session goes to.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import ssl
import threading
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sparsesql.database import Database
from sparsesql.db import embedded
from sparsesql.db.connect import open_connection, resolve_dsn
from sparsesql.errors import ConfigError
from sparsesql.server.auth import Keys, Verifier
from sparsesql.server.metrics import Metrics
from sparsesql.server.peers import Peers
from sparsesql.server.session import Session, cancel_backend
from sparsesql.sizes import parse_bytes
from sparsesql.tier.cache import Tiers

log = logging.getLogger("sparsesql.server")
PASSWORD_FILE = "server-password"
JANITOR_SECONDS = 0.5
DRAIN_SECONDS = 10.0  # on SIGTERM, how long running statements may take to finish
EXIT_SECONDS = 5.0  # then how long closing may take before the process ends regardless


class Server:
    def __init__(
        self,
        dsn: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 6433,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        require_tls: bool = False,
        sparse_tier: bool = True,
        sparse_tier_memory: int | str | None = "auto",
        dense_tier: bool = True,
        dense_tier_memory: int | str | None = "auto",
        http_port: int | None = None,
        http_host: str | None = None,
        listen: socket.socket | None = None,
        http_listen: socket.socket | None = None,
        peers: Peers | None = None,
    ) -> None:
        from sparsesql import __version__

        self.embedded = not dsn and not os.environ.get("SPARSESQL_DSN")
        self.dsn = resolve_dsn(dsn)
        self.host, self.port = host, port
        self.version = __version__
        self.admin = open_connection(self.dsn)
        self.admin_lock = threading.Lock()
        self.database = self.admin.info.dbname
        self.user = self.admin.info.user
        self._check_verifiers_readable()
        self.password_file = self._first_password() if self.embedded else None
        self.ssl = _tls_context(tls_cert, tls_key)
        self.tls_cert, self.tls_key = tls_cert, tls_key
        self.require_tls = require_tls
        self.tiers = (
            Tiers(embedded.home(), parse_bytes(sparse_tier_memory), dense=dense_tier, dense_memory_limit=parse_bytes(dense_tier_memory))
            if sparse_tier else None
        )
        self.mock_secret = secrets.token_bytes(32)
        self.sessions: dict[int, Session] = {}
        self._listener: asyncio.base_events.Server | None = None
        self.metrics = Metrics(self._gauges)
        self.http_port, self.http_host = http_port, http_host or host
        self.http_sessions = None  # the HTTP API's session pool, once it runs
        self._http = None
        self.listen, self.http_listen, self.peers = listen, http_listen, peers

    # ------------------------------------------------------------------ roles and passwords

    def _check_verifiers_readable(self) -> None:
        try:
            with self.admin_lock:
                self.admin.execute("SELECT rolpassword FROM pg_authid LIMIT 1").fetchall()
        except psycopg.errors.InsufficientPrivilege as exc:
            raise ConfigError(
                f"sparsesql serve checks clients' SCRAM passwords against pg_authid, which role {self.user!r} "
                "cannot read: give --dsn a superuser's connection string"
            ) from exc

    def verifier(self, user: str) -> Verifier | None:
        """The role's SCRAM verifier, when it may log in now (None: refuse, after a mock exchange)."""
        with self.admin_lock:
            row = self.admin.execute(
                "SELECT rolpassword FROM pg_authid WHERE rolname = %s AND rolcanlogin "
                "AND (rolvaliduntil IS NULL OR rolvaliduntil > now())",
                (user,),
            ).fetchone()
        return Verifier.parse(row[0]) if row else None

    def _first_password(self) -> Path:
        """Give the embedded superuser a password the first time it is served over TCP."""
        path = embedded.home() / PASSWORD_FILE
        if self.verifier(self.user) is None:
            password = secrets.token_urlsafe(18)
            hashed = self.admin.pgconn.encrypt_password(password.encode(), self.user.encode(), b"scram-sha-256").decode()
            with self.admin_lock:
                self.admin.execute(
                    psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(psycopg.sql.Identifier(self.user), psycopg.sql.Literal(hashed))
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(password + "\n")
            os.chmod(path, 0o600)
        return path

    def open_backend(self, user: str, keys: Keys, options: dict[str, str]) -> Database:
        """The client's own backend session, logged in as its role with the keys its SCRAM
        exchange proved (libpq 18's SCRAM pass-through), sharing this process's tiers."""
        base = {k: v for k, v in conninfo_to_dict(self.dsn).items() if k not in ("user", "password", "passfile")}
        dsn = make_conninfo(**base, user=user, **keys.libpq_options(), **{k: v for k, v in options.items() if v})
        db = Database(dsn)
        db.conn.prepare_threshold = None  # the backend's prepared statements are the relay's to name
        db.tiers = self.tiers
        return db

    # ------------------------------------------------------------------ sessions

    def register(self, session: Session) -> None:
        self.sessions[session.pid] = session

    def forget(self, session: Session) -> None:
        if self.sessions.get(session.pid) is session:
            del self.sessions[session.pid]

    async def cancel(self, pid: int, secret: int, *, forwarded: bool = False) -> None:
        """A CancelRequest: cancel the matching session's running backend query, nothing else;
        a key this worker does not hold goes to the pool's other workers (once)."""
        session = self.sessions.get(pid)
        if session is None and self.peers is not None and not forwarded:
            self.peers.forward(pid, secret)
            return
        if session is None or not secrets.compare_digest(session.secret.to_bytes(4, "big"), secret.to_bytes(4, "big")):
            return
        if session.db is not None:
            await asyncio.get_running_loop().run_in_executor(None, cancel_backend, session.db)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await Session(self, reader, writer).run()

    async def _janitor(self) -> None:
        """Cancel the running statement of every client that hung up meanwhile, so its backend
        session is released now rather than when the statement would have ended."""
        while True:
            await asyncio.sleep(JANITOR_SECONDS)
            self.metrics.refresh()
            for session in list(self.sessions.values()):
                if session.hung_up() and session.db is not None:
                    await asyncio.get_running_loop().run_in_executor(None, cancel_backend, session.db)

    def _gauges(self):
        """Open sessions and tier memory, read at each scrape."""
        from prometheus_client.core import GaugeMetricFamily

        sessions = GaugeMetricFamily("sparsesql_sessions", "Open client sessions, by door and state.", labels=["door", "state"])
        sessions.add_metric(["wire", "open"], len(self.sessions))
        if self.http_sessions is not None:
            busy, idle = self.http_sessions.counts()
            sessions.add_metric(["http", "busy"], busy)
            sessions.add_metric(["http", "idle"], idle)
        memory = GaugeMetricFamily("sparsesql_tier_memory_bytes", "Memory the shared tier holds, by half.", labels=["half"])
        if self.tiers is not None:
            with self.tiers.lock:
                memory.add_metric(["sparse"], sum(loaded.memory_bytes() for loaded in self.tiers.loaded.values()))
                if self.tiers.dense is not None:
                    memory.add_metric(["dense"], sum(f.data.memory_bytes() for f in self.tiers.dense.loaded.values()))
                memory.add_metric(["filters"], sum(f.data.memory_bytes() for f in self.tiers.filters.loaded.values()))
        return [sessions, memory]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._janitor_task = loop.create_task(self._janitor())
        if self.listen is not None:
            self._listener = await asyncio.start_server(self._client, sock=self.listen)
        else:
            try:
                self._listener = await asyncio.start_server(self._client, self.host, self.port, backlog=1024)
            except OSError as exc:
                raise ConfigError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from exc
        self.port = self._listener.sockets[0].getsockname()[1]
        if self.peers is not None:
            self.peers.listen(loop, lambda pid, secret: loop.create_task(self.cancel(pid, secret, forwarded=True)))
        if self.http_port is not None:
            await self._start_http()

    async def _start_http(self) -> None:
        """The HTTP API on the same event loop (uvicorn), its port known once it listens."""
        import uvicorn

        from sparsesql.server.http_api import create_app

        config = uvicorn.Config(create_app(self), host=self.http_host, port=self.http_port, log_level="warning",
                                lifespan="off", access_log=False, ssl_certfile=self.tls_cert, ssl_keyfile=self.tls_key)
        self._http = uvicorn.Server(config)
        self._http.install_signal_handlers = lambda: None  # serve_forever owns SIGINT / SIGTERM
        self._http_task = asyncio.get_running_loop().create_task(self._http.serve(sockets=[self.http_listen] if self.http_listen else None))
        while not self._http.started:
            if self._http_task.done():
                self._http_task.result()  # raises why it could not listen
                raise ConfigError(f"the HTTP API could not listen on {self.http_host}:{self.http_port}")
            await asyncio.sleep(0.01)
        self.http_port = self._http.servers[0].sockets[0].getsockname()[1]

    async def stop_http(self) -> None:
        if self._http is not None:
            self._http.should_exit = True
            await self._http_task
            if self.http_sessions is not None:
                self.http_sessions.close()

    async def serve_forever(self, ready: "callable | None" = None) -> None:
        await self.start()
        if ready:
            ready(self)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        # Whatever a session is stuck in (a backend that does not answer a cancel, a client that
        # reads nothing), the process ends within DRAIN_SECONDS + EXIT_SECONDS of the signal.
        watchdog = threading.Timer(DRAIN_SECONDS + EXIT_SECONDS, _exit_now)
        watchdog.daemon = True
        watchdog.start()
        self._listener.close()
        await self.stop_http()
        deadline = loop.time() + DRAIN_SECONDS
        while any(session.busy for session in self.sessions.values()) and loop.time() < deadline:
            await asyncio.sleep(0.05)  # statements already running finish and are answered
        for session in list(self.sessions.values()):
            session.writer.close()
        await asyncio.sleep(0.1)
        self.close()

    def close(self) -> None:
        """Release what the server holds of PostgreSQL and of the pool (before a fork, too)."""
        self.admin.close()
        if self.peers is not None:
            self.peers.close()


def _exit_now() -> None:
    log.warning("sessions did not close within %.0f s of the stop signal: exiting regardless", DRAIN_SECONDS + EXIT_SECONDS)
    logging.shutdown()
    os._exit(0)


def _tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if not cert and not key:
        return None
    if not (cert and key):
        raise ConfigError("TLS needs both --tls-cert and --tls-key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS certificate {cert!r} and key {key!r}: {exc}") from exc
    return context
