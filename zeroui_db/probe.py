"""Connection attempts made on a client host: a small PostgreSQL client, standard library only.

``zeroui-db verify`` sends this file's source to ``python3 -c`` on each client host (over
SSH or locally) followed by a JSON request on stdin, so a host needs nothing but Python 3:
no psql, no psycopg, no file written. Passwords travel in that request, never in argv.

Written by hand because no client library ships with every host, and because an attempt
must say *where* it stopped, which a library hides: refused before authentication (pg_hba,
no TLS, no route), asked for a password, authenticated and then refused by the database
(no CONNECT), or connected. What it speaks:

* TLS: an SSLRequest, then verify-full (the certificate chains to the given CA and names
  the host dialled), TLS 1.2 or newer;
* the v3 StartupMessage;
* SCRAM-SHA-256 (RFC 5802 / RFC 7677), SCRAM-SHA-256-PLUS with ``tls-server-end-point``
  binding when the server offers it; the server's signature is checked before the session
  counts as connected;
* never a cleartext or an MD5 password: a server that asks for one is reported and gets
  no answer. Nor does any server when the request holds no password for the attempt.

Request: ``{"action": "route", "targets": [[host, port], ...]}`` gives the source address
each target is reached from (no packet is sent); ``{"action": "attempt", "timeout": s,
"cas": [pem, ...], "attempts": [{"host", "port", "dbname", "user", "tls", "cafile" (a CA file
on the host), "ca" (an index into cas, used when there is no cafile or this login may not read
it), "password" | null}]}`` gives one result per attempt: ``{"outcome", "sqlstate", "message",
"source", "method", "trust"}``. Outcomes: connected, rejected
(an error before any authentication request), auth-requested (not answered), auth-failed,
denied (authenticated, then refused), no-tls, tls-failed, unreachable, error.
"""

import base64
import hashlib
import hmac
import json
import os
import socket
import ssl
import stringprep
import struct
import sys
import unicodedata
from concurrent.futures import ThreadPoolExecutor

SSL_REQUEST = 80877103
PROTOCOL_3 = 196608
APPLICATION_NAME = "zeroui-verify"
AUTH_OK, AUTH_CLEARTEXT, AUTH_MD5, AUTH_SASL, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL = 0, 3, 5, 10, 11, 12
AUTH_NAMES = {2: "kerberos", AUTH_CLEARTEXT: "password", AUTH_MD5: "md5", 6: "scm", 7: "gss", 9: "sspi"}
SCRAM, SCRAM_PLUS = "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"
MAX_MESSAGE = 1 << 20
PARALLEL = 8


class Stop(Exception):
    """An attempt ends: ``outcome`` and what the server said."""

    def __init__(self, outcome, message="", sqlstate=None, method=None):
        super().__init__(message)
        self.outcome, self.message, self.sqlstate, self.method = outcome, message, sqlstate, method


# -- SCRAM-SHA-256 (RFC 5802, RFC 7677) ---------------------------------------------------------

def saslprep(password):
    """RFC 4013 SASLprep, falling back to the raw string as PostgreSQL does (pg_saslprep)."""
    if password.isascii():
        return password  # PostgreSQL passes pure ASCII through unchanged
    chars = [" " if stringprep.in_table_c12(c) else c for c in password if not stringprep.in_table_b1(c)]
    text = unicodedata.normalize("NFKC", "".join(chars))
    prohibited = (stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3,
                  stringprep.in_table_c4, stringprep.in_table_c5, stringprep.in_table_c6,
                  stringprep.in_table_c7, stringprep.in_table_c8, stringprep.in_table_c9, stringprep.in_table_a1)
    if not text or any(test(c) for c in text for test in prohibited):
        return password
    if any(stringprep.in_table_d1(c) for c in text):
        if any(stringprep.in_table_d2(c) for c in text) or not (
                stringprep.in_table_d1(text[0]) and stringprep.in_table_d1(text[-1])):
            return password
    return text


def _hmac(key, msg):
    return hmac.digest(key, msg, "sha256")


