"""The per-site CA and its server certificates, checked by openssl and a real TLS handshake."""

import ipaddress
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from zeroui_db.tls import REISSUE_BEFORE_DAYS, SiteCA, TLSError, names_of, not_after, reissue_reason

REPO = Path(__file__).resolve().parents[2]
NAMES = ["db.pilot.internal", "127.0.0.1", "fd00::5"]
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def server_key(kind="ec"):
    """A key as the server would make it, and the public half the deploy brings back."""
    key = ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, pub


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def openssl(*args, check=True):
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=check)


def test_ca_is_private_and_stable(tmp_path):
    old_umask = os.umask(0)  # even a careless umask must not expose the key
    try:
        ca = SiteCA.load_or_create(tmp_path / "secrets", "pilot")
    finally:
        os.umask(old_umask)
    key_path = tmp_path / "secrets" / "pilot-ca.key"
    assert mode(tmp_path / "secrets") == 0o700
    assert mode(key_path) == 0o600
    assert ca.cert_path == tmp_path / "secrets" / "pilot-ca.crt"
    assert b"BEGIN PRIVATE KEY" in key_path.read_bytes()  # PKCS8
    key_bytes = key_path.read_bytes()
    again = SiteCA.load_or_create(tmp_path / "secrets", "pilot")
    assert again.cert_pem == ca.cert_pem and key_path.read_bytes() == key_bytes

    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    assert cert.subject.rfc4514_string() == "CN=ZeroUI pilot DB CA"
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey) and cert.public_key().curve.name == "secp256r1"
    assert 3649 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 3651


def test_existing_directory_keeps_its_mode(tmp_path):
    tmp_path.chmod(0o750)
    SiteCA.load_or_create(tmp_path, "pilot")
    assert mode(tmp_path) == 0o750


def test_concurrent_first_calls_make_one_ca(tmp_path):
    threads_dir, procs_dir = tmp_path / "threads", tmp_path / "procs"
    start, results = threading.Barrier(8), []

    def create():
        start.wait()
        results.append(SiteCA.load_or_create(threads_dir, "pilot").cert_pem)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1

    code = ("import sys; from zeroui_db.tls import SiteCA; "
            "sys.stdout.buffer.write(SiteCA.load_or_create(sys.argv[1], 'pilot').cert_pem)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(procs_dir)], cwd=REPO, stdout=subprocess.PIPE)
             for _ in range(4)]
    outputs = {p.communicate(timeout=60)[0] for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(outputs) == 1 and outputs == {(procs_dir / "pilot-ca.crt").read_bytes()}
    assert sorted(f.name for f in procs_dir.iterdir()) == [".pilot-ca.lock", "pilot-ca.crt", "pilot-ca.key"]


@pytest.mark.parametrize("damage, words", [
    (lambda d: (d / "pilot-ca.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n"), "pilot-ca.key: not a"),
    (lambda d: (d / "pilot-ca.crt").write_bytes(b"garbage"), "pilot-ca.crt: not a readable certificate"),
    (lambda d: (d / "pilot-ca.crt").unlink(), "pilot-ca.crt: missing"),
    (lambda d: (d / "pilot-ca.key").chmod(0o644), "readable by others (mode 0644); chmod 600"),
])
def test_damaged_ca_is_one_clear_line(tmp_path, damage, words):
    SiteCA.load_or_create(tmp_path, "pilot")
    damage(tmp_path)
    with pytest.raises(TLSError) as e:
        SiteCA.load_or_create(tmp_path, "pilot")
    message = str(e.value)
    assert "\n" not in message and words in message and str(tmp_path) in message


def test_another_sites_certificate_beside_a_key_is_refused(tmp_path):
    SiteCA.load_or_create(tmp_path, "pilot")
    SiteCA.load_or_create(tmp_path, "other")
    os.replace(tmp_path / "other-ca.crt", tmp_path / "pilot-ca.crt")
    with pytest.raises(TLSError, match="does not belong to pilot-ca.key"):
        SiteCA.load_or_create(tmp_path, "pilot")


def test_a_stray_certificate_from_a_crash_is_replaced(tmp_path):
    (tmp_path / "pilot-ca.crt").write_bytes(b"half a file")  # crash after the cert, before the key
    ca = SiteCA.load_or_create(tmp_path, "pilot")
    assert (tmp_path / "pilot-ca.crt").read_bytes() == ca.cert_pem


def test_issued_certificate_passes_openssl(tmp_path):
    ca = SiteCA.load_or_create(tmp_path, "pilot")
    _, pub = server_key()
    crt = tmp_path / "server.crt"
    crt.write_bytes(ca.issue(pub, NAMES))
    assert openssl("verify", "-x509_strict", "-CAfile", ca.cert_path, crt).stdout.strip() == f"{crt}: OK"
    for flag, name in [("-verify_ip", "127.0.0.1"), ("-verify_ip", "fd00::5"), ("-verify_hostname", NAMES[0])]:
        openssl("verify", "-x509_strict", "-CAfile", ca.cert_path, flag, name, crt)
    assert openssl("verify", "-CAfile", ca.cert_path, "-verify_ip", "10.0.0.9", crt, check=False).returncode != 0

    listed = openssl("x509", "-in", crt, "-noout", "-ext", "subjectAltName").stdout.splitlines()[1]
    entries = [entry.strip().split(":", 1) for entry in listed.split(",")]
    assert [kind for kind, _ in entries] == ["DNS", "IP Address", "IP Address"]
    assert [v if k == "DNS" else str(ipaddress.ip_address(v)) for k, v in entries] == NAMES
    assert names_of(crt.read_bytes()) == NAMES

    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    assert cert.subject.rfc4514_string() == "CN=db.pilot.internal"
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_encipherment  # RFC 5480: not on an EC key
    assert cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)


