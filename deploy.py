"""ZeroUI DB plane deploy: ``pyinfra inventories/pilot.py deploy.py`` (or ``cloud.py``).

Each PostgreSQL plane is an endpoint. On the pilot all three live on the workstation's
cluster: its host gets PostgreSQL, the cluster, a certificate from the site's CA,
postgresql.conf and pg_hba from the plane contract, pgBackRest (WAL archiving and a backup
schedule), and the admin role. Then, for every server, the same database-level path: the
plane databases with their roles, privileges and schemas, worked on from the workstation
(its own cluster) or from the admin host (managed services). The pilot's cluster then gets
the evidence guard and its first full backup. Each service group's hosts get their plane's
env file and CA certificate; IDE laptops the SQLite database, never PostgreSQL credentials.
The inventory is validated before any operation is added, so a bad value changes nothing
anywhere.
"""

from pyinfra import host, inventory
from pyinfra.operations import files

from zeroui_db import contract, envfiles, hba
from zeroui_db.operations import backup, cluster, envfile, evidence, ide, planes, private_file, roles, schemas, tls
from zeroui_db.privilege import AS_CONNECTING_USER, SERVER_USER
from zeroui_db.site import SERVER_GROUP, check_env_dir, ide_paths, load, server_plan, servers_worked_from
from zeroui_db.templates import render_template, template_path

deployment = load(inventory)
site = deployment.site

if host in inventory.get_group(SERVER_GROUP, []):
    pg = server_plan(site, host)
    workstation = next(s for s in site.servers if s.workstation)
    ca_file = deployment.ca_file(workstation.first)

    cluster.packages(name=f"PostgreSQL {pg.version} packages", version=pg.version)
    cluster.present(name=f"Cluster {pg.version}/{pg.name} on port {pg.port}", cluster=pg)
    if pg.generate_certificate:
        tls.server_certificate(
            name=f"Server certificate from the {site.name} CA", cluster=pg, ca=deployment.ca,
            names=deployment.certificate_names,
        )
    # Through stdin, not files.template: see zeroui_db/operations/private_file.py.
    private_file.present(
        name="postgresql.conf", dest=pg.postgresql_conf, user=SERVER_USER, group=SERVER_USER, mode="644",
        content=render_template(
            "postgresql.conf.j2", site=site, cluster=pg, listen_addresses=[str(a) for a in site.cluster.listen_addresses],
            ssl_cert_file=pg.ssl_cert_file, ssl_key_file=pg.ssl_key_file, limits=site.limits, backup=site.backup,
            max_connections=site.limits.max_connections(len(workstation.endpoints)),
        ).encode(),
    )
    private_file.present(
        name="pg_hba.conf (plane boundaries)", dest=pg.pg_hba_conf, user=SERVER_USER, group=SERVER_USER, mode="640",
        content=render_template("pg_hba.conf.j2", **hba.template_context(site)).encode(),
    )
    ledger_db = next((e.database for e in workstation.endpoints if e.plane.keeps_evidence), None)
    backup.configured(cluster=pg, site=site, ledger_database=ledger_db)
    cluster.running(name="Cluster running with current configuration", cluster=pg)
    backup.stanza(name=f"pgBackRest stanza {pg.stanza}", cluster=pg, repository=site.backup.repository)
    roles.admin(name=f"Admin role {contract.ADMIN_ROLE}", cluster=pg, server=workstation,
                store=deployment.store, ca_file=ca_file)

for server in servers_worked_from(deployment, host, inventory):
    password, ca_file = deployment.admin_password(server), deployment.ca_file(server.first)
    planes.converged(name=f"Plane databases, roles and privileges ({server.key})", server=server,
                     password=password, ca_file=ca_file, store=deployment.store)
    schemas.migrated(name=f"Plane schemas ({server.key})", server=server, password=password, ca_file=ca_file)

if host in inventory.get_group(SERVER_GROUP, []):
    evidence.guarded(name="Evidence guard", server=workstation, password=deployment.admin_password(workstation),
                     ca_file=deployment.ca_file(workstation.first))
    backup.first_full(name=f"First full backup of {pg.version}/{pg.name}", cluster=pg,
                      repository=site.backup.repository)

served = tuple(site.endpoint(g.plane) for g in contract.SERVICE_GROUPS if host in inventory.get_group(g.key, []))
if served:
    check_env_dir(site, host)  # before anything runs, as every refusal
    envfile.plane_urls(
        name=f"Env files: {', '.join(e.plane.env_var for e in served)}", site=site, endpoints=served,
        store=deployment.store, ca_pems={e.plane.key: deployment.ca_pem(e) for e in served},
    )

if host in inventory.get_group(contract.IDE_LAPTOPS.key, []):
    # The IDE plane is the connecting user's own: no sudo or su, whatever the host's data says.
    local = ide_paths(site, host)
    ide.database(name=f"IDE database {local.database}", path=local.database,
                 receipt_cache_limit=site.ide.receipt_cache_limit, **AS_CONNECTING_USER)
    files.template(
        name=f"{contract.IDE.env_var} env file",
        src=template_path("ide.env.j2"), dest=local.env_file, mode="600", create_remote_dir=True,
        site=site, plane=contract.IDE, url=envfiles.sqlite_url(local.database), **AS_CONNECTING_USER,
    )
