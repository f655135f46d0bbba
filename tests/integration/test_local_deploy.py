"""The pilot deployed on @local (session fixture ``local_site``), checked from outside.

Client hosts are lab namespaces (conftest.CLIENT_HOSTS); the server listens on loopback
and the lab bridge. Every name (plane, database, role, env var, client group) comes from
``zeroui_db.contract``; expectations come from the contract, not from the rendered files.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import runpy
import secrets
import subprocess
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
import pytest
import testinfra
from psycopg import sql

import matrix
from clusters import drop_cluster, existing_clusters, free_port, unique_cluster_name
from conftest import CLIENT_HOSTS
from deployment import run_deploy
from hosts import probe, service_host, sql_from_host, superuser_rows

from zeroui_db import contract, envfiles, scram
from zeroui_db.config import parse_site
from zeroui_db.site import SERVER_GROUP

pytestmark = pytest.mark.integration

# How PostgreSQL words a refusal by pg_hba.conf: an explicit "reject" line, or no line at all.
HBA_REFUSALS = ("pg_hba.conf rejects connection", "no pg_hba.conf entry")
INSUFFICIENT_PRIVILEGE = "42501"
# deploy.py's names for the operations that converge databases/roles/privileges and write pg_hba.conf.
PLANES_OP = f"Plane databases, roles and privileges ({'+'.join(p.key for p in contract.POSTGRES_PLANES)})"
HBA_OP = "pg_hba.conf (plane boundaries)"
LOGIN_ROLES = tuple(r for p in contract.POSTGRES_PLANES for r in p.login_roles)
PASSWORD_ROLES = (contract.ADMIN_ROLE, *LOGIN_ROLES)  # every role that has a password
PLANE_DBS = tuple(p.store for p in contract.POSTGRES_PLANES)


# -- helpers -----------------------------------------------------------------------------------






@contextmanager
def admin_connection(site, dbname: str = contract.MAINTENANCE_DB):
    """The admin role over TLS on loopback, as an operator on the workstation connects."""
    with psycopg.connect(
        host="127.0.0.1", port=site.port, dbname=dbname, user=contract.ADMIN_ROLE,
        password=site.password(contract.ADMIN_ROLE), sslmode="verify-full", sslrootcert=site.ca_file,
        channel_binding="require", connect_timeout=10, autocommit=True,
    ) as conn:
        yield conn


def dry_plan(site, inventory: Path | None = None) -> list[dict]:
    """``pyinfra --json --dry`` *without* ``-y``: with ``-y`` pyinfra skips change
    detection and every op's ``hosts_with_change`` is empty whatever the host's state."""
    payload = json.loads(run_deploy(inventory or site.inventory, "--dry", env=site.env).stdout)
    assert payload["results"] is None  # nothing was executed
    assert payload["plan"], "a dry run should list the deploy's operations"
    return payload["plan"]




def planned_changes(plan: list[dict]) -> list[str]:
    return [op["name"] for op in plan if op["hosts_with_change"] or op["hosts_with_conditional_change"]]


def inventory_globals(site) -> dict:
    """The inventory file's groups, as pyinfra reads them."""
    return {k: v for k, v in runpy.run_path(str(site.inventory)).items() if not k.startswith("_")}


def site_config(site):
    """The deployed site's parsed config (same parser as the deploy)."""
    return parse_site(inventory_globals(site)[SERVER_GROUP][1]["zeroui"])


def inventory_variant(site, directory: Path, mutate: Callable[[dict], None]) -> Path:
    """A copy of ``site``'s inventory with ``mutate`` applied to its ``zeroui`` dict."""
    groups = copy.deepcopy(inventory_globals(site))
    mutate(groups[SERVER_GROUP][1]["zeroui"])
    path = directory / site.inventory.name
    path.write_text("".join(f"{name} = {value!r}\n" for name, value in groups.items()))
    return path


