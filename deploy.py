"""ZeroUI DB plane deploy: ``pyinfra inventories/pilot.py deploy.py``.

On the workstation group: PostgreSQL, one cluster, pg_hba from the plane contract, the
admin role, then the three plane databases with their roles, privileges and schemas. On
each service group's hosts: that plane's env file. On IDE laptops: the SQLite database
and its env file, never PostgreSQL credentials. Inventory values are validated before
any operation is added, so a bad value changes nothing anywhere.
"""

from pyinfra import host, inventory
from pyinfra.operations import files

from zeroui_db import contract, envfiles, hba
from zeroui_db.operations import cluster, envfile, ide, planes, roles, schemas
from zeroui_db.site import SERVER_GROUP, ide_paths, load_site, server_plan
from zeroui_db.templates import template_path

site, store = load_site(inventory)

if host in inventory.get_group(SERVER_GROUP, []):
    pg = server_plan(site, host)

    cluster.packages(name=f"PostgreSQL {pg.version} packages", version=pg.version)
    cluster.present(
        name=f"Cluster {pg.version}/{pg.name} on port {pg.port}", cluster=pg, common_name=site.cluster.connect_host,
    )
    files.template(
        name="postgresql.conf",
        src=template_path("postgresql.conf.j2"), dest=pg.postgresql_conf,
        user="postgres", group="postgres", mode="644", create_remote_dir=False,
        site=site, cluster=pg, listen_addresses=[str(a) for a in site.cluster.listen_addresses],
        ssl_cert_file=pg.ssl_cert_file, ssl_key_file=pg.ssl_key_file,
    )
    files.template(
        name="pg_hba.conf (plane boundaries)",
        src=template_path("pg_hba.conf.j2"), dest=pg.pg_hba_conf,
        user="postgres", group="postgres", mode="640", create_remote_dir=False,
        **hba.template_context(site),
    )
    cluster.running(name="Cluster running with current configuration", cluster=pg)
    roles.admin(name=f"Admin role {contract.ADMIN_ROLE}", cluster=pg, store=store)
    planes.converged(name="Plane databases, roles and privileges", port=pg.port, store=store)
    schemas.migrated(name="Plane schemas (migration ledgers)", port=pg.port, store=store)

served = tuple(g.plane for g in contract.SERVICE_GROUPS if host in inventory.get_group(g.key, []))
if served:
    envfile.plane_urls(
        name=f"Env files: {', '.join(p.env_var for p in served)}", site=site, planes=served, store=store,
    )

if host in inventory.get_group(contract.IDE_LAPTOPS.key, []):
    local = ide_paths(site, host)
    ide.database(name=f"IDE database {local.database}", path=local.database,
                 receipt_cache_limit=site.ide.receipt_cache_limit)
    files.template(
        name=f"{contract.IDE.env_var} env file",
        src=template_path("ide.env.j2"), dest=local.env_file, mode="600", create_remote_dir=True,
        site=site, plane=contract.IDE, url=envfiles.sqlite_url(local.database),
    )
