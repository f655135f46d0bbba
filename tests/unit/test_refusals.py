"""Dangerous input refused before anything changes: one line each, naming key and fix.

The inventory's own values (tests/unit/conftest.py's sites with one value changed), what the
host says about the env directory and certificate files (facts as the host would print
them), pyinfra groups nobody deploys to, and a hypothesis corpus of broken inventories.
Every shell argument that comes from an inventory goes through pyinfra's quoting, which
the last tests check on the commands themselves.
"""

from __future__ import annotations

import copy
import re
import shlex
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import BASE, CLOUD
from zeroui_db import contract, envdir, site as site_module
from zeroui_db.config import ConfigError, EnvFiles, parse_site
from zeroui_db.facts import ClusterServerState, FilesState, FileState, GroupExists, RegularFiles

ONE_LINE = re.compile(r"inventory [a-z0-9_?-]+: [A-Za-z0-9_.\[\]]+: [^\n]+; [^\n]+")


def refused(data) -> str:
    with pytest.raises(ConfigError) as e:
        parse_site(data)
    message = str(e.value)
    assert ONE_LINE.fullmatch(message), message
    return message


def pilot(**changes) -> dict:
    data = copy.deepcopy(BASE)
    for path, value in changes.items():
        *parents, key = path.split("__")
        target = data
        for p in parents:
            target = target.setdefault(p, {})
        target[key] = value
    return data


# -- env_files.dir: a directory of its own -----------------------------------------------------

OWN_DIR_FIX = ("give the env files a directory of their own, such as /etc/zeroui/env "
               "(the bundle sets its owner and mode)")


@pytest.mark.parametrize("directory", [
    "/", "/etc", "/tmp", "/usr", "/var", "/root", "/home", "/bin", "/boot", "/dev", "/lib", "/lib64", "/opt",
    "/proc", "/run", "/sbin", "/srv", "/sys", "/var/lib", "/var/tmp", "/etc/ssl", "/etc/ssl/private", "/etc/ssh",
    "/etc/postgresql", "/var/lib/postgresql", "/usr/local/bin", "/run/postgresql",
    "/home/alice", "/run/user/1000", "/proc/self/cwd", "/dev/shm/zeroui", "/sys/kernel/x",
])
def test_system_or_shared_env_dir_refused(directory):
    assert refused(pilot(env_files__dir=directory)) == (
        f"inventory pilot: env_files.dir: {directory} is a system or shared directory; {OWN_DIR_FIX}")


@pytest.mark.parametrize("directory", ["/etc/zeroui/env", "/srv/zeroui/env", "/opt/zeroui", "/var/lib/zeroui",
                                       "/home/alice/zeroui-env", "/etc/zeroui"])
def test_a_directory_of_its_own_accepted(directory):
    assert parse_site(pilot(env_files__dir=directory)).env_files.dir == directory


@pytest.mark.parametrize("value,plain", [("/etc/", "/etc"), ("/etc/zeroui/../ssl", "/etc/ssl"), ("//etc", "/etc"),
                                         ("/etc/zeroui//env", "/etc/zeroui/env"), ("/etc/./zeroui", "/etc/zeroui"),
                                         ("/tmp/..", "/")])
def test_paths_that_name_another_place_refused(value, plain):
    """A check by name must not be fooled: '/etc/zeroui/../ssl' is /etc/ssl."""
    assert refused(pilot(env_files__dir=value)) == (
        f"inventory pilot: env_files.dir: {value!r} has '.', '..', doubled or trailing '/' in it; "
        f"write it plainly, e.g. {plain}")


@pytest.mark.parametrize("value", ["/etc/zeroui/env\n", "/etc/zeroui/env x", "/etc/zeroui/'env'", "etc/zeroui",
                                   "/etc/zeroui/$(id)", "/etc/zeroui/env;reboot", "/etc/zeroui/\x00"])
def test_env_dir_with_quotes_whitespace_or_shell_characters_refused(value):
    assert refused(pilot(env_files__dir=value)) == (
        f"inventory pilot: env_files.dir: {value!r} is not a plain absolute path; "
        "write an absolute path without quotes, spaces or shell characters")