def file_fingerprint(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


def footprint(site) -> dict:
    """What a refused deploy must leave untouched: clusters, config, env files, secrets, catalog."""
    conf = Path(f"/etc/postgresql/{site.version}/{site.cluster}")
    files = [conf / "pg_hba.conf", conf / "postgresql.conf", site.secrets_dir / f"{site.site}.json",
             *sorted(site.env_dir.iterdir())]
    with admin_connection(site) as conn:
        catalog = conn.execute(
            "SELECT (SELECT json_agg(r ORDER BY rolname) FROM pg_roles r WHERE rolname = ANY(%s)),"
            " (SELECT json_agg(json_build_array(datname, datacl::text) ORDER BY datname) FROM pg_database)",
            [[contract.ADMIN_ROLE, *(r for p in contract.POSTGRES_PLANES for r in p.roles)]],
        ).fetchone()
    return {"clusters": existing_clusters(), "files": {str(f): file_fingerprint(f) for f in files},
            "catalog": catalog}


# -- 1. the connection matrix --------------------------------------------------------------------


@pytest.fixture(scope="module")
def matrix_results(lab, local_site):
    passwords = {role: entry["password"] for role, entry in local_site.secrets()["roles"].items()}
    assert set(PASSWORD_ROLES) <= set(passwords)
    return matrix.run_matrix(lab, local_site.server_address, local_site.port, passwords, clients=list(CLIENT_HOSTS))


def _is(value, want) -> bool:
    return want is None or (value in want if isinstance(want, (set, frozenset, tuple, list)) else value == want)


def select(results, client=None, user=None, dbname=None, sslmode=None):
    rows = [r for r in results if _is(r[0].client, client) and _is(r[0].user, user)
            and _is(r[0].dbname, dbname) and _is(r[0].sslmode, sslmode)]
    assert rows, "selection matched no attempt: the test would prove nothing"
    return rows


def not_refused_by_hba(rows) -> list[str]:
    """Attempts that connected, or were refused by something other than pg_hba."""
    return [f"{a.client} as {a.user} to {a.dbname} ({a.sslmode}): {'connected' if ok else error}"
            for a, ok, error in rows if ok or not any(m in error for m in HBA_REFUSALS)]


def refused(rows) -> list[str]:
    return [f"{a.client} as {a.user} to {a.dbname} ({a.sslmode}): {error}" for a, ok, error in rows if not ok]


def test_connection_matrix_matches_contract(matrix_results):
    """Every client host x credential x database x TLS mode connects exactly when the contract allows."""
    assert matrix.mismatches(matrix_results) == []
    allowed = {(a.client, a.user, a.dbname) for a, ok, _ in matrix_results if ok}
    # Each plane's two login roles, from that plane's service host, to that plane's database, over TLS.
    assert allowed == {(service_host(p), r, p.store) for p in contract.POSTGRES_PLANES for r in p.login_roles}


def test_every_refusal_comes_from_pg_hba(matrix_results):
    """pg_hba, not authentication or privileges, is what turns every lab attempt away (it ends in reject-all)."""
    assert not_refused_by_hba([r for r in matrix_results if not r[0].expected()]) == []


def test_right_password_from_wrong_host_is_refused(matrix_results):
    """The product app's own credentials work from the product host and nowhere else."""
    plane = contract.PRODUCT
    rows = select(matrix_results, user=plane.app_role, dbname=plane.store, sslmode="require")
    assert refused([r for r in rows if r[0].client == service_host(plane)]) == []
    assert not_refused_by_hba([r for r in rows if r[0].client != service_host(plane)]) == []
    # The case named in the brief: product app credentials from the tenant host.
    tenant_host = [r for r in rows if r[0].client == service_host(contract.TENANT)]
    assert len(tenant_host) == 1 and not_refused_by_hba(tenant_host) == []


def test_right_host_wrong_role_is_refused(matrix_results):
    """From the tenant host to the tenant database only tenant roles get in; others' valid credentials do not."""
    plane = contract.TENANT
    rows = select(matrix_results, client=service_host(plane), dbname=plane.store, sslmode="require")
    assert refused([r for r in rows if r[0].user in plane.login_roles]) == []
    others = [r for r in rows if r[0].user not in plane.login_roles]
    assert {a.user for a, _, _ in others} >= {contract.PRODUCT.app_role, contract.SHARED.app_role, contract.ADMIN_ROLE}
    assert not_refused_by_hba(others) == []


def test_connections_without_tls_are_refused(matrix_results):
    """sslmode=disable is refused for everyone, including attempts that succeed over TLS."""
    rows = select(matrix_results, sslmode="disable")
    assert not_refused_by_hba(rows) == []
    assert [e for _, _, e in rows if "no encryption" not in e] == []
    ok_over_tls = {(a.client, a.user, a.dbname) for a, ok, _ in matrix_results if ok}
    assert ok_over_tls and ok_over_tls <= {(a.client, a.user, a.dbname) for a, _, _ in rows}


def test_superuser_is_refused_over_tcp(matrix_results, local_site):
    """The superuser never logs in over TCP: not from any lab host, not even from loopback with TLS."""
    assert not_refused_by_hba(select(matrix_results, user=matrix.SUPERUSER)) == []
    with pytest.raises(psycopg.OperationalError) as excinfo:
        psycopg.connect(host="127.0.0.1", port=local_site.port, dbname=contract.MAINTENANCE_DB,
                        user=matrix.SUPERUSER, password="irrelevant", sslmode="require", connect_timeout=5)
    assert "pg_hba.conf rejects connection" in str(excinfo.value)


def test_intruder_is_refused_everywhere(matrix_results):
    """A host in no client group gets nothing, whatever credentials it holds."""
    assert not_refused_by_hba(select(matrix_results, client="intruder")) == []


@pytest.mark.parametrize("rule", contract.HARD_RULES, ids=lambda r: f"hard-rule-{r.number}-{r.group.key}")
def test_hard_rule_is_enforced_by_pg_hba(matrix_results, rule):
    """The group's hosts reach no forbidden plane database, and its credentials work there from nowhere."""
    forbidden = [p.store for p in rule.forbidden]
    assert not_refused_by_hba(select(matrix_results, client=rule.group.key, dbname=forbidden)) == []
    if rule.group.credential_roles:
        rows = select(matrix_results, user=rule.group.credential_roles, dbname=forbidden)
        assert not_refused_by_hba(rows) == []


def test_admin_connects_over_loopback_with_tls(local_site):
    """The admin role gets in from loopback with TLS (the deploy's own path), and TLS is really on."""
    with admin_connection(local_site) as conn:
        user, ssl = conn.execute(
            "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert (user, ssl) == (contract.ADMIN_ROLE, True)


# -- 2. idempotency ----------------------------------------------------------------------------


def test_redeploy_changes_nothing(local_site):
    """A second deploy reports zero changed operations (pyinfra's JSON results)."""
    assert local_site.first_run.changed, "the fixture's first deploy should have done the work"
    run = local_site.deploy()
    assert run.errors == []
    assert run.changed == []
    assert run.results["totals"]["success"] == 0 and run.results["failed_hosts"] == []


def test_dry_run_plans_no_change(local_site):
    """``pyinfra --json --dry`` on the deployed site lists its operations, none with a change."""
    assert planned_changes(dry_plan(local_site)) == []


def test_dry_run_of_new_cluster_plans_it_and_creates_nothing(local_site, tmp_path):
    """A dry run for a cluster that does not exist yet works, plans its creation, and creates nothing."""
    name, port = unique_cluster_name(), free_port()
    inventory = inventory_variant(local_site, tmp_path, lambda data: data["cluster"].update(name=name, port=port))
    before = footprint(local_site)
    try:
        changes = planned_changes(dry_plan(local_site, inventory))
        assert any(f"{local_site.version}/{name}" in op for op in changes), changes
        assert PLANES_OP in changes
        assert name not in {n for _, n, _, _ in existing_clusters()}
        assert not os.path.exists(f"/etc/postgresql/{local_site.version}/{name}")
        assert footprint(local_site) == before
    finally:
        drop_cluster(local_site.version, name)  # only does something if the dry run created it


# -- 3. host checks (testinfra) ----------------------------------------------------------------


@pytest.fixture(scope="module")
def host():
    return testinfra.get_host("local://")


def test_postgresql_package_installed(host, local_site):
    """The server package of the configured major is installed."""
    assert host.package(f"postgresql-{local_site.version}").is_installed


def test_cluster_listens_only_on_configured_addresses(host, local_site):
    """The cluster listens on loopback and the bridge address, never on a wildcard."""
    port, bridge = local_site.port, local_site.server_address
    assert host.socket(f"tcp://127.0.0.1:{port}").is_listening
    assert host.socket(f"tcp://{bridge}:{port}").is_listening
    assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening
    assert not host.socket(f"tcp://:::{port}").is_listening
    out = host.check_output(f"ss -ltnH 'sport = :{port}'")
    assert {line.split()[3] for line in out.splitlines()} == {f"127.0.0.1:{port}", f"{bridge}:{port}"}


def test_cluster_config_files_ownership_and_modes(host, local_site):
    """pg_hba.conf 0640, postgresql.conf 0644, TLS key 0600, all owned by postgres."""
    conf = f"/etc/postgresql/{local_site.version}/{local_site.cluster}"
    expected = {"pg_hba.conf": 0o640, "postgresql.conf": 0o644, "server.key": 0o600, "server.crt": 0o644}
    for name, mode in expected.items():
        f = host.file(f"{conf}/{name}")
        assert f.is_file, name
        assert (f.user, f.group, f.mode) == ("postgres", "postgres", mode), name


def test_env_files_hold_only_their_planes_url(host, local_site):
    """Each service plane's env file is root:root 0600 and holds only its canonical var, a URL that
    verifies the server against the site CA, which lies beside it (public, 0644)."""
    site = site_config(local_site)
    planes = [g.plane for g in contract.SERVICE_GROUPS]
    paths = {plane: envfiles.path(site, plane) for plane in planes}
    cas = {plane: local_site.env_dir / f"{plane.key}-ca.crt" for plane in planes}
    # Beside them only the marker that says the bundle made the directory (zeroui_db/envdir.py), root's.
    marker = local_site.env_dir / ".zeroui-db"
    assert {p.name for p in local_site.env_dir.iterdir()} == {Path(p).name for p in [*paths.values(), *cas.values(),
                                                                                      marker]}
    assert (host.file(str(marker)).user, host.file(str(local_site.env_dir)).mode) == ("root", 0o750)
    site_ca = Path(local_site.ca_file).read_bytes()
    for ca in cas.values():
        f = host.file(str(ca))
        assert (f.user, f.group, f.mode) == ("root", "root", 0o644) and ca.read_bytes() == site_ca
    for plane, path in paths.items():
        f = host.file(path)
        assert (f.user, f.group, f.mode) == ("root", "root", 0o600), path
        settings = [line for line in f.content_string.splitlines() if line.strip() and not line.startswith("#")]
        assert len(settings) == 1, path
        name, _, url = settings[0].partition("=")
        assert name == plane.env_var
        assert not [p.env_var for p in contract.PLANES if p is not plane and p.env_var in f.content_string]
        parts = urlsplit(url)
        assert parts.scheme == "postgresql"
        assert (parts.username, unquote(parts.password)) == (plane.app_role, local_site.password(plane.app_role))
        assert (parts.hostname, parts.port, parts.path) == (local_site.server_address, local_site.port,
                                                             f"/{plane.store}")
        assert parse_qs(parts.query) == {"sslmode": ["verify-full"], "sslrootcert": [str(cas[plane])],
                                         "channel_binding": ["require"]}


@pytest.mark.parametrize("plane", [g.plane for g in contract.SERVICE_GROUPS], ids=lambda p: p.key)
def test_env_file_url_connects_from_service_host(lab, local_site, plane):
    """The env file's URL, used as is on the plane's service host, logs in as the app role to its database."""
    url = Path(envfiles.path(site_config(local_site), plane)).read_text().split(f"{plane.env_var}=", 1)[1].strip()
    [result] = sql_from_host(lab, service_host(plane), ["SELECT current_user, current_database()"], url=url)
    assert result["rows"] == [[plane.app_role, plane.store]]


def test_secrets_store_is_private(host, local_site):
    """The secrets store is 0600 in a 0700 directory."""
    path = local_site.secrets_dir / f"{local_site.site}.json"
    assert host.file(str(path)).mode == 0o600
    assert host.file(str(path.parent)).mode == 0o700
    assert host.file(str(path)).user == host.file(str(path.parent)).user == "root"


# -- 4. database level -------------------------------------------------------------------------


def test_plane_databases_owned_by_owner_roles(local_site):
    """Each plane database exists, owned by its plane's owner role, in UTF8."""
    with admin_connection(local_site) as conn:
        rows = conn.execute("SELECT datname, pg_get_userbyid(datdba), pg_encoding_to_char(encoding)"
                            " FROM pg_database WHERE datname = ANY(%s)", [list(PLANE_DBS)]).fetchall()
    assert sorted(rows) == sorted((p.store, p.owner_role, "UTF8") for p in contract.POSTGRES_PLANES)


def test_role_attributes_follow_contract(local_site):
    """Plane roles have no special attributes, owners never log in; the admin can create databases only
    (on PostgreSQL 15 CREATEROLE would let it grant itself pg_execute_server_program)."""
    roles = [contract.ADMIN_ROLE, *(r for p in contract.POSTGRES_PLANES for r in p.roles)]
    with admin_connection(local_site) as conn:
        rows = conn.execute(
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin"
            " FROM pg_roles WHERE rolname = ANY(%s)", [roles]).fetchall()
    attrs = {name: dict(zip(("super", "createdb", "createrole", "replication", "bypassrls", "login"), flags))
             for name, *flags in rows}
    assert set(attrs) == set(roles)
    nothing = {"super": False, "createdb": False, "createrole": False, "replication": False, "bypassrls": False}
    for plane in contract.POSTGRES_PLANES:
        assert attrs[plane.owner_role] == {**nothing, "login": False}
        for role in plane.login_roles:
            assert attrs[role] == {**nothing, "login": True}, role
    assert attrs[contract.ADMIN_ROLE] == {**nothing, "createdb": True, "login": True}


def test_public_has_no_privilege_on_plane_databases(local_site):
    """PUBLIC holds nothing on a plane database; only that plane's login roles may CONNECT to it."""
    with admin_connection(local_site) as conn:
        public = conn.execute(
            "SELECT d.datname, a.privilege_type FROM pg_database d,"
            " aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a"
            " WHERE a.grantee = 0 AND d.datname = ANY(%s)", [list(PLANE_DBS)]).fetchall()
        assert public == []
        for plane in contract.POSTGRES_PLANES:
            for role in LOGIN_ROLES:
                [can] = conn.execute("SELECT has_database_privilege(%s, %s, 'CONNECT')", [role, plane.store]).fetchone()
                assert can == (role in plane.login_roles), (role, plane.store)


def test_stored_passwords_are_scram_verifiers_of_store_passwords(local_site):
    """pg_authid holds SCRAM-SHA-256 verifiers that match the store's passwords; owners have none."""
    rows = dict(superuser_rows(local_site.port, contract.MAINTENANCE_DB, sql.SQL(
        "SELECT rolname, coalesce(rolpassword, '') FROM pg_authid WHERE rolname IN ({})").format(
        sql.SQL(", ").join(sql.Literal(r) for p in contract.POSTGRES_PLANES for r in p.roles)
        + sql.SQL(", ") + sql.Literal(contract.ADMIN_ROLE))))
    for role in PASSWORD_ROLES:
        stored, password = rows[role], local_site.password(role)
        assert stored.startswith("SCRAM-SHA-256$"), role
        assert scram.matches(password, stored), role
        assert not scram.matches(password + "x", stored), role
    for plane in contract.POSTGRES_PLANES:
        assert rows[plane.owner_role] == ""


@pytest.mark.parametrize("plane", contract.POSTGRES_PLANES, ids=lambda p: p.key)
def test_app_writes_and_ro_reads_owner_tables(lab, local_site, plane):
    """On the owner's tables the app role has DML and the read-only role SELECT; neither may create tables."""
    table = sql.Identifier("public", f"zt_probe_{secrets.token_hex(4)}")
    app_table = sql.Identifier("public", f"zt_app_{secrets.token_hex(4)}")
    ro_table = sql.Identifier("public", f"zt_ro_{secrets.token_hex(4)}")
    port = local_site.port
    superuser_rows(port, plane.store, sql.SQL("SET ROLE {}; CREATE TABLE {} (id serial PRIMARY KEY, note text);")
                  .format(sql.Identifier(plane.owner_role), table))
    try:
        def run(role, statements):
            return sql_from_host(lab, service_host(plane), [s.as_string() for s in statements],
                                 host=local_site.server_address, port=port, dbname=plane.store, user=role,
                                 password=local_site.password(role))

        ins = sql.SQL("INSERT INTO {} (note) VALUES ('a') RETURNING id").format(table)
        sel = sql.SQL("SELECT note FROM {}").format(table)
        upd = sql.SQL("UPDATE {} SET note = 'b'").format(table)
        dele = sql.SQL("DELETE FROM {}").format(table)
        app_create = sql.SQL("CREATE TABLE {} (id int)").format(app_table)
        app = run(plane.app_role, [ins, sel, upd, sel, dele, sel, app_create])
        assert [r["ok"] for r in app] == [True] * 6 + [False]
        assert (app[1]["rows"], app[3]["rows"], app[5]["rows"]) == ([["a"]], [["b"]], [])
        assert app[6]["sqlstate"] == INSUFFICIENT_PRIVILEGE

        superuser_rows(port, plane.store, sql.SQL("INSERT INTO {} (note) VALUES ('seen')").format(table))
        ro = run(plane.readonly_role, [sel, ins, upd, dele, sql.SQL("CREATE TABLE {} (id int)").format(ro_table)])
        assert ro[0] == {"ok": True, "sqlstate": None, "rows": [["seen"]]}
        assert [(r["ok"], r["sqlstate"]) for r in ro[1:]] == [(False, INSUFFICIENT_PRIVILEGE)] * 4
    finally:
        superuser_rows(port, plane.store, sql.SQL("DROP TABLE IF EXISTS {}, {}; SET ROLE {}; DROP TABLE {};").format(
            app_table, ro_table, sql.Identifier(plane.owner_role), table))


# -- 5. convergence after drift ----------------------------------------------------------------


def _drift(site) -> tuple[bool, bool]:
    """(tenant app has CREATEDB, PUBLIC may CONNECT to the product database)."""
    with admin_connection(site) as conn:
        return conn.execute(
            "SELECT (SELECT rolcreatedb FROM pg_roles WHERE rolname = %s),"
            " has_database_privilege('public', %s, 'CONNECT')",
            [contract.TENANT.app_role, contract.PRODUCT.store]).fetchone()


def test_drift_is_planned_then_converged(local_site):
    """Out-of-band CREATEDB and PUBLIC CONNECT show in a dry run, are undone by a deploy, then nothing is left."""
    assert _drift(local_site) == (False, False)
    superuser_rows(local_site.port, contract.MAINTENANCE_DB, sql.SQL(
        "ALTER ROLE {} CREATEDB; GRANT CONNECT ON DATABASE {} TO PUBLIC;").format(
        sql.Identifier(contract.TENANT.app_role), sql.Identifier(contract.PRODUCT.store)))
    try:
        assert _drift(local_site) == (True, True)
        # The dry run sees the drift (so its "no change" elsewhere is not vacuous) and fixes nothing.
        assert planned_changes(dry_plan(local_site)) == [PLANES_OP]
        assert _drift(local_site) == (True, True)

        run = local_site.deploy()
        assert run.changed == [PLANES_OP]
        assert _drift(local_site) == (False, False)
        assert local_site.deploy().changed == []
    except BaseException:
        local_site.deploy()  # leave the site at the contract for the other tests
        raise


def test_hand_edited_pg_hba_is_restored_and_reloaded(lab, local_site):
    """A live hand-added trust line for the intruder is removed by the next deploy, and the server drops it."""
    hba_file = Path(f"/etc/postgresql/{local_site.version}/{local_site.cluster}/pg_hba.conf")
    intruder, plane = "intruder", contract.TENANT
    original = hba_file.read_text()
    hba_file.write_text(f"hostssl all all {lab.address(intruder)}/32 trust\n" + original)
    try:
        subprocess.run(["pg_ctlcluster", str(local_site.version), local_site.cluster, "reload"], check=True)
        # The tampering is live: no password needed (PostgreSQL reloads asynchronously; wait for it).
        for _ in range(50):
            ok, error = probe(lab, intruder, local_site, plane.app_role, plane.store, "not-the-password")
            if ok:
                break
            time.sleep(0.1)
        assert ok, error

        run = local_site.deploy()
        assert HBA_OP in run.changed
        assert hba_file.read_text() == original
        ok, error = probe(lab, intruder, local_site, plane.app_role, plane.store, local_site.password(plane.app_role))
        assert not ok and "pg_hba.conf rejects connection" in error
        assert local_site.deploy().changed == []
    except BaseException:
        hba_file.write_text(original)
        local_site.deploy()
        raise


# -- 6. validation refusals --------------------------------------------------------------------


TENANTS, LAPTOPS, PRODUCTS = contract.TENANT_SERVICES, contract.IDE_LAPTOPS, contract.PRODUCT_SERVICES
PRODUCT_NET = f"{CLIENT_HOSTS[PRODUCTS.key]}/32"  # the product host's network in the test inventory


def _bad_network(data):
    data["clients"][TENANTS.key]["networks"] = ["10.0.0.300/24"]


def _forbidden_plane(data):
    data["clients"][TENANTS.key]["planes"] = [contract.PRODUCT.key]


def _laptops_share_product_hosts(data):
    assert data["clients"][PRODUCTS.key]["networks"] == [PRODUCT_NET]
    data["clients"][LAPTOPS.key]["networks"] = [PRODUCT_NET]


REFUSALS = [
    pytest.param(_bad_network, f"clients.{TENANTS.key}.networks[0]: '10.0.0.300/24' is not a valid CIDR network",
                 id="bad-cidr"),
    pytest.param(_forbidden_plane,
                 f"clients.{TENANTS.key}.planes[0]: {TENANTS.title} may not reach {contract.PRODUCT.store}: "
                 f"hard rule {contract.forbidding_rule(TENANTS, contract.PRODUCT).number} ",
                 id="hard-rule-2-grant"),
    pytest.param(_laptops_share_product_hosts,
                 f"clients.{LAPTOPS.key}.networks[0]: {PRODUCT_NET} overlaps {PRODUCT_NET} of clients.{PRODUCTS.key}, "
                 f"so hard rule {contract.forbidding_rule(LAPTOPS, contract.PRODUCT).number} cannot tell them apart",
                 id="hard-rule-1-overlap"),
]


def refusal_lines(run, message: str) -> list[str]:
    return [line for line in run.stderr.splitlines() if message in line]


@pytest.mark.parametrize("mutate, message", REFUSALS)
def test_bad_inventory_is_refused_before_any_change(local_site, tmp_path, mutate, message):
    """The real CLI exits non-zero with a one-line message naming the key, and nothing changes."""
    inventory = inventory_variant(local_site, tmp_path, mutate)
    before = footprint(local_site)
    run = run_deploy(inventory, env=local_site.env, check=False, json_output=False)
    assert run.returncode != 0
    lines = refusal_lines(run, f"inventory {local_site.site}: {message}")
    assert len(lines) == 1, run.stderr[-3000:]
    # The message is complete on its line: "<problem>; <how to fix>".
    assert "; " in lines[0].split(f"inventory {local_site.site}: ", 1)[1]
    assert footprint(local_site) == before


def test_port_held_by_another_cluster_is_refused(local_site, tmp_path):
    """A new cluster name on the port of an existing cluster is refused; no cluster is created."""
    name = unique_cluster_name()

    def other_cluster_same_port(data):
        data["cluster"]["name"] = name
        assert data["cluster"]["port"] == local_site.port

    inventory = inventory_variant(local_site, tmp_path, other_cluster_same_port)
    before = footprint(local_site)
    try:
        run = run_deploy(inventory, env=local_site.env, check=False, json_output=False)
        assert run.returncode != 0
        message = (f"inventory {local_site.site}: cluster.port: {local_site.port} is held by cluster "
                   f"{local_site.version}/{local_site.cluster}")
        assert len(refusal_lines(run, message)) == 1, run.stderr[-3000:]
        assert name not in {n for _, n, _, _ in existing_clusters()}
        assert not os.path.exists(f"/etc/postgresql/{local_site.version}/{name}")
        assert footprint(local_site) == before
    finally:
        drop_cluster(local_site.version, name)  # only does something if the refusal failed
