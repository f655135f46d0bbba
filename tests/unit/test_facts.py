"""Parsing what the host says, including when there is nothing (fresh host, --dry)."""

from zeroui_db.facts import ClusterInfo, ClusterServerState, PostgresHost, PostgresHostInfo


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
