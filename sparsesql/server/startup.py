"""A session's first phase: TLS and cancel requests, the startup packet, SCRAM, the backend login.

Once `startup` returns True the session holds its backend connection (logged in as the client's
role) and the client has its ParameterStatus values, its cancel key and ReadyForQuery.
"""

from __future__ import annotations

import struct

import psycopg

from sparsesql.server import dialect, wire
from sparsesql.server.auth import MECHANISM, AuthFailed, ScramExchange
from sparsesql.server.sqlstates import SessionError
from sparsesql.server.relay import Relay
from sparsesql.server.wire import Fields, ProtocolViolation

# ParameterStatus values relayed from the backend at startup and whenever a SET changes them.
REPORTED = (
    "server_version", "server_encoding", "client_encoding", "DateStyle", "TimeZone", "integer_datetimes",
    "standard_conforming_strings", "IntervalStyle", "application_name", "is_superuser",
    "session_authorization", "default_transaction_read_only", "in_hot_standby", "search_path",
)
_NOT_FORWARDED = {"user", "database", "replication", "options", "application_name", "client_encoding"}


class StartupPhase:
    """Session methods for the startup phase (mixed into `Session`)."""

    async def startup(self) -> bool:
        while True:
            packet = await wire.read_startup(self.reader)
            if packet.code == wire.SSL_REQUEST:
                if self.server.ssl is not None and not self.tls:
                    await self.send(b"S")
                    await self.writer.start_tls(self.server.ssl)
                    self.tls = True
                else:
                    await self.send(b"N")
                continue
            if packet.code == wire.GSSENC_REQUEST:
                await self.send(b"N")
                continue
            if packet.code == wire.CANCEL_REQUEST:
                if len(packet.payload) >= 8:
                    pid, secret = struct.unpack("!iI", packet.payload[:8])
                    await self.server.cancel(pid, secret)
                return False
            if packet.code >> 16 != 3:
                raise SessionError("0A000", f"unsupported frontend protocol {packet.code >> 16}.{packet.code & 0xFFFF}: sparsesql serve speaks 3.0")
            break
        params = packet.params
        unknown = [k for k in params if k.startswith("_pq_.")]
        if packet.code & 0xFFFF or unknown:
            body = struct.pack("!ii", 0, len(unknown)) + b"".join(wire.cstr(k) for k in unknown)
            self.writer.write(wire.message(b"v", body))
        if params.get("replication", "false").lower() not in ("false", "off", "no", "0"):
            raise SessionError("0A000", "replication connections do not pass through sparsesql serve; connect to PostgreSQL directly")
        user = params.get("user")
        if not user:
            raise SessionError("28000", "no PostgreSQL user name specified in startup packet")
        database = params.get("database") or user
        if database != self.server.database:
            raise SessionError("3D000", f'database "{database}" does not exist: this server serves "{self.server.database}"')
        if self.server.ssl is not None and self.server.require_tls and not self.tls:
            raise SessionError("28000", "this server accepts only TLS connections (sslmode=require)")
        keys = await self.authenticate(user)
        try:
            self.db = await self.call(self.server.open_backend, user, keys, backend_options(params))
        except psycopg.OperationalError as exc:
            raise SessionError("28000", f"PostgreSQL refused the session for role {user!r}: {str(exc).strip()}") from exc
        except Exception as exc:  # ConfigError and the like
            raise SessionError("08006", f"could not open the backend session: {exc}") from exc
        self.relay = Relay(self.db.conn)
        conn = self.db.conn
        # a notice's fields are read in the handler: its result is freed once the handler returns
        conn.add_notice_handler(lambda diag: self.notices.append(dialect.backend_fields(diag)))
        # notifications that arrive while psycopg runs a dialect statement's queries
        conn.add_notify_handler(lambda n: self.notifications.append(
            wire.notification(n.pid, n.channel.encode(self.encoding), n.payload.encode(self.encoding))))
        self.pid = conn.info.backend_pid
        self.server.register(self)
        out = [wire.auth(0)]
        out.extend(self.parameter_changes())
        out.append(wire.parameter_status("sparsesql_version", self.server.version))
        out.append(wire.backend_key(self.pid, self.secret))
        out.append(wire.ready(b"I"))
        await self.send(b"".join(out))
        return True

    async def authenticate(self, user: str):
        verifier = await self.loop.run_in_executor(None, self.server.verifier, user)
        exchange = ScramExchange(user, verifier, self.server.mock_secret)
        await self.send(wire.auth(10, wire.cstr(MECHANISM) + b"\0"))
        kind, body = await wire.read_message(self.reader)
        if kind != b"p":
            raise ProtocolViolation(f"expected a SASLInitialResponse, got message {kind!r}")
        f = Fields(body, kind)
        mechanism, length = f.cstring(), f.int32()
        data = f.bytes(length) if length >= 0 else b""
        if mechanism != MECHANISM:
            raise AuthFailed(f"SASL mechanism {mechanism!r} is not offered; use {MECHANISM}", "28000")
        await self.send(wire.auth(11, exchange.first(data)))
        kind, body = await wire.read_message(self.reader)
        if kind != b"p":
            raise ProtocolViolation(f"expected a SASLResponse, got message {kind!r}")
        final, keys = exchange.final(body)
        self.writer.write(wire.auth(12, final))
        return keys

    def parameter_changes(self) -> list[bytes]:
        """ParameterStatus for each reported parameter whose value is new to the client. Read
        raw from libpq: a client_encoding Python has no codec for must not break the session."""
        out = []
        pgconn = self.relay.pgconn
        for name in REPORTED:
            raw = pgconn.parameter_status(name.encode())
            if raw is None:
                continue
            value = raw.decode(self.encoding, errors="replace")
            if self.reported.get(name) != value:
                self.reported[name] = value
                if name == "client_encoding":
                    self.relay.encoding = wire.python_codec(value)
                out.append(wire.parameter_status(name, value, self.encoding))
        return out


def backend_options(params: dict[str, str]) -> dict[str, str]:
    """libpq options carrying the client's startup parameters to its backend session."""
    settings = [f"-c {_escape(k)}={_escape(v)}" for k, v in params.items() if k not in _NOT_FORWARDED and not k.startswith("_pq_.")]
    if params.get("options"):
        settings.insert(0, params["options"])
    out = {"application_name": params.get("application_name", "")}
    if params.get("client_encoding"):
        out["client_encoding"] = params["client_encoding"]
    if settings:
        out["options"] = " ".join(settings)
    return out


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(" ", "\\ ")