# -- env_files.group: the system's name rules --------------------------------------------------

GROUP_FIX = ("name a system group: lowercase letters, digits, '_' and '-', starting with a letter or '_', "
             "at most 32 characters")


@pytest.mark.parametrize("group", ["1000", "zeroui;id", "zeroui env", "Zeroui", "-zeroui", "zeroui\n", "'zeroui'",
                                   "$(id)", "a" * 33, "", "zeroui:root"])
def test_group_names_that_break_the_rules_refused(group):
    assert refused(pilot(env_files__mode="0640", env_files__group=group)) == (
        f"inventory pilot: env_files.group: {group!r} is not a valid group name; {GROUP_FIX}")


@pytest.mark.parametrize("group", ["zeroui", "_zeroui", "zeroui-env", "ssl-cert", "a" * 32])
def test_group_names_accepted(group):
    assert parse_site(pilot(env_files__mode="0640", env_files__group=group)).env_files.group == group


# -- networks for everyone, wildcard listen addresses ----------------------------------------

@pytest.mark.parametrize("group", [g.key for g in contract.CLIENT_GROUPS])
@pytest.mark.parametrize("network", ["0.0.0.0/0", "::/0"])
def test_networks_admitting_everyone_refused(group, network):
    data = pilot()
    data["clients"][group]["networks"].append(network)
    i = len(data["clients"][group]["networks"]) - 1
    assert refused(data) == (
        f"inventory pilot: clients.{group}.networks[{i}]: {network} admits every address; list the clients' own "
        f"networks, or set clients.{group}.allow_any_address: True if it is really meant")


def test_explicit_override_admits_everyone():
    data = pilot()
    data["clients"]["tenant_services"].update(networks=["0.0.0.0/0", "::/0"], allow_any_address=True)
    assert [str(n) for n in parse_site(data).access(contract.TENANT_SERVICES).networks] == ["0.0.0.0/0", "::/0"]


@pytest.mark.parametrize("value", ["yes", 1, "True", ["true"]])
def test_override_must_be_true_or_false(value):
    data = pilot()
    data["clients"]["tenant_services"].update(networks=["0.0.0.0/0"], allow_any_address=value)
    assert refused(data) == (
        f"inventory pilot: clients.tenant_services.allow_any_address: expected True or False, got {value!r}; "
        "write True or False")


def test_override_does_not_lift_hard_rule_1():
    """IDE laptops from everywhere would share product services' addresses: still refused."""
    data = pilot()
    data["clients"]["ide_laptops"].update(networks=["0.0.0.0/0"], allow_any_address=True)
    assert refused(data).startswith("inventory pilot: clients.ide_laptops.networks[0]: 0.0.0.0/0 overlaps ")


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "0:0::0"])
def test_wildcard_listen_addresses_refused(address):
    assert refused(pilot(cluster__listen_addresses=["127.0.0.1", address])) == (
        f"inventory pilot: cluster.listen_addresses[1]: {address} is a wildcard: the server would listen on every "
        "address of the host; list this host's own addresses, those clients connect to")


@pytest.mark.parametrize("address", ["0.0.0.0", "::"])
def test_wildcard_endpoint_host_refused(address):
    data = copy.deepcopy(CLOUD)
    data["endpoints"]["tenant"]["host"] = address
    assert refused(data) == (
        f"inventory cloud: endpoints.tenant.host: {address} is a wildcard address, no host to connect to; "
        "write the server's own address or DNS name")


# -- non-string values where strings belong ------------------------------------------------------

@pytest.mark.parametrize("key,value", [
    ("listen_addresses", ["127.0.0.1", 2130706433]),  # ipaddress would read the number as 127.0.0.1
    ("listen_addresses", ["127.0.0.1", None]),
    ("listen_addresses", ["127.0.0.1", ["10.20.0.1"]]),
])
def test_non_strings_in_listen_addresses_refused(key, value):
    assert refused(pilot(**{f"cluster__{key}": value})) == (
        f"inventory pilot: cluster.{key}[1]: expected a string, got {value[1]!r}; write a string")


