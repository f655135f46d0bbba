"""The probe's PostgreSQL client: SCRAM against RFC 7677, channel binding against the certificate
hash computed by ``cryptography``, and a fake server on loopback that asks for what the probe
must never send (cleartext, MD5), lies about the password, or does SCRAM right."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import ssl
import struct
import subprocess
import threading
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from zeroui_db import probe, verify
from zeroui_db.tls import SiteCA

# RFC 7677, section 3: user "user", password "pencil".
RFC_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
RFC_CLIENT_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
PASSWORD = "s3cret-Pass_word"


def test_scram_matches_rfc_7677():
    client = probe.ScramClient("pencil", nonce=RFC_NONCE, user="user")
    assert client.client_first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    assert client.client_final(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    client.check_server_final(RFC_SERVER_FINAL)  # accepted


@pytest.mark.parametrize("final, outcome", [
    (b"v=" + base64.b64encode(b"\0" * 32), "error"),  # a server that does not know the password
    (b"v=", "error"),
    (b"e=invalid-proof", "auth-failed"),
])
def test_a_wrong_server_signature_is_refused(final, outcome):
    client = probe.ScramClient("pencil", nonce=RFC_NONCE, user="user")
    client.client_final(RFC_SERVER_FIRST)
    with pytest.raises(probe.Stop) as stop:
        client.check_server_final(final)
    assert stop.value.outcome == outcome


def test_a_server_nonce_that_does_not_extend_ours_is_refused():
    client = probe.ScramClient("pencil", nonce=RFC_NONCE, user="user")
    with pytest.raises(probe.Stop):
        client.client_final(b"r=someone-elses-nonce,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")


@pytest.mark.parametrize("given, prepared", [
    ("pencil", "pencil"),
    ("I\u00adX", "IX"),  # RFC 4013 examples: soft hyphen mapped to nothing
    ("\u00aa", "a"),  # NFKC
    ("\u2168", "IX"),
    ("a\u00a0b", "a b"),  # non-ASCII space to space
    ("a\u0007b", "a\u0007b"),  # pure ASCII passes unchanged (as in PostgreSQL)
    ("\u0627\u0031", "\u0627\u0031"),  # fails the bidi rule: the raw password is used
    ("a\u0000\u00e9", "a\u0000\u00e9"),  # prohibited: raw
])
def test_saslprep(given, prepared):
    assert probe.saslprep(given) == prepared


def _certificate(key, algorithm):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = datetime.now(timezone.utc)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + timedelta(days=1))
            .sign(key, algorithm).public_bytes(serialization.Encoding.DER))


@pytest.mark.parametrize("make, algorithm, digest", [
    (lambda: ec.generate_private_key(ec.SECP256R1()), hashes.SHA256(), hashlib.sha256),
    (lambda: ec.generate_private_key(ec.SECP384R1()), hashes.SHA384(), hashlib.sha384),
    (lambda: rsa.generate_private_key(65537, 2048), hashes.SHA512(), hashlib.sha512),
    (lambda: rsa.generate_private_key(65537, 2048), hashes.SHA256(), hashlib.sha256),
])
def test_channel_binding_hashes_the_certificate_with_its_signature_hash(make, algorithm, digest):
    der = _certificate(make(), algorithm)
    assert x509.load_der_x509_certificate(der).signature_hash_algorithm.name == algorithm.name
    assert probe.end_point_hash(der) == digest(der).digest()


def test_no_channel_binding_for_a_signature_without_hash():
    assert probe.end_point_hash(_certificate(ed25519.Ed25519PrivateKey.generate(), None)) is None


# -- a fake server on loopback ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A CA and a server certificate for 127.0.0.1 (key and chain in files for ssl)."""
    base = tmp_path_factory.mktemp("probe-tls")
    ca = SiteCA.load_or_create(base / "ca", "t")
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (base / "server.crt").write_bytes(ca.issue(public, ["127.0.0.1"]))
    (base / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    other = SiteCA.load_or_create(base / "other", "o")
    return {"ca": ca.cert_pem.decode(), "other_ca": other.cert_pem.decode(),
            "cert": str(base / "server.crt"), "key": str(base / "server.key")}


def _read(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _message(sock):
    kind = _read(sock, 1)
    return kind, _read(sock, struct.unpack("!i", _read(sock, 4))[0] - 4)


def _send(sock, kind, body):
    sock.sendall(kind + struct.pack("!i", len(body) + 4) + body)


def _auth(sock, code, data=b""):
    _send(sock, b"R", struct.pack("!i", code) + data)


class FakeServer:
    """Speaks the server side of the protocol as ``mode`` says and records what the client sent
    after being asked to authenticate."""

    def __init__(self, tls_files, mode, password=PASSWORD, plus=True):
        self.mode, self.password, self.plus = mode, password, plus
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(tls_files["cert"], tls_files["key"])
        self.cert_der = ssl.PEM_cert_to_DER_cert(open(tls_files["cert"]).read())
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.after_request: list[bytes] = []  # message kinds the client sent once asked
        self.proof_ok = None
        self.binding = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        sock, _ = self.listener.accept()
        sock.settimeout(10)
        try:
            self._session(sock)
        except (EOFError, OSError, ssl.SSLError):
            pass
        finally:
            sock.close()
            self.listener.close()

    def _session(self, sock):
        length, code = struct.unpack("!ii", _read(sock, 8))
        if code == probe.SSL_REQUEST:
            sock.sendall(b"S")
            sock = self.context.wrap_socket(sock, server_side=True)
            length, code = struct.unpack("!ii", _read(sock, 8))
        _read(sock, length - 8)  # the startup parameters
        if self.mode == "cleartext":
            _auth(sock, 3)
        elif self.mode == "md5":
            _auth(sock, 5, os.urandom(4))
        elif self.mode == "trust":
            _auth(sock, 0)
            return self._ready(sock)
        else:
            return self._scram(sock)
        self._record(sock)

    def _record(self, sock):
        while True:
            kind, _ = _message(sock)
            self.after_request.append(kind)

    def _ready(self, sock):
        _send(sock, b"Z", b"I")
        self._record(sock)

    def _scram(self, sock):
        mechanisms = (b"SCRAM-SHA-256-PLUS\0" if self.plus else b"") + b"SCRAM-SHA-256\0\0"
        _auth(sock, 10, mechanisms)
        kind, body = _message(sock)
        self.after_request.append(kind)
        mechanism, rest = body.split(b"\0", 1)
        first = rest[4:].decode()
        split = first.index(",", first.index(",") + 1) + 1  # the gs2 header ends at the second comma
        gs2, bare = first[:split], first[split:]
        nonce = dict(p.split("=", 1) for p in bare.split(","))["r"] + "server-part"
        salt = os.urandom(16)
        server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i=4096"
        _auth(sock, 11, server_first.encode())
        kind, body = _message(sock)
        self.after_request.append(kind)
        final = body.decode()
        without_proof, proof = final.rsplit(",p=", 1)
        fields = dict(p.split("=", 1) for p in without_proof.split(","))
        self.binding = base64.b64decode(fields["c"])
        expected_binding = gs2.encode()
        if mechanism == b"SCRAM-SHA-256-PLUS":
            # The server's own view of its certificate, hashed independently of the probe.
            expected_binding += x509.load_der_x509_certificate(self.cert_der).fingerprint(hashes.SHA256())
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, 4096)
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        auth_message = f"{bare},{server_first},{without_proof}".encode()
        signature = hmac.digest(hashlib.sha256(client_key).digest(), auth_message, "sha256")
        recovered = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature))
        self.proof_ok = hashlib.sha256(recovered).digest() == hashlib.sha256(client_key).digest() and \
            self.binding == expected_binding
        if not self.proof_ok:
            error = b"SFATAL\0C28P01\0Mpassword authentication failed\0\0"
            return _send(sock, b"E", error)
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        if self.mode == "liar":
            server_key = os.urandom(32)  # knows how to say yes, not the password
        v = base64.b64encode(hmac.digest(server_key, auth_message, "sha256")).decode()
        _auth(sock, 12, f"v={v}".encode())
        _auth(sock, 0)
        if self.mode == "no-connect":
            return _send(sock, b"E", b"SFATAL\0C42501\0Mpermission denied for database \"d\"\0\0")
        self._ready(sock)

    def join(self):
        self.thread.join(10)


