"""SCRAM-SHA-256 verifiers, computed client-side (RFC 5802 / RFC 7677).

The server only ever receives ``SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>``,
which it stores as is; the password never leaves the control machine. Written here
because psycopg has no public helper for it (libpq's PQencryptPasswordConn needs a live
connection and is not exposed by psycopg 3), and the algorithm is a few lines of hashlib.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

ITERATIONS = 4096  # PostgreSQL's scram_iterations default
SALT_BYTES = 16


def _keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    # PostgreSQL runs SASLprep on the password; for the ASCII passwords this bundle
    # generates, SASLprep is the identity.
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    return stored_key, server_key


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def verifier(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """A verifier for ``password`` with a fresh random salt (or the one given)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    stored_key, server_key = _keys(password, salt, iterations)
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def matches(password: str, stored: str) -> bool:
    """Whether ``stored`` (a verifier) was made from ``password``."""
    try:
        scheme, params, keys = stored.split("$")
        iterations, salt = params.split(":")
        if scheme != "SCRAM-SHA-256":
            return False
        expected = verifier(password, salt=base64.b64decode(salt), iterations=int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(expected, stored)