def test_issue_rsa_key_and_validity(tmp_path):
    ca = SiteCA.load_or_create(tmp_path, "pilot")
    _, pub = server_key("rsa")
    pem = ca.issue(pub, ["db.pilot.internal"], days=397, now=NOW)
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert not_after(pem) == NOW + timedelta(days=397)
    assert cert.serial_number != x509.load_pem_x509_certificate(ca.issue(pub, ["x"], now=NOW)).serial_number


def test_issue_refuses_a_bad_public_key_or_no_names(tmp_path):
    ca = SiteCA.load_or_create(tmp_path, "pilot")
    with pytest.raises(TLSError, match="not PEM"):
        ca.issue(b"-----BEGIN PRIVATE KEY-----\n", NAMES)
    with pytest.raises(TLSError, match="at least one name"):
        ca.issue(server_key()[1], [])


def test_reissue_reason(tmp_path):
    ca = SiteCA.load_or_create(tmp_path / "a", "pilot")
    impostor = SiteCA.load_or_create(tmp_path / "b", "pilot")  # same name, different key
    _, pub = server_key()
    _, other_pub = server_key()
    fine = ca.issue(pub, NAMES, now=NOW)

    def reason(cert, key=pub, names=NAMES, now=NOW):
        return reissue_reason(cert, ca.cert_pem, key, names, now=now)

    assert reason(None) == "no certificate"
    assert reason(b"not a certificate") == "unreadable certificate"
    assert reason(fine) is None
    assert reason(fine, names=["127.0.0.1", "DB.pilot.internal", "fd00:0::5"]) is None  # order, case, IP spelling
    assert reason(impostor.issue(pub, NAMES, now=NOW)) == "not issued by the site CA"
    assert reason(ca.issue(other_pub, NAMES, now=NOW)) == "issued for another key"
    assert reason(fine, names=["db.pilot.internal", "10.0.0.9"]) == (
        "names differ (have ['127.0.0.1', 'db.pilot.internal', 'fd00::5'], want ['10.0.0.9', 'db.pilot.internal'])")
    soon = ca.issue(pub, NAMES, days=10, now=NOW)
    assert reason(soon) == f"expires on {NOW + timedelta(days=10):%Y-%m-%d} (within {REISSUE_BEFORE_DAYS} days)"
    assert reason(soon, now=NOW + timedelta(days=11)) == f"expired on {NOW + timedelta(days=10):%Y-%m-%d}"
    assert reason(ca.issue(pub, NAMES, days=31, now=NOW)) is None
    assert reason(fine, now=NOW + timedelta(days=396 - REISSUE_BEFORE_DAYS)) is None  # 31 days left
    assert reason(fine, now=NOW + timedelta(days=397 - REISSUE_BEFORE_DAYS)).startswith("expires on")


def test_tls_handshake_verifies_against_the_site_ca(tmp_path):
    ca = SiteCA.load_or_create(tmp_path, "pilot")
    key, pub = server_key()
    crt, key_file = tmp_path / "server.crt", tmp_path / "server.key"
    crt.write_bytes(ca.issue(pub, ["127.0.0.1", "db.pilot.internal"]))
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(crt, key_file)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        for _ in range(3):
            conn, _ = listener.accept()
            try:
                with server.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass  # the client refused us: expected for the wrong name

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = ssl.create_default_context(cafile=ca.cert_path)
    client.verify_flags |= ssl.VERIFY_X509_STRICT  # as Python 3.13's default context does

    def connect(name):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with client.wrap_socket(raw, server_hostname=name) as tls:
                return tls.recv(2)

    assert connect("127.0.0.1") == b"ok"
    assert connect("db.pilot.internal") == b"ok"
    with pytest.raises(ssl.SSLCertVerificationError):
        connect("db.other.internal")
    thread.join(5)
    listener.close()