@pytest.mark.parametrize("field,value", [("networks", 167772160), ("networks", None), ("networks", {"10.0.0.0": 8}),
                                         ("planes", ["tenant"]), ("planes", None), ("planes", 1)])
def test_non_strings_in_client_lists_refused(field, value):
    data = pilot()
    data["clients"]["tenant_services"][field] = [value]
    assert refused(data) == (
        f"inventory pilot: clients.tenant_services.{field}[0]: expected a string, got {value!r}; write a string")


@pytest.mark.parametrize("path,key", [
    ("cluster__name", "cluster.name"), ("cluster__connect_host", "cluster.connect_host"),
    ("cluster__ssl_ca_file", "cluster.ssl_ca_file"), ("env_files__dir", "env_files.dir"),
    ("env_files__mode", "env_files.mode"), ("env_files__group", "env_files.group"), ("ide__data_dir", "ide.data_dir"),
])
@pytest.mark.parametrize("value", [5, 0o600, ["x"], {"x": 1}, True, 1.5])
def test_non_strings_in_string_keys_refused(path, key, value):
    message = refused(pilot(**{path: value}))
    assert message.startswith(f"inventory pilot: {key}: expected a string, got {value!r}; "), message


# -- the host: the env directory (zeroui_db/envdir.py) ----------------------------------------

def env_files(directory="/srv/zeroui/env", mode="0600", group=None) -> EnvFiles:
    return EnvFiles(directory, mode, group)


def d(mode="755", user="root", group="root", kind="d") -> FileState:
    return FileState(mode, user, group, None, kind)


ROOTS = {"/": d(), "/srv": d(), "/srv/zeroui": d()}
MARKER = "/srv/zeroui/env/.zeroui-db"


def test_a_missing_directory_is_made_by_the_bundle():
    assert envdir.inspect(env_files(), dict(ROOTS)) == envdir.EnvDir("/srv/zeroui/env", exists=False, own=False)
    assert envdir.inspect(env_files(), {"/": d(), "/srv": d()}).exists is False  # parents made too
    assert envdir.paths_to_read("/srv/zeroui/env") == ("/", "/srv", "/srv/zeroui", "/srv/zeroui/env", MARKER)


def test_the_bundles_own_directory_is_known_by_its_root_owned_marker():
    have = {**ROOTS, "/srv/zeroui/env": d("755"), MARKER: d("644", kind="f")}
    assert envdir.inspect(env_files(), have).own  # drifted to 0755: the deploy sets it back
    forged = {**have, MARKER: d("644", user="alice", kind="f")}
    with pytest.raises(envdir.UnsafeDirectory):  # someone else's marker does not make it ours
        envdir.inspect(env_files(), forged)


@pytest.mark.parametrize("state,problem,fix", [
    (d("755"), "/srv/zeroui/env lets other users in (mode 0755)", "chmod o-rwx /srv/zeroui/env yourself"),
    (d("1777"), "/srv/zeroui/env lets other users in (mode 1777)", "chmod o-rwx /srv/zeroui/env yourself"),
    (d("770"), "/srv/zeroui/env is writable by group root (mode 0770)", "chmod g-w /srv/zeroui/env yourself"),
    (d("700", user="alice"), "/srv/zeroui/env belongs to alice", "chown root /srv/zeroui/env yourself"),
])
def test_someone_elses_directory_is_never_changed_and_refused_when_open(state, problem, fix):
    with pytest.raises(envdir.UnsafeDirectory) as e:
        envdir.inspect(env_files(), {**ROOTS, "/srv/zeroui/env": state})
    assert (e.value.problem, e.value.fix) == (
        problem, f"the bundle changes only directories it made: use a new directory, or run {fix}")


def test_someone_elses_closed_directory_is_used_as_it_is():
    assert envdir.inspect(env_files(), {**ROOTS, "/srv/zeroui/env": d("750")}) == envdir.EnvDir(
        "/srv/zeroui/env", exists=True, own=False)


