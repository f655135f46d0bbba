"""Where a Debian/Ubuntu cluster keeps its files (postgresql-common's layout)."""

from __future__ import annotations

from dataclasses import dataclass

from .config import ClusterConfig


@dataclass(frozen=True)
class ClusterLayout:
    version: int
    name: str
    port: int
    data_directory: str
    ssl_cert_file: str
    ssl_key_file: str
    generate_certificate: bool  # no certificate configured: make a self-signed one

    @property
    def conf_dir(self) -> str:
        return f"/etc/postgresql/{self.version}/{self.name}"

    @property
    def postgresql_conf(self) -> str:
        return f"{self.conf_dir}/postgresql.conf"

    @property
    def pg_hba_conf(self) -> str:
        return f"{self.conf_dir}/pg_hba.conf"

    @property
    def creation_marker(self) -> str:
        """Present from just before ``pg_createcluster`` until the cluster is complete: a
        cluster beside it is one this deploy began and never finished (see cluster.present)."""
        return f"{self.conf_dir}/zeroui-unfinished"

    @property
    def bin_dir(self) -> str:
        return f"/usr/lib/postgresql/{self.version}/bin"

    # pgBackRest: one stanza per cluster (a major upgrade makes a new cluster, so a new stanza).
    @property
    def stanza(self) -> str:
        return f"{self.version}-{self.name}"

    @property
    def pgbackrest_conf(self) -> str:
        return f"{self.conf_dir}/pgbackrest.conf"

    @property
    def backup_script(self) -> str:
        return f"{self.conf_dir}/zeroui-backup"

    @property
    def cron_file(self) -> str:
        # cron reads files in /etc/cron.d whose names have letters, digits, '-' and '_' only.
        return f"/etc/cron.d/zeroui-backup-{self.version}-{self.name}"

    @property
    def config_files(self) -> tuple[str, ...]:
        """Files the running server must have (re)loaded to be current."""
        return (self.postgresql_conf, self.pg_hba_conf, self.ssl_cert_file, self.ssl_key_file)


def layout(cluster: ClusterConfig, version: int, data_directory: str | None = None) -> ClusterLayout:
    """The layout of ``cluster`` at ``version``; an adopted cluster keeps its data directory."""
    conf_dir = f"/etc/postgresql/{version}/{cluster.name}"
    generate = cluster.ssl_cert_file is None
    return ClusterLayout(
        version=version,
        name=cluster.name,
        port=cluster.port,
        data_directory=data_directory or f"/var/lib/postgresql/{version}/{cluster.name}",
        ssl_cert_file=cluster.ssl_cert_file or f"{conf_dir}/server.crt",
        ssl_key_file=cluster.ssl_key_file or f"{conf_dir}/server.key",
        generate_certificate=generate,
    )
