"""What the doors (a wire session, the HTTP API) need from the server they run in.

server/serve.py builds the doors and hands itself to them; they see it through this protocol, so
they never import serve.py back, and a test can give them any object with these members.
"""

from __future__ import annotations

import ssl
import threading
from typing import TYPE_CHECKING, Protocol

import psycopg

if TYPE_CHECKING:
    from sparsesql.database import Database
    from sparsesql.server.auth import Keys, Verifier
    from sparsesql.server.metrics import Metrics
    from sparsesql.tier.cache import Tiers


class Host(Protocol):
    dsn: str
    database: str
    version: str
    ssl: ssl.SSLContext | None
    require_tls: bool
    mock_secret: bytes
    metrics: Metrics
    tiers: Tiers | None
    admin: psycopg.Connection
    admin_lock: threading.Lock
    http_sessions: object

    def verifier(self, user: str) -> Verifier | None: ...

    def open_backend(self, user: str, keys: Keys, options: dict[str, str]) -> Database: ...

    def register(self, session: object) -> None: ...

    def forget(self, session: object) -> None: ...

    async def cancel(self, pid: int, secret: int, *, forwarded: bool = False) -> None: ...
