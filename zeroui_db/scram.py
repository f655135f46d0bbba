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
import stringprep
import unicodedata

ITERATIONS = 4096  # PostgreSQL's scram_iterations default
SALT_BYTES = 16

# RFC 4013 section 2.3 (prohibited output) and RFC 3454 A.1 (unassigned in Unicode 3.2).
_PROHIBITED = (
    stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3, stringprep.in_table_c4,
    stringprep.in_table_c5, stringprep.in_table_c6, stringprep.in_table_c7, stringprep.in_table_c8,
    stringprep.in_table_c9, stringprep.in_table_a1,
)


def saslprep(password: str) -> bytes:
    """The bytes libpq and PostgreSQL hash for ``password``: SASLprep (RFC 4013) as
    PostgreSQL's ``pg_saslprep`` does it (src/common/saslprep.c), which both sides run.

    Like PostgreSQL: pure ASCII passes unchanged; the prohibited-character and bidi checks
    look at the mapped input (before NFKC); and a password that fails them, or is not valid
    UTF-8 (bytes smuggled in through the environment), is used as it is rather than refused.
    Hashing anything else would give a verifier that libpq's login never matches.
    """
    raw = password.encode("utf-8", "surrogateescape")
    if password.isascii():
        return raw
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: the original bytes were not UTF-8
        return raw
    # 1) map: non-ASCII spaces to a space, then "commonly mapped to nothing" removed (U+200B
    # is in both tables; PostgreSQL makes it a space)
    mapped = "".join(" " if stringprep.in_table_c12(c) else "" if stringprep.in_table_b1(c) else c for c in password)
    if not mapped:
        return raw
    # 3) prohibit, 4) bidi: on the mapped input, as pg_saslprep checks them
    if any(check(c) for c in mapped for check in _PROHIBITED):
        return raw
    if any(stringprep.in_table_d1(c) for c in mapped) and (
            any(stringprep.in_table_d2(c) for c in mapped)
            or not (stringprep.in_table_d1(mapped[0]) and stringprep.in_table_d1(mapped[-1]))):
        return raw
    # 2) normalize
    return unicodedata.normalize("NFKC", mapped).encode()


def _keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password), salt, iterations)
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


def digest(stored: str) -> str:
    """``<iterations>:<salt>:<SHA-256 of the keys, hex>`` of a SCRAM verifier ("" for
    anything else): enough to tell whether it fits a password (:func:`matches_digest`),
    without the keys that would let someone pose as the server, and not shaped like a
    verifier. ``facts.RoleVerifiers`` computes the same in SQL from ``pg_authid``."""
    scheme, params, keys = (stored.split("$") + ["", ""])[:3]
    if scheme != "SCRAM-SHA-256":
        return ""
    return f"{params}:{hashlib.sha256(keys.encode()).hexdigest()}"


def matches_digest(password: str, stored_digest: str) -> bool:
    """Whether the verifier behind ``stored_digest`` (see :func:`digest`) was made from ``password``."""
    try:
        iterations, salt, _ = stored_digest.split(":")
        expected = verifier(password, salt=base64.b64decode(salt), iterations=int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(digest(expected), stored_digest)