def test_a_reading_group_must_get_through_someone_elses_directory():
    cfg = env_files(mode="0640", group="zeroui")
    with pytest.raises(envdir.UnsafeDirectory) as e:
        envdir.inspect(cfg, {**ROOTS, "/srv/zeroui/env": d("750")})
    assert e.value.problem == "/srv/zeroui/env does not let group zeroui through (group root, mode 0750)"
    assert envdir.inspect(cfg, {**ROOTS, "/srv/zeroui/env": d("750", group="zeroui")}).exists


@pytest.mark.parametrize("parents,problem", [
    ({"/srv/zeroui": d("755", user="alice")}, "/srv/zeroui belongs to alice, who could replace /srv/zeroui/env"),
    ({"/srv": d("777")}, "/srv is writable by other users (mode 0777), who could replace /srv/zeroui/env"),
    ({"/srv/zeroui": d("775")},
     "/srv/zeroui is writable by other users (mode 0775), who could replace /srv/zeroui/env"),
    ({"/srv/zeroui": d("644", kind="f")}, "/srv/zeroui is not a directory"),
])
def test_parents_others_could_rename_refused(parents, problem):
    with pytest.raises(envdir.UnsafeDirectory) as e:
        envdir.inspect(env_files(), {**ROOTS, **parents})
    assert e.value.problem == problem


def test_sticky_parents_and_root_links_are_fine():
    """/tmp (1777, sticky) holds the tests' own directories; /var/run is root's link to /run."""
    have = {"/": d(), "/tmp": d("1777"), "/tmp/zt-work": d("700")}
    assert not envdir.inspect(env_files("/tmp/zt-work/env"), have).exists
    run = {"/": d(), "/var": d(), "/var/run": d("777", kind="l")}
    assert not envdir.inspect(env_files("/var/run/zeroui"), run).exists


@pytest.mark.parametrize("kind,what", [("l", "a symbolic link"), ("f", "not a directory"), ("o", "not a directory")])
def test_the_env_dir_itself_must_be_a_directory(kind, what):
    with pytest.raises(envdir.UnsafeDirectory) as e:
        envdir.inspect(env_files(), {**ROOTS, "/srv/zeroui/env": d("777", kind=kind)})
    assert e.value.problem == f"/srv/zeroui/env is {what}"


class FakeHost:
    """A host whose facts are given: fact class -> value (or a function of the fact's arguments)."""

    name = "ws1"

    def __init__(self, facts: dict):
        self.facts = facts

    def get_fact(self, cls, **kwargs):
        value = self.facts[cls]
        return value(**kwargs) if callable(value) else value


def test_unsafe_env_dir_refused_with_one_line_naming_the_host():
    site = parse_site(pilot(env_files__dir="/srv/zeroui/env"))
    host = FakeHost({FilesState: {**ROOTS, "/srv/zeroui/env": d("755")}})
    with pytest.raises(ConfigError) as e:
        site_module.check_env_dir(site, host)
    assert str(e.value) == (
        "inventory pilot: env_files.dir: /srv/zeroui/env lets other users in (mode 0755) (on ws1); the bundle "
        "changes only directories it made: use a new directory, or run chmod o-rwx /srv/zeroui/env yourself")


def test_reading_group_must_exist_on_the_host():
    site = parse_site(pilot(env_files__mode="0640", env_files__group="zeroui"))
    host = FakeHost({FilesState: {"/": d(), "/etc": d()}, GroupExists: False})
    with pytest.raises(ConfigError) as e:
        site_module.check_env_dir(site, host)
    assert str(e.value) == ("inventory pilot: env_files.group: group zeroui does not exist on ws1; "
                            "create it (groupadd zeroui) or name an existing group")
    site_module.check_env_dir(site, FakeHost({FilesState: {"/": d(), "/etc": d()}, GroupExists: True}))


# -- the host: certificate files -----------------------------------------------------------------

OWN_CERT = dict(cluster__ssl_cert_file="/etc/zeroui/tls/db.crt", cluster__ssl_key_file="/etc/zeroui/tls/db.key",
                cluster__ssl_ca_file="/etc/zeroui/tls/ca.crt")