def _attempt(server, tls_files, password=PASSWORD, tls=True, ca="ca"):
    a = {"host": "127.0.0.1", "port": server.port, "dbname": "d", "user": "u", "tls": tls, "ca": 0,
         "password": password}
    result = probe.attempt(a, [tls_files[ca]], timeout=5)
    server.join()
    return result


@pytest.mark.parametrize("plus", [True, False])
def test_scram_against_a_server_that_checks_the_proof(tls_files, plus):
    server = FakeServer(tls_files, "scram", plus=plus)
    result = _attempt(server, tls_files)
    assert result["outcome"] == "connected", result
    assert result["method"] == ("SCRAM-SHA-256-PLUS" if plus else "SCRAM-SHA-256")
    assert server.proof_ok
    assert server.after_request == [b"p", b"p", b"X"]  # initial response, final, Terminate
    assert result["source"] == "127.0.0.1"


def test_a_wrong_password_is_auth_failed(tls_files):
    server = FakeServer(tls_files, "scram", password="not-" + PASSWORD)
    result = _attempt(server, tls_files)
    assert (result["outcome"], result["sqlstate"]) == ("auth-failed", "28P01")


def test_a_server_that_does_not_know_the_password_is_not_a_connection(tls_files):
    server = FakeServer(tls_files, "liar")
    result = _attempt(server, tls_files)
    assert result["outcome"] == "error" and "signature" in result["message"]


