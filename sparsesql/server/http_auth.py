"""Who an HTTP request runs as, and the backend sessions it runs on.

Two ways in, both ending as a PostgreSQL role, so rights are the wire's (and the database's):
- Basic auth with a role's own password, checked against its SCRAM verifier in `pg_authid`
  (the password is turned into the SCRAM keys, which log the backend in as that role exactly as
  the wire's SCRAM pass-through does); a correct check is remembered for a minute, keyed by a
  hash of the credentials, so a client need not pay PBKDF2 on every request;
- a bearer token (`sparsesql token create ROLE`), standing for its role: the backend is the
  server's own connection with SET SESSION AUTHORIZATION, re-applied on every reconnect.

Sessions are pooled per login. A session a request changed with SET, or whose connection
broke, is closed instead of returned: every request starts from the defaults.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sparsesql.database import Database
from sparsesql.server import tokens
from sparsesql.server.auth import Keys, Verifier

if TYPE_CHECKING:
    from sparsesql.server.host import Host

REMEMBER_S = 60.0  # a checked password or token is trusted this long before it is checked again
IDLE_PER_LOGIN = 32  # pooled sessions kept per login (requests run on at most 40 threads: anyio's default)


class Unauthorized(Exception):
    """No credentials, or wrong ones: HTTP 401 (the message says which, never whether a role exists)."""


@dataclass(frozen=True)
class Login:
    user: str
    via: str  # "password" | "token"
    keys: Keys | None = None  # password logins: the SCRAM keys that log the backend in


def keys_from_password(verifier: Verifier, password: str) -> Keys | None:
    """The SCRAM keys a password yields, when it matches the verifier (else None)."""
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), verifier.salt, verifier.iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    if not hmac.compare_digest(hashlib.sha256(client_key).digest(), verifier.stored_key):
        return None
    if not hmac.compare_digest(server_key, verifier.server_key):
        return None
    return Keys(client_key, server_key)


@dataclass
class Lease:
    db: Database
    changed: bool = False  # the request changed the session's settings: close it afterwards


class HttpSessions:
    def __init__(self, server: "Host") -> None:
        self.server = server
        self.lock = threading.Lock()
        self.remembered: dict[str, tuple[Login, float]] = {}
        self.idle: dict[Login, list[Database]] = {}
        self.busy = 0

    def login(self, authorization: str | None) -> Login:
        """The Login an Authorization header proves; raises Unauthorized."""
        if not authorization:
            raise Unauthorized("this endpoint needs credentials: Authorization: Bearer <token> (sparsesql token create ROLE) "
                               "or Basic auth with a role's password")
        key = hashlib.sha256(authorization.encode()).hexdigest()
        with self.lock:
            known = self.remembered.get(key)
        if known is not None and known[1] > time.monotonic():
            return known[0]
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer":
            with self.server.admin_lock:
                role = tokens.role_of(self.server.admin, value.strip())
            if role is None:
                raise Unauthorized("unknown or revoked token")
            login = Login(role, "token")
        elif scheme.lower() == "basic":
            try:
                user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise Unauthorized("malformed Basic credentials (base64 of user:password)") from None
            verifier = self.server.verifier(user) if sep else None
            keys = keys_from_password(verifier, password) if verifier is not None else None
            if keys is None:
                raise Unauthorized(f'password authentication failed for user "{user}"')
            login = Login(user, "password", keys)
        else:
            raise Unauthorized(f"unsupported authorization scheme {scheme!r}: use Bearer or Basic")
        with self.lock:
            self.remembered[key] = (login, time.monotonic() + REMEMBER_S)
        return login

    def _open(self, login: Login) -> Database:
        if login.keys is not None:
            return self.server.open_backend(login.user, login.keys, {"application_name": "sparsesql-http"})
        base = {k: v for k, v in conninfo_to_dict(self.server.dsn).items()}
        db = Database(make_conninfo(**base, application_name="sparsesql-http"))
        db.tiers = self.server.tiers

        def become(conn: psycopg.Connection) -> None:
            conn.execute(sql.SQL("SET SESSION AUTHORIZATION {}").format(sql.Identifier(login.user)))

        become(db.conn)
        db.on_connect = become
        return db

    def acquire(self, login: Login) -> "Lease":
        """A backend session of `login` for one request (pooled, else opened now)."""
        with self.lock:
            pool = self.idle.setdefault(login, [])
            db = pool.pop() if pool else None
            self.busy += 1
        try:
            return Lease(db if db is not None else self._open(login))
        except BaseException:
            with self.lock:
                self.busy -= 1
            raise

    def release(self, login: Login, lease: "Lease") -> None:
        """Back to the pool, unless the request changed the session (`lease.changed`, a SET) or
        left it broken or inside a transaction."""
        conn = lease.db._conn
        idle = not conn.closed and not conn.broken and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with self.lock:
            self.busy -= 1
            pool = self.idle.setdefault(login, [])
            if idle and not lease.changed and len(pool) < IDLE_PER_LOGIN:
                pool.append(lease.db)
                return
        lease.db.close()

    @contextmanager
    def session(self, login: Login) -> Iterator["Lease"]:
        lease = self.acquire(login)
        try:
            yield lease
        finally:
            self.release(login, lease)

    def counts(self) -> tuple[int, int]:
        """(sessions serving a request now, idle pooled sessions)."""
        with self.lock:
            return self.busy, sum(len(p) for p in self.idle.values())

    def close(self) -> None:
        with self.lock:
            pools, self.idle = self.idle, {}
        for pool in pools.values():
            for db in pool:
                db.close()