class ScramClient:
    """One SCRAM-SHA-256 exchange. ``binding``: None (the client cannot bind), ``"n"`` (it can,
    the server offered no PLUS) or the tls-server-end-point bytes for SCRAM-SHA-256-PLUS."""

    def __init__(self, password, nonce=None, binding=None, user=""):
        self.password = saslprep(password)
        self.nonce = nonce or base64.b64encode(os.urandom(18)).decode()
        if isinstance(binding, bytes):
            self.mechanism, self.gs2, self.cbind = SCRAM_PLUS, "p=tls-server-end-point,,", binding
        else:
            self.mechanism, self.gs2, self.cbind = SCRAM, ("y,," if binding == "n" else "n,,"), b""
        # PostgreSQL takes the user from the StartupMessage and ignores this one (libpq sends "").
        self.first_bare = f"n={user},r={self.nonce}"
        self.server_signature = None

    def client_first(self):
        return (self.gs2 + self.first_bare).encode()

    def client_final(self, server_first):
        text = server_first.decode()
        fields = dict(part.split("=", 1) for part in text.split(","))
        nonce, salt, iterations = fields.get("r", ""), fields.get("s"), fields.get("i", "")
        if not nonce.startswith(self.nonce) or nonce == self.nonce or not salt or not iterations.isdigit():
            raise Stop("error", "the server's SCRAM first message is malformed", method=self.mechanism)
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), base64.b64decode(salt), int(iterations))
        client_key = _hmac(salted, b"Client Key")
        channel = base64.b64encode(self.gs2.encode() + self.cbind).decode()
        without_proof = f"c={channel},r={nonce}"
        auth_message = f"{self.first_bare},{text},{without_proof}".encode()
        signature = _hmac(hashlib.sha256(client_key).digest(), auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        self.server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def check_server_final(self, server_final):
        fields = dict(part.split("=", 1) for part in server_final.decode().split(","))
        if "e" in fields:
            raise Stop("auth-failed", f"SCRAM: {fields['e']}", method=self.mechanism)
        try:
            given = base64.b64decode(fields.get("v", ""), validate=True)
        except ValueError:
            given = b""
        if self.server_signature is None or not hmac.compare_digest(given, self.server_signature):
            raise Stop("error", "the server's SCRAM signature is wrong: it does not know the password",
                       method=self.mechanism)


# -- tls-server-end-point (RFC 5929): the hash of the server certificate ------------------------

# Signature algorithm OIDs (DER content bytes) -> the hash of the certificate's signature;
# MD5 and SHA-1 are replaced by SHA-256 (RFC 5929, section 4.1).
_SIGNATURE_HASHES = {
    "1.2.840.113549.1.1.4": "sha256", "1.2.840.113549.1.1.5": "sha256",  # md5/sha1WithRSA
    "1.2.840.113549.1.1.11": "sha256", "1.2.840.113549.1.1.12": "sha384",
    "1.2.840.113549.1.1.13": "sha512", "1.2.840.113549.1.1.14": "sha224",
    "1.2.840.10045.4.1": "sha256", "1.2.840.10045.4.3.1": "sha224",  # ecdsa-with-SHA1/SHA224
    "1.2.840.10045.4.3.2": "sha256", "1.2.840.10045.4.3.3": "sha384", "1.2.840.10045.4.3.4": "sha512",
}


def _der(data, pos):
    """(tag, content start, content end) of the DER element at ``pos``."""
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    return tag, pos, pos + length


def _oid(content):
    first = content[0]
    parts, value = [first // 40, first % 40], 0
    for byte in content[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


def end_point_hash(cert_der):
    """The tls-server-end-point channel binding data of a DER certificate, or None when its
    signature algorithm names no usable hash (PostgreSQL then offers no binding either)."""
    _, start, _ = _der(cert_der, 0)  # Certificate ::= SEQUENCE {
    _, _, tbs_end = _der(cert_der, start)  # tbsCertificate,
    _, alg_start, _ = _der(cert_der, tbs_end)  # signatureAlgorithm SEQUENCE { OID, ... }
    tag, oid_start, oid_end = _der(cert_der, alg_start)
    name = _SIGNATURE_HASHES.get(_oid(cert_der[oid_start:oid_end])) if tag == 0x06 else None
    return hashlib.new(name, cert_der).digest() if name else None


# -- the wire protocol --------------------------------------------------------------------------

def _recv(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise Stop("error", "the server closed the connection")
        data += chunk
    return data


def _message(sock):
    kind = _recv(sock, 1)
    length = struct.unpack("!i", _recv(sock, 4))[0]
    if not 4 <= length <= MAX_MESSAGE:
        raise Stop("error", f"not a PostgreSQL server (message {kind!r} of length {length})")
    return kind, _recv(sock, length - 4)


def _send(sock, kind, body):
    sock.sendall(kind + struct.pack("!i", len(body) + 4) + body)


def _error(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields.get("C"), fields.get("M", "")


def _startup(user, dbname):
    params = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in (
        ("user", user), ("database", dbname), ("application_name", APPLICATION_NAME)))
    body = struct.pack("!i", PROTOCOL_3) + params + b"\0"
    return struct.pack("!i", len(body) + 4) + body


def _tls(sock, attempt, cas):
    sock.sendall(struct.pack("!ii", 8, SSL_REQUEST))
    answer = _recv(sock, 1)
    if answer == b"N":
        raise Stop("no-tls", "the server does not offer TLS")
    if answer != b"S":
        raise Stop("error", f"unexpected answer {answer!r} to the TLS request")
    try:
        context = None
        if attempt.get("cafile"):
            try:
                context = ssl.create_default_context(cafile=attempt["cafile"])
                attempt["trust"] = attempt["cafile"]
            except PermissionError:  # readable by the services' group, not by this login
                if attempt.get("ca") is None:
                    raise Stop("tls-failed", f"CA file {attempt['cafile']}: permission denied") from None
            except (OSError, ssl.SSLError) as e:
                raise Stop("tls-failed", f"CA file {attempt['cafile']}: {getattr(e, 'strerror', None) or e}") from None
        if context is None:
            context = ssl.create_default_context(cadata=cas[attempt["ca"]])
            attempt["trust"] = "the CA sent along"
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context.wrap_socket(sock, server_hostname=attempt["host"])  # verify-full
    except (ssl.SSLError, OSError) as e:
        raise Stop("tls-failed", getattr(e, "verify_message", None) or str(e)) from None


def _authenticate(sock, attempt, code, body):
    """Answer the server's authentication request, only with SCRAM and only with a password."""
    password = attempt.get("password")
    if code != AUTH_SASL:
        name = AUTH_NAMES.get(code, f"method {code}")
        # Cleartext and MD5 would hand the server the password or a replayable hash of it.
        raise Stop("auth-requested", f"the server asked for {name}; not answered", method=name)
    offered = [m.decode() for m in body.split(b"\0") if m]
    if password is None or not isinstance(sock, ssl.SSLSocket):  # no password ever leaves without TLS
        raise Stop("auth-requested", f"the server asked for {', '.join(offered)}; no password given",
                   method=offered[0] if offered else None)
    # Bind to the TLS channel when the server offers it. "y" would tell a server that offered
    # PLUS that it did not (a downgrade it must refuse), so a certificate whose hash is unknown
    # gets "n": the client cannot bind.
    binding = end_point_hash(sock.getpeercert(binary_form=True)) if SCRAM_PLUS in offered else "n"
    scram = ScramClient(password, binding=binding)
    if scram.mechanism not in offered:
        raise Stop("auth-requested", f"the server offers {', '.join(offered)}, not {SCRAM}", method=offered[0])
    first = scram.client_first()
    _send(sock, b"p", scram.mechanism.encode() + b"\0" + struct.pack("!i", len(first)) + first)
    expect = AUTH_SASL_CONTINUE
    while True:
        kind, body = _message(sock)
        if kind == b"E":
            sqlstate, message = _error(body)
            raise Stop("auth-failed", message, sqlstate, scram.mechanism)
        if kind != b"R":
            continue
        code = struct.unpack("!i", body[:4])[0]
        if code == AUTH_SASL_CONTINUE and expect == AUTH_SASL_CONTINUE:
            _send(sock, b"p", scram.client_final(body[4:]))
            expect = AUTH_SASL_FINAL
        elif code == AUTH_SASL_FINAL and expect == AUTH_SASL_FINAL:
            scram.check_server_final(body[4:])
            expect = AUTH_OK
        elif code == AUTH_OK and expect == AUTH_OK:
            return scram.mechanism
        else:
            raise Stop("error", f"authentication message {code} out of order", method=scram.mechanism)


def _session(sock, attempt, cas):
    if attempt["tls"]:
        sock = _tls(sock, attempt, cas)
    sock.sendall(_startup(attempt["user"], attempt["dbname"]))
    method, stage = None, "startup"
    while True:
        kind, body = _message(sock)
        if kind == b"E":
            sqlstate, message = _error(body)
            raise Stop("rejected" if stage == "startup" else "denied", message, sqlstate, method)
        if kind == b"R" and stage == "startup":
            code = struct.unpack("!i", body[:4])[0]
            method = "trust" if code == AUTH_OK else _authenticate(sock, attempt, code, body[4:])
            stage = "session"
        elif kind == b"Z" and stage == "session":
            _send(sock, b"X", b"")  # Terminate
            return method
        # Anything else (ParameterStatus, BackendKeyData, notices) needs no answer.


def attempt(a, cas, timeout):
    a = dict(a)
    result = {"outcome": None, "sqlstate": None, "message": "", "source": None, "method": None, "trust": None}
    try:
        sock = socket.create_connection((a["host"], a["port"]), timeout=timeout)
    except OSError as e:
        result.update(outcome="unreachable", message=str(e))
        return result
    try:
        result["source"] = sock.getsockname()[0]
        result["method"] = _session(sock, a, cas)
        result["outcome"] = "connected"
    except Stop as stop:
        result.update(outcome=stop.outcome, message=stop.message, sqlstate=stop.sqlstate)
        result["method"] = stop.method or result["method"]
    except (OSError, ValueError, struct.error) as e:  # a timeout, a reset, garbage on the wire
        result.update(outcome="error", message=f"{type(e).__name__}: {e}")
    finally:
        sock.close()
    result["trust"] = a.get("trust")
    return result


def source_address(host, port):
    """The local address connections to ``(host, port)`` leave from (a UDP connect sends nothing)."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            return sock.getsockname()[0]
    except OSError:
        return None


def main(request):
    if request["action"] == "route":
        return {"python": sys.version.split()[0],
                "sources": [source_address(host, port) for host, port in request["targets"]]}
    if request["action"] == "attempt":
        cas, timeout = request.get("cas", []), request.get("timeout", 5)
        with ThreadPoolExecutor(PARALLEL) as pool:
            return {"results": list(pool.map(lambda a: attempt(a, cas, timeout), request["attempts"]))}
    raise ValueError(f"unknown action {request['action']!r}")


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.stdin.buffer.read()))))