def test_denied_after_authentication(tls_files):
    server = FakeServer(tls_files, "no-connect")
    result = _attempt(server, tls_files)
    assert (result["outcome"], result["sqlstate"]) == ("denied", "42501")


@pytest.mark.parametrize("mode, method", [("cleartext", "password"), ("md5", "md5")])
def test_cleartext_and_md5_are_never_answered(tls_files, mode, method):
    server = FakeServer(tls_files, mode)
    result = _attempt(server, tls_files)
    assert (result["outcome"], result["method"]) == ("auth-requested", method)
    assert server.after_request == []  # not a byte of password, hashed or not


def test_no_password_no_answer(tls_files):
    server = FakeServer(tls_files, "scram")
    result = _attempt(server, tls_files, password=None)
    assert result["outcome"] == "auth-requested"
    assert server.after_request == []


def test_no_password_without_tls_even_when_given(tls_files):
    server = FakeServer(tls_files, "scram")
    result = _attempt(server, tls_files, tls=False)
    assert result["outcome"] == "auth-requested"
    assert server.after_request == []


def test_trust_is_a_connection(tls_files):
    server = FakeServer(tls_files, "trust")
    result = _attempt(server, tls_files, password=None)
    assert (result["outcome"], result["method"]) == ("connected", "trust")


def test_a_server_certificate_from_another_ca_fails_before_anything_is_sent(tls_files):
    server = FakeServer(tls_files, "scram")
    result = _attempt(server, tls_files, ca="other_ca")
    assert result["outcome"] == "tls-failed"
    assert server.after_request == []


def test_nothing_listening_is_unreachable():
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    result = probe.attempt({"host": "127.0.0.1", "port": port, "dbname": "d", "user": "u", "tls": True,
                            "ca": 0, "password": None}, [""], timeout=2)
    assert result["outcome"] == "unreachable"


def test_runs_from_stdin_with_no_password_in_argv(tls_files):
    """The command verify runs on a host: python3 -c <bootstrap>, the probe and request on stdin."""
    server = FakeServer(tls_files, "scram")

    class Host:  # runs the command as pyinfra's @local connector would: a shell line
        name = "fake"

        def run_shell_command(self, command, _stdin, _timeout):
            self.argv = command.get_raw_value()
            proc = subprocess.run(self.argv, shell=True, input=_stdin.encode(), capture_output=True, timeout=60)
            out = type("Output", (), {"stdout": proc.stdout.decode(), "stderr": proc.stderr.decode()})
            return proc.returncode == 0, out

    host = Host()
    request = {"action": "attempt", "cas": [tls_files["ca"]], "attempts": [
        {"host": "127.0.0.1", "port": server.port, "dbname": "d", "user": "u", "tls": True, "ca": 0,
         "password": PASSWORD}]}
    result = verify.run_probe(host, request)["results"][0]
    server.join()
    assert result["outcome"] == "connected" and server.proof_ok
    assert PASSWORD not in host.argv and "python3 -c" in host.argv
    assert json.dumps(result).find(PASSWORD) == -1


def test_the_hosts_ca_file_first_then_the_one_sent_along(tls_files, tmp_path, monkeypatch):
    cafile = tmp_path / "tenant-ca.crt"
    cafile.write_text(tls_files["ca"])
    server = FakeServer(tls_files, "scram")
    a = {"host": "127.0.0.1", "port": server.port, "dbname": "d", "user": "u", "tls": True, "ca": 0,
         "cafile": str(cafile), "password": PASSWORD}
    result = probe.attempt(a, [tls_files["other_ca"]], timeout=5)  # the file wins
    server.join()
    assert (result["outcome"], result["trust"]) == ("connected", str(cafile))

    # A login outside the env files' group may not read the file: the CA sent along serves.
    real = ssl.create_default_context

    def unreadable(*args, cafile=None, **kwargs):
        if cafile:
            raise PermissionError(13, "Permission denied", cafile)
        return real(*args, **kwargs)

    monkeypatch.setattr(probe.ssl, "create_default_context", unreadable)
    server = FakeServer(tls_files, "scram")
    result = probe.attempt({**a, "port": server.port}, [tls_files["ca"]], timeout=5)
    server.join()
    assert (result["outcome"], result["trust"]) == ("connected", "the CA sent along")


def test_a_missing_ca_file_is_a_tls_failure(tls_files, tmp_path):
    server = FakeServer(tls_files, "scram")
    a = {"host": "127.0.0.1", "port": server.port, "dbname": "d", "user": "u", "tls": True, "ca": 0,
         "cafile": str(tmp_path / "absent.crt"), "password": PASSWORD}
    result = probe.attempt(a, [tls_files["ca"]], timeout=5)
    server.join()
    assert result["outcome"] == "tls-failed" and "absent.crt: No such file" in result["message"]
    assert server.after_request == []
