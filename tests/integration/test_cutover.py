"""``zeroui-db cutover``: a pilot of its own, with sentinel data in every table (10,000 receipts
among them), moved onto three managed-service stand-ins of its own (PostgreSQL 16, TLS, a
master that is no superuser), through the real command, as an operator runs it.

The tests run in file order, as a go-live would: a dry run, a refused non-empty target, a
kill during the copy and a rollback, a kill again and a rerun, a row changed on the target,
then the switch. The expectations are independent of the tool: row texts and sequence values
read on both servers as their superusers, the pilot's app role trying to log in with its own
env file, the deploy's own refusal.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from clusters import drop_cluster
from conftest import CLIENT_HOSTS, new_deployment
from deployment import REPO, CloudDeployment, Deployment
from hosts import superuser_psql, superuser_rows
from sentinels import RECEIPTS, SCRIPTS
from standins import StandIn
from testca import TestCA

from zeroui_db import contract
from zeroui_db.cutover.tables import read as read_tables

pytestmark = [pytest.mark.integration, pytest.mark.cloud, pytest.mark.cutover]

# Free lab addresses for this module's own stand-ins (the session's are .21-.23).
TARGET_ADDRESSES = dict(zip((p.key for p in contract.POSTGRES_PLANES),
                            ("198.51.100.31", "198.51.100.32", "198.51.100.33"), strict=True))
# The receipt chain's append lock, as sql/schemas/tenant/0011 takes it on every append: a row
# lock on receipt_chain_lock (which a superuser may hold for a test).
CHAIN_LOCK = "SELECT 1 FROM receipt_chain_lock FOR UPDATE"
# Settings under which both servers write row texts alike (the independent comparison).
PINNED = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 3; SET bytea_output = 'hex';"
# Every index and constraint of a plane's tables as the catalog describes them, one line each.
SCHEMA_OBJECTS = """
SELECT 'index ' || i.indrelid::regclass || ' ' || c.relname || ': ' || pg_get_indexdef(i.indexrelid)
       || concat_ws(' ', '', i.indisunique, i.indisprimary, i.indimmediate, i.indisvalid, i.indisready, i.indislive,
                    i.indisclustered, i.indisreplident, c.reltablespace, c.reloptions::text,
                    obj_description(i.indexrelid, 'pg_class'))
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relnamespace = 'public'::regnamespace
UNION ALL
SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ': ' || pg_get_constraintdef(oid)
       || concat_ws(' ', '', contype, condeferrable, condeferred, convalidated, nullif(conindid, 0)::regclass,
                    obj_description(oid, 'pg_constraint'))
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
ORDER BY 1
"""
# Each index of a plane's tables: table, index, its OID, and whether a copy must keep it (the
# primary key, or the key a foreign key references).
INDEX_OIDS = """
SELECT i.indrelid::regclass, i.indexrelid::regclass, i.indexrelid::oid,
       i.indisprimary OR EXISTS (SELECT FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = i.indexrelid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relnamespace = 'public'::regnamespace AND i.indrelid <> 'zeroui_schema_migrations'::regclass
"""
# Reference data, made by the migrations on both sides: never copied.
NOT_COPIED = ("policy_lifecycle_states", "policy_lifecycle_transitions", "receipt_chain_lock")


@dataclass
class Sites:
    pilot: Deployment
    cloud: CloudDeployment
    targets: dict[str, StandIn]
    indexes_before: dict[str, list[list[str]]]  # plane key -> INDEX_OIDS on the deployed, empty target

    @property
    def env(self) -> dict[str, str]:
        return self.cloud.env  # the shared secrets folder and the providers' admin passwords

    @property
    def record(self) -> Path:
        return self.pilot.secrets_dir / f"{self.pilot.site}-cutover.json"

    @property
    def report(self) -> Path:
        return self.pilot.secrets_dir / f"{self.pilot.site}-cutover-verification.json"

    def state(self) -> dict:
        return json.loads(self.record.read_text())


@pytest.fixture(scope="module")
def sites(lab, workdir, version):
    """The pilot (its own cluster, every service on loopback as inventories/pilot.py has it) with
    sentinel data; the cloud site on three stand-ins of its own, deployed (converged, empty)."""
    pilot = new_deployment(workdir, version, "127.0.0.1", "cutover")
    loopback = ["127.0.0.1/32"]
    pilot.write_inventory({**{g.key: loopback for g in contract.SERVICE_GROUPS}, contract.IDE_LAPTOPS.key: [],
                           contract.ADMIN_HOSTS.key: loopback}, listen=["127.0.0.1"])
    ca = TestCA(workdir / "cutover-ca")
    with contextlib.ExitStack() as stack:
        stack.callback(drop_cluster, pilot.version, pilot.cluster)
        pilot.deploy()
        for plane, script in SCRIPTS.items():
            superuser_psql(pilot.port, plane.store, script)
        targets = {key: stack.enter_context(StandIn(lab, f"cut-{key}", address, ca, master=f"master_{key}",
                                                    master_password=secrets.token_urlsafe(24)))
                   for key, address in TARGET_ADDRESSES.items()}
        base = workdir / "cutover-cloud"
        base.mkdir()
        networks = {**{g: [f"{a}/32"] for g, a in CLIENT_HOSTS.items() if g != "intruder"},
                    contract.ADMIN_HOSTS.key: [f"{lab.bridge_address}/32"]}
        cloud = CloudDeployment(base, "zt-cutover-cloud", targets, networks)
        cloud.secrets_dir = pilot.secrets_dir  # one operator machine: one secrets folder holds both sites
        cloud.deploy()
        # Going live, the target's databases are deployed before the cutover and its service
        # hosts get their env files at the switch (README: deploy with --limit admin_hosts).
        # Here the admin host and the service hosts are one @local, so the deploy wrote them:
        # remove them, and the switch must write them again.
        for path in cloud.env_dir.glob("*"):
            path.unlink()
        yield Sites(pilot, cloud, targets, {key: _index_oids(standin, contract.PLANES_BY_KEY[key].store)
                                            for key, standin in targets.items()})


def _index_oids(standin: StandIn, database: str) -> list[list[str]]:
    return [line.split("|") for line in standin.superuser_sql(INDEX_OIDS, database).splitlines()]


def cutover(sites: Sites, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(_argv(sites, *args), cwd=REPO, env=sites.env, text=True, capture_output=True,
                          timeout=timeout)


def _argv(sites: Sites, *args: str) -> list[str]:
    return [sys.executable, "-m", "zeroui_db.cli", "cutover", "--from", str(sites.pilot.inventory),
            "--to", str(sites.cloud.inventory), *args]


def _env_url(env_file: Path, plane: contract.Plane) -> str:
    return dict(line.split("=", 1) for line in env_file.read_text().splitlines()
                if "=" in line and not line.startswith("#"))[plane.env_var]


def app_session(sites: Sites, plane: contract.Plane, statement: str = "SELECT 1") -> str | None:
    """Log in with the pilot's env file, as the plane's service would, and run ``statement``;
    None when it worked, else why not."""
    try:
        with psycopg.connect(_env_url(sites.pilot.env_dir / f"{plane.key}.env", plane), connect_timeout=5,
                             autocommit=True) as conn:
            conn.execute(statement)
    except psycopg.Error as e:
        return str(e).strip().splitlines()[-1]
    return None


def target_counts(sites: Sites) -> dict[str, int]:
    """Rows per table on the target, summed per plane (read as the stand-ins' superuser)."""
    out = {}
    for key, standin in sites.targets.items():
        plane = contract.PLANES_BY_KEY[key]
        out[key] = int(standin.superuser_sql(
            "SELECT coalesce(sum((xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I', relname),"
            " false, true, '')))[1]::text::bigint), 0) FROM pg_class WHERE relkind = 'r' AND relnamespace ="
            " 'public'::regnamespace AND relname <> 'zeroui_schema_migrations'"
            # Reference data, made by the migrations on both sides.
            " AND relname NOT LIKE 'policy_lifecycle%' AND relname <> 'receipt_chain_lock'",
            plane.store).strip())
    return out


@contextlib.contextmanager
def superuser_session(standin: StandIn, database: str):
    """A session as the stand-in's superuser over its private socket (holds locks for a test)."""
    with psycopg.connect(host=str(standin.socket_dir), port=standin.port, user=standin.superuser,
                         dbname=database, autocommit=True) as conn:
        yield conn


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def kill_when_blocked(sites: Sites, standin: StandIn, database: str, wait_event: str) -> subprocess.CompletedProcess:
    """Start the cutover, wait until its session on ``database`` waits on a lock of type
    ``wait_event`` that the test holds, then kill -9 it (no cleanup of any kind)."""
    proc = subprocess.Popen(_argv(sites), cwd=REPO, env=sites.env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        with superuser_session(standin, database) as watcher:
            wait_for(lambda: proc.poll() is not None or watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'zeroui-deploy' AND "
                "wait_event_type = 'Lock' AND wait_event = %s", [wait_event]).fetchone()[0] > 0,
                f"the cutover to block on {wait_event}")
        assert proc.poll() is None, proc.communicate()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def footprint(sites: Sites) -> tuple:
    return target_counts(sites), sorted(os.listdir(sites.pilot.secrets_dir)), sorted(os.listdir(sites.cloud.env_dir))


# -- 1. nothing changes before the go --------------------------------------------------------


def test_dry_run_changes_nothing(sites):
    before = footprint(sites)
    run = cutover(sites, "--dry")
    assert run.returncode == 0, run.stderr
    for plane in contract.POSTGRES_PLANES:
        assert f"{plane.key}: 127.0.0.1:{sites.pilot.port}/{plane.store}" in run.stdout
    assert "receipts: about" in run.stdout and "paused in its copy: policy_snapshots_audit" in run.stdout
    assert "dry run: nothing was changed" in run.stdout
    assert footprint(sites) == before and not sites.record.exists()
    assert all(app_session(sites, p) is None for p in contract.POSTGRES_PLANES)


def test_non_empty_target_is_refused(sites):
    shared = sites.targets[contract.SHARED.key]
    shared.superuser_sql("INSERT INTO telemetry_sources (service_key, plane, instance_id, version)"
                         " VALUES ('stray', 'shared', 'i-0', '0')", contract.SHARED.store)
    try:
        run = cutover(sites)
        assert run.returncode == 1, run.stdout + run.stderr
        [line] = [line for line in run.stderr.splitlines() if "already holds rows" in line]
        assert "telemetry_sources" in line and contract.SHARED.store in line
        assert not sites.record.exists()
        assert app_session(sites, contract.TENANT) is None  # nothing frozen
    finally:
        shared.superuser_sql("DELETE FROM telemetry_sources WHERE service_key = 'stray'", contract.SHARED.store)


# -- 2. interrupted, rolled back, interrupted again, resumed -----------------------------------


def test_kill_during_the_copy_then_rollback_restores_writes(sites):
    """The freeze ends a service's open session (its write is rolled back). kill -9 while
    the receipts' copy waits for the chain's append lock (held here): nothing of
    the table is committed, the record says where it stood, a deploy of the pilot refuses to
    lift the freeze, and --rollback lets the app role write again."""
    tenant = contract.TENANT
    # A service in the middle of a write when the freeze comes: its session ends, the write is lost.
    service = psycopg.connect(_env_url(sites.pilot.env_dir / f"{tenant.key}.env", tenant), connect_timeout=5)
    service.execute("INSERT INTO receipts (kind, source, occurred_at, payload) VALUES "
                    "('ide.check', 'zt:uncommitted', now(), '{}')")
    with superuser_session(sites.targets[tenant.key], tenant.store) as holder:
        holder.execute("BEGIN")
        holder.execute(CHAIN_LOCK)  # a row lock: the copy waits for this transaction
        killed = kill_when_blocked(sites, sites.targets[tenant.key], tenant.store, "transactionid")
        holder.execute("ROLLBACK")
    assert killed.returncode == -signal.SIGKILL
    with pytest.raises(psycopg.OperationalError):
        service.execute("SELECT 1")
    service.close()
    assert superuser_rows(sites.pilot.port, tenant.store,
                          "SELECT count(*) FROM receipts WHERE source = 'zt:uncommitted'") == [["0"]]
    record = sites.state()
    assert record["planes"][tenant.key]["status"] == "frozen"
    assert record["planes"][tenant.key]["tables"]["receipts"]["status"] == "copying"
    assert "is not permitted to log in" in (app_session(sites, tenant) or "")  # frozen
    # The half-sent table is not there: its transaction died with the connection.
    wait_for(lambda: target_counts(sites)[tenant.key] == 0, "the killed copy to roll back")

    deploy = sites.pilot.deploy(check=False)
    assert deploy.returncode != 0
    [line] = [x for x in deploy.stderr.splitlines() if f"inventory {sites.pilot.site}: cutover: " in x]
    assert "frozen for the cutover to site zt-cutover-cloud" in line and "--rollback" in line
    assert app_session(sites, tenant) is not None  # the refused deploy did not lift it

    run = cutover(sites, "--rollback")
    assert run.returncode == 0, run.stderr
    assert sites.state()["planes"][tenant.key]["status"] == "rolled_back"
    # Writes resume on the source: a service appends a receipt (copied by the next cutover).
    assert app_session(sites, tenant, "INSERT INTO receipts (kind, source, occurred_at, payload) VALUES "
                                      "('ide.check', 'zt:after-rollback', now(), '{\"n\": -1}')") is None


def test_receipts_that_do_not_form_a_chain_are_rolled_back(sites):
    """A receipt changed on the source (as its superuser can): the copy verifies the whole chain
    before COMMIT, so the target's ledger stays empty and the run stops, naming the receipt."""
    tenant = contract.TENANT
    seq = RECEIPTS // 3
    original = superuser_rows(sites.pilot.port, tenant.store, f"SELECT payload FROM receipts WHERE seq = {seq}")[0][0]
    superuser_psql(sites.pilot.port, tenant.store, "SET session_replication_role = replica;"
                   f" UPDATE receipts SET payload = payload || '{{\"tampered\": true}}' WHERE seq = {seq};")
    try:
        run = cutover(sites, "--no-switch")
        assert run.returncode == 1, run.stdout + run.stderr
        assert f"copying receipts failed and was rolled back: the receipts sent do not form an intact chain: " \
               f"verify_receipt_chain() breaks at seq {seq}" in run.stderr
        assert sites.targets[tenant.key].superuser_sql("SELECT count(*) FROM receipts", tenant.store).strip() == "0"
        assert sites.state()["planes"][tenant.key]["tables"]["receipts"]["status"] == "copying"
    finally:
        superuser_psql(sites.pilot.port, tenant.store, "SET session_replication_role = replica; UPDATE receipts"
                       f" SET payload = {sql.Literal(original).as_string()}::jsonb WHERE seq = {seq};")


def test_kill_during_the_copy_then_a_rerun_completes(sites):
    """The cutover again (the tenant plane's resumes), killed while product's policy_snapshots
    waits for its lock (tenant done, policy_bundles committed), then rerun: it resumes and
    verifies every plane."""
    product = contract.PRODUCT
    with superuser_session(sites.targets[product.key], product.store) as holder:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE policy_snapshots IN SHARE MODE")  # reads pass, writes wait
        killed = kill_when_blocked(sites, sites.targets[product.key], product.store, "relation")
        holder.execute("ROLLBACK")
    assert killed.returncode == -signal.SIGKILL
    record = sites.state()["planes"]
    assert record[contract.TENANT.key]["status"] == "verified"
    assert record[product.key]["tables"]["policy_bundles"]["status"] == "done"
    assert record[product.key]["tables"]["policy_snapshots"]["status"] == "copying"

    run = cutover(sites, "--no-switch")
    assert run.returncode == 0, run.stdout + run.stderr
    assert {p["status"] for p in sites.state()["planes"].values()} == {"verified"}
    report = json.loads(sites.report.read_text())
    assert report["ok"] and [p["plane"] for p in report["planes"]] == [p.key for p in contract.POSTGRES_PLANES]
    tenant = report["planes"][0]
    receipts = next(t for t in tenant["tables"] if t["table"] == "receipts")
    assert receipts["source"]["rows"] == receipts["target"]["rows"] == RECEIPTS + 1
    assert tenant["chain"]["broken_at"] is None and tenant["chain"]["source_head"]["seq"] == RECEIPTS + 1
    assert tenant["chain"]["source_head"] == tenant["chain"]["target_head"]
    # Verified by the copy that wrote the receipts (in the killed run), before its COMMIT: these
    # are the receipts it sent, so their hashes are not all recomputed again.
    assert tenant["chain"]["verified"].startswith("before the copy's COMMIT")
    assert not list(sites.cloud.env_dir.glob("*.env"))  # --no-switch: no env file yet


def test_rows_arrive_identical(sites):
    """Independently of the tool: every table's rows as text (count and an order-free digest),
    and every sequence's state, read on the pilot and on the stand-in as their superusers."""
    for plane in contract.POSTGRES_PLANES:
        relations = superuser_rows(sites.pilot.port, plane.store,
                                   "SELECT relname, relkind FROM pg_class WHERE relkind IN ('r', 'S') AND"
                                   " relnamespace = 'public'::regnamespace AND relname <> 'zeroui_schema_migrations'"
                                   " ORDER BY 1")
        parts = [sql.SQL("(SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text"
                         " COLLATE \"C\")), '') FROM {} t)") if kind == "r" else
                 sql.SQL("(SELECT last_value || ':' || is_called FROM {})") for _, kind in relations]
        query = PINNED + " SELECT " + ", ".join(p.format(sql.Identifier(name)).as_string()
                                                for p, (name, _) in zip(parts, relations)) + ";"
        names = [name for name, _ in relations]
        mine = dict(zip(names, superuser_rows(sites.pilot.port, plane.store, query)[-1]))
        theirs = dict(zip(names, sites.targets[plane.key].superuser_sql(query, plane.store).strip().split("|")))
        assert theirs == mine, plane.key
        empty = [n for n, kind in relations if kind == "r" and mine[n].startswith("0:")]
        assert empty == [], f"{plane.key}: the sentinel data leaves {empty} empty"


def test_indexes_and_constraints_arrive_as_the_migrations_made_them(sites):
    """The copy drops a table's secondary indexes and unique constraints and makes them again
    before COMMIT: afterwards every plane's indexes and constraints read in the catalog exactly
    as on the source (the same migrations), and every copied table's indexes were made again,
    but its primary key and the keys foreign keys reference, which stay."""
    for plane in contract.POSTGRES_PLANES:
        mine = [" ".join(row) for row in superuser_rows(sites.pilot.port, plane.store, SCHEMA_OBJECTS)]
        theirs = sites.targets[plane.key].superuser_sql(SCHEMA_OBJECTS, plane.store).splitlines()
        assert theirs == mine, plane.key
        before = {(t, i): (oid, kept) for t, i, oid, kept in sites.indexes_before[plane.key]}
        after = {(t, i): oid for t, i, oid, _ in _index_oids(sites.targets[plane.key], plane.store)}
        assert after.keys() == before.keys(), plane.key
        made_again = {key for key, oid in after.items() if oid != before[key][0]}
        expected = {key for key, (_, kept) in before.items() if kept == "f" and key[0] not in NOT_COPIED}
        assert made_again == expected, plane.key
        if plane is contract.TENANT:  # the ledger's six secondary indexes (sql/schemas/tenant/0001)
            assert {i for t, i in made_again if t == "receipts"} == {
                "receipts_receipt_id_key", "receipts_idempotency_key_key", "receipts_content_hash_key",
                "receipts_subject_idx", "receipts_kind_idx", "receipts_occurred_at_idx"}


def test_a_row_changed_on_the_target_is_caught(sites):
    """Changed after the copy, before the verification of a rerun: named by table and key, the
    receipt chain breaks at that receipt, and nothing is switched."""
    tenant = contract.TENANT
    target = sites.targets[tenant.key]
    seq = RECEIPTS // 2
    original = target.superuser_sql(f"SELECT payload FROM receipts WHERE seq = {seq}", tenant.store).strip()
    target.superuser_sql(
        "UPDATE webhook_deliveries SET event_type = 'tampered' WHERE id = 3;"
        " SET session_replication_role = replica;"
        f" UPDATE receipts SET payload = payload || '{{\"tampered\": true}}' WHERE seq = {seq};", tenant.store)
    try:
        run = cutover(sites, "--no-switch")
        assert run.returncode == 1, run.stdout + run.stderr
        assert "webhook_deliveries id=3: changed: event_type" in run.stdout
        assert f"receipts seq={seq}: changed: payload" in run.stdout
        assert f"receipt chain on the target: BROKEN at seq {seq}" in run.stdout
        report = json.loads(sites.report.read_text())
        assert not report["ok"]
        tables = {t["table"]: t for t in report["planes"][0]["tables"]}
        assert tables["webhook_deliveries"]["differences"] == [{"key": "id=3", "what": "changed: event_type"}]
        assert report["planes"][0]["chain"]["broken_at"] == seq
        assert report["planes"][0]["chain"]["verified"] == "after the copy"  # not the receipts it sent
        assert not list(sites.cloud.env_dir.glob("*.env"))
    finally:
        target.superuser_sql(
            "UPDATE webhook_deliveries SET event_type = 'pull_request.opened' WHERE id = 3;"
            " SET session_replication_role = replica;"
            f" UPDATE receipts SET payload = {sql.Literal(original).as_string()}::jsonb WHERE seq = {seq};",
            tenant.store)


def test_only_types_of_postgresqls_own_travel_in_binary(sites):
    """In binary, an enum array carries the enum's OID and a regclass the OID of a table of that
    database, which mean nothing on another server: such a table travels as text, read from
    the catalog (in a database of the test's own, on a stand-in, removed afterwards)."""
    standin, database = sites.targets[contract.TENANT.key], "zt_cutover_types"
    standin.superuser_sql(f"CREATE DATABASE {database}")
    try:
        standin.superuser_sql("""
            CREATE TYPE mood AS ENUM ('ok');
            CREATE DOMAIN short AS text;
            CREATE TYPE pair AS (a int, b text);
            CREATE TABLE builtin (id bigint PRIMARY KEY, t text, a text[], j jsonb, n cidr, d numeric, at timestamptz);
            CREATE TABLE with_enum (id bigint PRIMARY KEY, m mood);
            CREATE TABLE with_enum_array (id bigint PRIMARY KEY, m mood[]);
            CREATE TABLE with_domain (id bigint PRIMARY KEY, s short);
            CREATE TABLE with_composite (id bigint PRIMARY KEY, p pair);
            CREATE TABLE with_regclass (id bigint PRIMARY KEY, r regclass);
            CREATE TABLE with_regrole_array (id bigint PRIMARY KEY, r regrole[]);""", database)
        with superuser_session(standin, database) as conn:
            found = {t.name: t.binary for t in read_tables(conn, contract.TENANT)}
    finally:
        standin.superuser_sql(f"DROP DATABASE {database}")
    assert found == {"builtin": True, "with_enum": False, "with_enum_array": False, "with_domain": False,
                     "with_composite": False, "with_regclass": False, "with_regrole_array": False}


def test_receipts_committed_but_not_recorded_are_verified_again(sites):
    """A kill between the COMMIT of the receipts and the record of it: the rerun finds them on
    the target, takes them as copied (they are the source's, digest for digest), and verifies
    their chain itself, since no copy of this cutover is known to have verified it. (Only the
    status is set back: what the earlier copy noted must not outlive it.)"""
    record = sites.state()
    receipts = dict(record["planes"][contract.TENANT.key]["tables"]["receipts"])
    assert receipts["chain_verified"] == receipts["sha256"]
    record["planes"][contract.TENANT.key]["tables"]["receipts"]["status"] = "copying"
    record["planes"][contract.TENANT.key]["status"] = "frozen"
    sites.record.write_text(json.dumps(record))
    run = cutover(sites, "--no-switch")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"tenant.receipts: already on the target, identical ({RECEIPTS + 1:,} rows)" in run.stdout
    entry = sites.state()["planes"][contract.TENANT.key]["tables"]["receipts"]
    assert entry["status"] == "done" and entry["sha256"] == receipts["sha256"] and not entry.get("chain_verified")
    chain = json.loads(sites.report.read_text())["planes"][0]["chain"]
    assert chain["verified"] == "after the copy" and chain["broken_at"] is None
    assert "receipt chain on the target: intact (verify_receipt_chain() after the copy)" in run.stdout


# -- 3. the switch ---------------------------------------------------------------------------------


def test_the_switch_writes_the_env_files_after_a_clean_audit(sites):
    run = cutover(sites)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"audit of {sites.cloud.site}: clean" in run.stdout
    assert "Time per plane:" in run.stdout
    assert {p["status"] for p in sites.state()["planes"].values()} == {"switched"}
    for plane in contract.POSTGRES_PLANES:
        mine, pilots = sites.cloud.env_dir / f"{plane.key}.env", sites.pilot.env_dir / f"{plane.key}.env"
        strip = lambda text: [x for x in text.splitlines() if "=" not in x or x.startswith("#")]  # noqa: E731
        assert strip(mine.read_text()) == strip(pilots.read_text())
        new, old = urlsplit(_env_url(mine, plane)), urlsplit(_env_url(pilots, plane))
        assert (new.hostname, new.username, new.path) == (TARGET_ADDRESSES[plane.key], old.username, old.path)
        # The service's URL reaches the copy.
        with psycopg.connect(_env_url(mine, plane), connect_timeout=5) as conn:
            assert conn.execute("SELECT current_user").fetchone()[0] == plane.app_role
            if plane is contract.TENANT:
                assert conn.execute("SELECT count(*), max(seq) FROM receipts").fetchone() == (RECEIPTS + 1,) * 2


def test_after_the_switch_the_source_stays_frozen(sites):
    assert all(app_session(sites, p) is not None for p in contract.POSTGRES_PLANES)
    run = cutover(sites, "--rollback")
    assert run.returncode == 1 and "already switched" in run.stderr
    deploy = sites.pilot.deploy(check=False)
    assert deploy.returncode != 0
    assert f"inventory {sites.pilot.site}: cutover: planes tenant, product, shared were cut over" in deploy.stderr
    assert all(app_session(sites, p) is not None for p in contract.POSTGRES_PLANES)


# -- 4. the receipt trigger's verbatim path -------------------------------------------------------


def test_only_the_keeper_inserts_receipts_verbatim_and_only_extending_the_chain(sites):
    """On the target, in transactions rolled back: the table owner's (the evidence keeper's) copy
    of the head's successor is taken as it is; with a wrong seq, prev_hash or content it is
    refused; the same row from the app role or the plane's owner role is appended with
    recorded_at and hashes of the trigger's own, or refused."""
    tenant = contract.TENANT
    target = sites.targets[tenant.key]
    # The next receipt, made (and rolled back) on the pilot, whose chain has the same head.
    made = superuser_rows(sites.pilot.port, tenant.store, PINNED + """
        BEGIN;
        INSERT INTO receipts (kind, source, occurred_at, payload) VALUES ('ide.check', 'zt:verbatim', now(), '{}');
        SELECT r::text FROM receipts r ORDER BY seq DESC LIMIT 1;
        ROLLBACK;""")[-1][0]
    row = f"{sql.Literal(made).as_string()}::receipts"

    def insert(role: str, override: dict | None = None) -> str:
        changed = f"jsonb_populate_record({row}, {sql.Literal(json.dumps(override or {})).as_string()})"
        return target.superuser_sql(f"""{PINNED}
            BEGIN;
            SET LOCAL ROLE {role};
            INSERT INTO receipts SELECT ({changed}).*
            RETURNING seq || '|' || (content_hash = ({row}).content_hash);
            ROLLBACK;""", tenant.store).strip()

    assert insert(tenant.keeper_role) == f"{RECEIPTS + 2}|true"  # taken verbatim
    refusals = {
        "does not extend the chain": {"seq": RECEIPTS + 5},
        "prev_hash is not the content_hash": {"prev_hash": "\\x" + "00" * 32},
        "content_hash does not match its content": {"payload": {"n": 1}},
    }
    for message, override in refusals.items():
        with pytest.raises(RuntimeError) as refused:
            insert(tenant.keeper_role, override)
        assert message in str(refused.value), override
    # The app role's values for seq, prev_hash, recorded_at and content_hash are its own no more.
    assert insert(tenant.app_role) == f"{RECEIPTS + 2}|false"
    # The plane's owner, which the admin may act as, no longer owns the ledger: it may not insert.
    with pytest.raises(RuntimeError) as refused:
        insert(tenant.owner_role)
    assert "permission denied for table receipts" in str(refused.value)