@pytest.mark.parametrize("present,key", [(set(), "ssl_cert_file"), ({"/etc/zeroui/tls/db.crt"}, "ssl_key_file")])
def test_certificate_files_missing_on_the_host_refused(present, key):
    from zeroui_db.facts import PostgresHost, PostgresHostInfo
    site = parse_site(pilot(**OWN_CERT))
    host = FakeHost({PostgresHost: PostgresHostInfo(15, ()), RegularFiles: present})
    with pytest.raises(ConfigError) as e:
        site_module.server_plan(site, host)
    path = OWN_CERT[f"cluster__{key}"]
    assert str(e.value) == (f"inventory pilot: cluster.{key}: {path} is no file on ws1; "
                            "put the certificate and its key there, or correct the path")
    both = FakeHost({PostgresHost: PostgresHostInfo(15, ()), RegularFiles: set(OWN_CERT.values())})
    assert site_module.server_plan(site, both).ssl_cert_file == "/etc/zeroui/tls/db.crt"


def test_regular_files_fact_follows_links_and_reads_no_contents(tmp_path):
    (tmp_path / "real.crt").write_text("x")
    (tmp_path / "link.crt").symlink_to(tmp_path / "real.crt")
    (tmp_path / "dir.crt").mkdir()
    paths = tuple(str(tmp_path / n) for n in ("real.crt", "link.crt", "dir.crt", "none.crt"))
    command = RegularFiles().command(paths).get_raw_value()
    out = subprocess.run(command, shell=True, capture_output=True, text=True).stdout.splitlines()
    assert RegularFiles().process(out) == set(paths[:2])


# -- pyinfra groups nobody deploys to ------------------------------------------------------------

class FakeInventory:
    def __init__(self, groups: dict[str, list]):
        self.groups = groups

    def get_group(self, name, default=None):
        return self.groups.get(name, default)

    def __iter__(self):
        return iter({h for hosts in self.groups.values() for h in hosts})


@pytest.mark.parametrize("name", ["tenant_service", "workstations", "admin", "ide_laptop"])
def test_a_group_nobody_deploys_to_refused(name, monkeypatch):
    monkeypatch.setattr("sys.argv", ["pyinfra", "-y", "inventories/pilot.py", "deploy.py"])
    inventory = FakeInventory({"workstation": ["@local"], "tenant_services": ["@local"], name: ["@local"],
                               "pilot": ["@local"]})  # "pilot": pyinfra's group named after the file
    with pytest.raises(ConfigError) as e:
        site_module._check_groups(parse_site(pilot()), inventory)
    assert str(e.value) == (
        f"inventory pilot: {name}: is no group the deploy knows, so its hosts would get nothing; use one of: "
        "workstation, ide_laptops, tenant_services, product_services, shared_services, admin_hosts "
        "(or start the name with '_': pyinfra then takes it for no group)")


def test_the_inventory_files_own_group_is_no_typo(monkeypatch):
    monkeypatch.setattr("sys.argv", ["pyinfra", "-y", "inventories/pilot.py", "deploy.py"])
    inventory = FakeInventory({"workstation": ["@local"], "shared_services": ["@local"], "pilot": ["@local"]})
    site_module._check_groups(parse_site(pilot()), inventory)
    monkeypatch.setattr("sys.argv", ["pyinfra", "-y", "inventories/other.py", "deploy.py"])
    with pytest.raises(ConfigError):  # a group called "pilot" that is not the file's
        site_module._check_groups(parse_site(pilot()), inventory)


def test_a_second_workstation_refused():
    inventory = FakeInventory({"workstation": ["10.0.0.1", "10.0.0.2"]})
    with pytest.raises(ConfigError) as e:
        site_module._check_groups(parse_site(pilot()), inventory)
    assert str(e.value) == ("inventory pilot: workstation: has 2 hosts; the pilot's cluster runs on one "
                            "workstation: keep one host in the group")


# -- a corpus of broken inventories (hypothesis) -------------------------------------------------

