"""Parsing what the host says, including when there is nothing (fresh host, --dry)."""

from zeroui_db.facts import ClusterInfo, ClusterServerState, DistroPostgresMajor, PostgresClusters


def test_clusters_parsed():
    out = [
        "15  main    5432  down   postgres /var/lib/postgresql/15/main  /var/log/postgresql/postgresql-15-main.log",
        "16  zt1     15500 online postgres /srv/pg/16/zt1               /var/log/postgresql/postgresql-16-zt1.log",
    ]
    assert PostgresClusters().process(out) == [
        ClusterInfo(15, "main", 5432, False, "/var/lib/postgresql/15/main"),
        ClusterInfo(16, "zt1", 15500, True, "/srv/pg/16/zt1"),
    ]
    assert PostgresClusters().process([]) == []


def test_distro_major():
    assert DistroPostgresMajor().process(["15"]) == 15
    assert DistroPostgresMajor().process(["13", "15"]) == 15
    assert DistroPostgresMajor().process([]) is None


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
