"""SCRAM-SHA-256 (RFC 5802 / 7677) against the verifiers PostgreSQL keeps for its roles.

The server never sees a password: it reads the role's stored verifier (`pg_authid.rolpassword`,
`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`), runs the exchange with the client,
and on success holds the client's ClientKey, recovered from its proof. That key, with the
ServerKey, is exactly what libpq 18's `scram_client_key` / `scram_server_key` options need to log
the backend session in as the same role (PostgreSQL's own SCRAM pass-through for postgres_fdw
works this way), so the backend checks the role's password again and runs with its privileges.

A user with no such verifier (no role, no password, an MD5 hash) gets a mock exchange with a
salt derived from the user name and then the same failure as a wrong password, as PostgreSQL
does, so a client cannot tell which roles exist.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

MECHANISM = "SCRAM-SHA-256"
_VERIFIER = re.compile(r"^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$")


class AuthFailed(Exception):
    """The exchange failed; `sqlstate` and the message are what the client is told."""

    def __init__(self, message: str, sqlstate: str = "28P01") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@dataclass(frozen=True)
class Verifier:
    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    @classmethod
    def parse(cls, text: str | None) -> "Verifier | None":
        match = _VERIFIER.match(text or "")
        if not match:
            return None
        iterations, salt, stored, server = match.groups()
        return cls(int(iterations), base64.b64decode(salt), base64.b64decode(stored), base64.b64decode(server))


@dataclass(frozen=True)
class Keys:
    """What a successful exchange leaves: enough to log the backend in as the same role."""

    client_key: bytes
    server_key: bytes

    def libpq_options(self) -> dict[str, str]:
        return {
            "scram_client_key": base64.b64encode(self.client_key).decode(),
            "scram_server_key": base64.b64encode(self.server_key).decode(),
        }


def _hmac(key: bytes, text: bytes) -> bytes:
    return hmac.new(key, text, hashlib.sha256).digest()


def _attributes(text: str, where: str) -> dict[str, str]:
    out = {}
    for part in text.split(","):
        if len(part) < 2 or part[1] != "=":
            raise AuthFailed(f"malformed SCRAM {where} message", "08P01")
        out[part[0]] = part[2:]
    return out


class ScramExchange:
    """One server side of an exchange: `first(client_first)` -> server-first message,
    `final(client_final)` -> server-final message and the keys, or AuthFailed."""

    def __init__(self, user: str, verifier: Verifier | None, mock_secret: bytes) -> None:
        self.user = user
        self.verifier = verifier
        # A role without a usable verifier still gets a stable salt, so probing reveals nothing.
        self.salt = verifier.salt if verifier else _hmac(mock_secret, user.encode())[:16]
        self.iterations = verifier.iterations if verifier else 4096
        self.nonce = ""
        self.client_first_bare = ""
        self.server_first = ""
        self.gs2_header = ""

    def first(self, message: bytes) -> bytes:
        try:
            text = message.decode("utf-8")
        except UnicodeDecodeError:
            raise AuthFailed("malformed SCRAM client-first message", "08P01") from None
        flag, _, rest = text.partition(",")
        authzid, _, bare = rest.partition(",")
        if flag.startswith("p"):
            raise AuthFailed("channel binding is not offered by this server (it advertised SCRAM-SHA-256 only)", "08P01")
        if flag not in ("n", "y") or (authzid and not authzid.startswith("a=")):
            raise AuthFailed("malformed SCRAM client-first message", "08P01")
        attrs = _attributes(bare, "client-first")
        if "r" not in attrs or not attrs["r"]:
            raise AuthFailed("SCRAM client-first message has no nonce", "08P01")
        self.gs2_header = f"{flag},{authzid},"
        self.client_first_bare = bare
        self.nonce = attrs["r"] + base64.b64encode(secrets.token_bytes(18)).decode()
        self.server_first = f"r={self.nonce},s={base64.b64encode(self.salt).decode()},i={self.iterations}"
        return self.server_first.encode()

    def final(self, message: bytes) -> tuple[bytes, Keys]:
        try:
            text = message.decode("utf-8")
        except UnicodeDecodeError:
            raise AuthFailed("malformed SCRAM client-final message", "08P01") from None
        without_proof, sep, proof_b64 = text.rpartition(",p=")
        if not sep:
            raise AuthFailed("SCRAM client-final message has no proof", "08P01")
        attrs = _attributes(without_proof, "client-final")
        if attrs.get("r") != self.nonce:
            raise AuthFailed("SCRAM nonce mismatch", "08P01")
        try:
            binding = base64.b64decode(attrs.get("c", ""), validate=True).decode()
            proof = base64.b64decode(proof_b64, validate=True)
        except (ValueError, UnicodeDecodeError):
            raise AuthFailed("malformed SCRAM client-final message", "08P01") from None
        if binding != self.gs2_header:
            raise AuthFailed("SCRAM channel binding check failed", "08P01")
        failed = AuthFailed(f'password authentication failed for user "{self.user}"')
        if self.verifier is None or len(proof) != len(self.verifier.stored_key):
            raise failed
        auth_message = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        signature = _hmac(self.verifier.stored_key, auth_message)
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), self.verifier.stored_key):
            raise failed
        server_signature = _hmac(self.verifier.server_key, auth_message)
        return f"v={base64.b64encode(server_signature).decode()}".encode(), Keys(client_key, self.verifier.server_key)