# Every string value of an inventory, as a path of keys into the pilot (or cloud) dict.
STRING_KEYS = [
    ("site",), ("cluster", "name"), ("cluster", "connect_host"), ("cluster", "ssl_cert_file"),
    ("cluster", "ssl_key_file"), ("cluster", "ssl_ca_file"), ("cluster", "listen_addresses", 0),
    ("clients", "tenant_services", "networks", 0), ("clients", "product_services", "planes", 0),
    ("env_files", "dir"), ("env_files", "mode"), ("env_files", "group"), ("ide", "data_dir"), ("ide", "config_dir"),
]
CLOUD_STRING_KEYS = [("endpoints", "tenant", k) for k in ("host", "database", "ca_file", "admin_user",
                                                          "channel_binding")]
# One of these anywhere in a value changes what a configuration line, URL or shell command means.
DANGEROUS = ["'", '"', "\n", "\r", " ", "\t", "$", ";", "`", "\\", "\x00", "&", "|", "<", ">", "*", "\x7f", "#"]
NOT_STRINGS = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(),
                        st.lists(st.text(max_size=3), min_size=1, max_size=2),
                        st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=1))


def valid(cloud: bool) -> dict:
    data = copy.deepcopy(CLOUD if cloud else BASE)
    if cloud:
        data["endpoints"]["tenant"].update(database="zeroui_tenant_pg", channel_binding="require")
    else:  # every optional string present, so that each can be broken
        data["cluster"].update(connect_host="10.20.0.1", **{k.split("__")[1]: v for k, v in OWN_CERT.items()})
        data["clients"]["product_services"]["planes"] = ["product"]
        data["env_files"].update(mode="0640", group="zeroui")
        data["ide"] = {"data_dir": "/var/lib/zeroui", "config_dir": "/etc/zeroui/ide"}
    return data


def key_name(path) -> str:
    """How a refusal names the value at ``path``: dotted, list indexes in brackets."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


@st.composite
def broken_inventory(draw):
    cloud = draw(st.booleans())
    path = draw(st.sampled_from(CLOUD_STRING_KEYS if cloud else STRING_KEYS))
    data = valid(cloud)
    target = data
    for p in path[:-1]:
        target = target[p]
    if draw(st.booleans()):
        original = target[path[-1]]
        at = draw(st.integers(0, len(original)))
        # PostgreSQL names may hold '$' (quoted wherever they go); nothing else may.
        dangerous = [c for c in DANGEROUS if c != "$" or path[-1] not in ("database", "admin_user")]
        value = original[:at] + draw(st.sampled_from(dangerous)) + original[at:]
    else:
        value = draw(NOT_STRINGS)
        if value is None and path[-1] in ("group", "ssl_cert_file", "ssl_key_file", "ssl_ca_file", "connect_host",
                                          "data_dir", "config_dir", "mode", "dir", "name", "database",
                                          "channel_binding"):
            value = 0  # None there means "the default", which is valid
    target[path[-1]] = value
    return data, path


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(broken_inventory())
def test_corpus_of_broken_inventories_refused_with_one_line(case):
    """Any string value with a quote, whitespace, a control or shell character in it, and any
    non-string where a string belongs, stops the run with one line naming that very key."""
    data, path = case
    message = refused(data)
    site = "?" if path == ("site",) else data["site"]
    assert message.startswith(f"inventory {site}: {key_name(path)}: "), message


# -- shell arguments from the inventory go through pyinfra's quoting ----------------------------

ODD = "/srv/it's here;$(id)/x"  # what validation refuses; quoting must hold even so


def test_files_state_quotes_every_path():
    command = FilesState().command(("/etc", ODD)).get_raw_value()
    assert shlex.quote(ODD) in command and f" {ODD} " not in command


def test_cluster_server_state_quotes_paths_and_names():
    command = ClusterServerState().command(15, "ma'in", 5432, ("/etc/postgresql/15/main/pg_hba.conf", ODD))
    raw = command.get_raw_value()
    assert shlex.quote(ODD) in raw and shlex.quote("/var/run/postgresql/15-ma'in.pid") in raw


def test_group_exists_quotes_the_group():
    assert shlex.quote("zeroui;id") in GroupExists().command("zeroui;id").get_raw_value()
