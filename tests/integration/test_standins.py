"""The managed-service stand-ins behave like one: PostgreSQL >= 16, TLS only, a master user who is no superuser."""

import psycopg
import pytest

from zeroui_db import contract

pytestmark = [pytest.mark.integration, pytest.mark.cloud]


def test_one_server_per_postgres_plane(cloud_standins):
    assert set(cloud_standins) == {p.key for p in contract.POSTGRES_PLANES}
    assert len({s.address for s in cloud_standins.values()}) == len(cloud_standins)


def test_tls_verify_full_major_16_or_newer(cloud_standins):
    for standin in cloud_standins.values():
        # From the root namespace, through the lab bridge; verify-full checks the address SAN.
        with psycopg.connect(**standin.master_conninfo()) as conn:
            assert int(conn.execute("SHOW server_version_num").fetchone()[0]) >= 160000
            ssl, version = conn.execute(
                "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
            assert ssl and version in ("TLSv1.2", "TLSv1.3")
            assert conn.execute("SHOW password_encryption").fetchone()[0] == "scram-sha-256"


def test_master_is_not_superuser(cloud_standins):
    standin = cloud_standins["tenant"]
    with psycopg.connect(**standin.master_conninfo(), autocommit=True) as conn:
        row = conn.execute("SELECT rolsuper, rolcreatedb, rolcreaterole, rolcanlogin FROM pg_roles "
                           "WHERE rolname = current_user").fetchone()
        assert row == (False, True, True, True)
        assert conn.execute("SELECT pg_has_role('provider_admins', 'MEMBER')").fetchone()[0]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM pg_authid")
        # PostgreSQL 16 semantics: CREATEROLE no longer lets it grant itself server-side powers.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"GRANT pg_execute_server_program TO {standin.master}")
    assert standin.superuser_sql(f"SELECT rolsuper FROM pg_roles WHERE rolname = '{standin.superuser}'") == "t\n"


def test_plaintext_and_superuser_over_tcp_refused(cloud_standins):
    standin = cloud_standins["product"]
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(**standin.master_conninfo(sslmode="disable", channel_binding="disable"), connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="pg_hba.conf rejects connection"):
        psycopg.connect(**standin.master_conninfo(user=standin.superuser), connect_timeout=5)


def test_wrong_password_refused(cloud_standins):
    standin = cloud_standins["shared"]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(**standin.master_conninfo(password="not-the-password"), connect_timeout=5)


def test_pg_dump16_dumps_over_the_socket(cloud_standins):
    # StandIn.pg_dump runs standins.pg_dump16() (pgserver's, checked to be 16.x) as the superuser.
    standin = cloud_standins["shared"]
    with psycopg.connect(**standin.master_conninfo(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE standin_dump")
    try:
        with psycopg.connect(**standin.master_conninfo("standin_dump")) as conn:
            conn.execute("CREATE TABLE marker (id int PRIMARY KEY)")
        dump = standin.pg_dump("standin_dump", "--schema-only")
        assert "-- Dumped by pg_dump version 16." in dump and "-- Dumped from database version 16." in dump
        assert "CREATE TABLE public.marker" in dump
        assert f"OWNER TO {standin.master}" in dump
    finally:
        with psycopg.connect(**standin.master_conninfo(), autocommit=True) as conn:
            conn.execute("DROP DATABASE standin_dump")
