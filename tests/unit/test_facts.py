"""Parsing what the host says, including when there is nothing (fresh host, --dry)."""

from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from zeroui_db.facts import (
    ClusterInfo, ClusterServerState, PostgresHost, PostgresHostInfo, RoleVerifiers, ServerKey, ServerKeyInfo,
)


def test_postgres_host_parsed():
    out = ["major 15", "cluster 15 main 5432 /var/lib/postgresql/15/main", "cluster 16 zt1 15500 /srv/pg/16/zt1"]
    assert PostgresHost().process(out) == PostgresHostInfo(15, (
        ClusterInfo(15, "main", 5432, "/var/lib/postgresql/15/main"),
        ClusterInfo(16, "zt1", 15500, "/srv/pg/16/zt1"),
    ))
    assert PostgresHost().process(["major"]) == PostgresHostInfo(None, ())  # fresh host, no index


def test_postgres_host_reads_real_files(tmp_path):
    """The shell reads port and data_directory the way postgresql.conf writes them."""
    import subprocess
    conf = tmp_path / "15" / "x" / "postgresql.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("#port = 1\nport = 5433\t\t# (change requires restart)\ndata_directory = '/srv/x'\t# use data\n")
    command = PostgresHost().command().replace("/etc/postgresql", str(tmp_path))
    out = subprocess.run(command, shell=True, capture_output=True, text=True).stdout.splitlines()
    assert PostgresHost().process(out).clusters == (ClusterInfo(15, "x", 5433, "/srv/x"),)


def test_server_state():
    fact = ClusterServerState()
    assert fact.process([]) is None  # not online
    state = fact.process([
        "server=1764312000.25|1|line 7: invalid IP mask",
        "mtime=1764312100.500000000 /etc/postgresql/15/main/pg_hba.conf",
    ])
    assert state.reachable and state.pending_restart == 1
    assert state.conf_load_time == 1764312000.25
    assert state.hba_errors == ("line 7: invalid IP mask",)
    assert state.file_mtimes == {"/etc/postgresql/15/main/pg_hba.conf": 1764312100.5}
    unreachable = fact.process(["server=", "mtime=1.0 /x"])
    assert not unreachable.reachable


def key_and_certificate() -> tuple[bytes, bytes]:
    """A server key's public half and a certificate for it, in PEM, as openssl and cat print them."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "db.pilot.internal")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return public, cert.public_bytes(serialization.Encoding.PEM)


def lines(*pems: bytes) -> list[str]:
    """Command output as pyinfra hands it to process(): lines without their newlines."""
    return b"".join(pems).decode().splitlines()


def test_server_key_and_certificate():
    public, cert = key_and_certificate()
    assert ServerKey().process(lines(public, cert)) == ServerKeyInfo(public, cert)
    # What came back loads as the same key, on its own and inside the certificate.
    loaded = serialization.load_pem_public_key(ServerKey().process(lines(public, cert)).public_key)
    assert loaded == x509.load_pem_x509_certificate(cert).public_key()


def test_server_key_without_certificate_yet():
    public, _ = key_and_certificate()
    assert ServerKey().process(lines(public)) == ServerKeyInfo(public, None)


def test_server_key_nothing_yet():
    """A fresh host (or --dry): openssl and cat print nothing."""
    assert ServerKey().process([]) == ServerKeyInfo(None, None)
    assert ServerKey().process([""]) == ServerKeyInfo(None, None)
    assert ServerKey().default() == ServerKeyInfo(None, None)


def test_server_key_ignores_a_truncated_block():
    public, cert = key_and_certificate()
    half = lines(cert)[:3]  # BEGIN CERTIFICATE without its END
    assert ServerKey().process(lines(public) + half) == ServerKeyInfo(public, None)


def test_role_verifiers():
    """pg_authid read as digests: a role with a password, one without; nothing when the cluster is down."""
    fact = RoleVerifiers()
    command = str(fact.command(roles=("zeroui_tenant_app", "zeroui_tenant_ro"), port=5433))
    assert "pg_authid" in command and "zeroui_tenant_ro" in command and "-p 5433" in command
    assert "rolpassword" in command and "sha256" in command  # the keys never leave the server as they are
    line = '{"zeroui_tenant_app" : "4096:c2FsdA==:9f86d0", "zeroui_tenant_ro" : null}'
    assert fact.process([line]) == {"zeroui_tenant_app": "4096:c2FsdA==:9f86d0", "zeroui_tenant_ro": None}
    assert fact.process([]) == {}
