"""The cutover's pure parts: its record and the deploy's refusal, the digest and the rows it
names, the copy order, the pre-flight's refusals, and "only the URL changes"."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from zeroui_db import contract, envfiles
from zeroui_db.cutover import state
from zeroui_db.cutover.checksums import Digester, compare, copy_out, ordered_select
from zeroui_db.cutover.preflight import DatabaseFacts, problems, warnings
from zeroui_db.cutover.switch import only_the_url_changes
from zeroui_db.cutover.tables import NotCopyable, Table, in_copy_order

pytestmark = pytest.mark.cutover


def table(name: str, key=(("id", False),), parents=(), triggers=(), columns=("id", "v"), app_inserts=True) -> Table:
    return Table(name, tuple(columns), tuple(key), tuple(parents), tuple(triggers), (), app_inserts, 0, 0,
                 types=("bigint",) + ("text",) * (len(columns) - 1))


# -- the record ----------------------------------------------------------------------------------


def test_record_round_trip_is_private_and_keeps_the_plane_order(tmp_path):
    record = state.CutoverState.new(tmp_path, "pilot", "cloud", ["tenant", "product", "shared"])
    record.set_status("tenant", state.FROZEN)
    record.record_table("tenant", "receipts", status=state.COPYING)
    again = state.CutoverState.load(tmp_path, "pilot")
    assert again.planes == ["tenant", "product", "shared"]  # not the JSON's sorted keys
    assert again.status("tenant") == "frozen" and again.status("product") is None
    assert again.table("tenant", "receipts")["status"] == "copying"
    assert stat.S_IMODE(os.stat(tmp_path / "pilot-cutover.json").st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["pilot-cutover.json"]  # no temporary file left


def test_a_tables_record_is_replaced_whole():
    """What a copy recorded (its digest, the chain it verified) never outlives it: the next
    record of that table replaces it."""
    record = state.CutoverState.new("/nonexistent", "pilot", "cloud", ["tenant"])
    record.save = lambda: None
    record.record_table("tenant", "receipts", status=state.DONE, sha256="a" * 64, chain_verified="a" * 64)
    record.record_table("tenant", "receipts", status=state.COPYING)
    assert record.table("tenant", "receipts") == {"status": "copying"}


def test_a_plane_frozen_again_after_a_rollback_copies_from_the_start(tmp_path):
    record = state.CutoverState.new(tmp_path, "pilot", "cloud", ["tenant", "product"])
    record.set_status("product", state.FROZEN)
    record.record_table("product", "policy_bundles", status=state.DONE, sha256="b" * 64)
    record.set_status("product", state.ROLLED_BACK)
    record.begin("product")
    assert record.status("product") == "frozen" and record.plane("product")["tables"] == {}


@pytest.mark.parametrize("statuses, expected", [
    ({}, None),
    ({"tenant": "rolled_back", "product": "rolled_back"}, None),
    ({"tenant": "frozen", "product": "rolled_back"}, "planes tenant are frozen for the cutover to site cloud"),
    ({"tenant": "verified", "product": "copied"}, "planes tenant, product are frozen"),
    ({"tenant": "switched", "product": "switched"}, "planes tenant, product were cut over to site cloud"),
    ({"tenant": "switched", "product": "frozen"}, "planes tenant, product are frozen"),
])
def test_the_deploy_refuses_while_a_cutover_holds_a_freeze(tmp_path, statuses, expected):
    if statuses:
        record = state.CutoverState.new(tmp_path, "pilot", "cloud", list(statuses))
        for plane, status in statuses.items():
            record.set_status(plane, status)
    refusal = state.deploy_refusal(tmp_path, "pilot")
    if expected is None:
        assert refusal is None
    else:
        problem, fix = refusal
        assert problem.startswith(expected) and str(tmp_path) in problem
        assert "rollback" in fix or "deploy the cloud inventory" in fix
    assert state.deploy_refusal(tmp_path, "other-site") is None  # the record is the source site's


def test_an_unreadable_record_is_taken_as_a_freeze(tmp_path):
    (tmp_path / "pilot-cutover.json").write_text("{half a reco")
    problem, _ = state.deploy_refusal(tmp_path, "pilot")
    assert "unreadable" in problem


# -- the digest and the rows it names ----------------------------------------------------------------


def test_digest_does_not_depend_on_how_the_stream_is_cut():
    stream = bytes(range(256)) * 5_000  # ~1.2 MiB: crosses the hashing batch
    whole, pieces = Digester(), Digester()
    whole.feed(stream)
    for i in range(0, len(stream), 7):
        pieces.feed(memoryview(stream)[i:i + 7])
    assert whole.digest(rows=3) == pieces.digest(rows=3)
    assert whole.digest(rows=3).bytes == len(stream)
    assert whole.digest(rows=3).sha256 == hashlib.sha256(stream).hexdigest()


def test_rows_travel_in_binary_unless_a_type_is_the_databases_own():
    """Binary wherever every column's type is PostgreSQL's own; the rows that differ are
    always read as text (they are named by key)."""
    builtin = table("t")
    assert copy_out(builtin).as_string().endswith(" TO STDOUT (FORMAT binary)")
    assert copy_out(builtin, as_text=True).as_string().endswith(" TO STDOUT (FORMAT text)")
    own = Table("t", ("id", "v"), (("id", False),), (), (), (), True, 0, 0, types=("bigint", "mood[]"), binary=False)
    assert copy_out(own).as_string().endswith(" TO STDOUT (FORMAT text)")


def test_a_column_of_another_type_is_a_different_table():
    assert table("t").describe() != Table("t", ("id", "v"), (("id", False),), (), (), (), True, 0, 0,
                                          types=("bigint", "integer")).describe()


def test_compare_names_changed_missing_and_extra_rows_by_key():
    t = table("t", key=(("a", False), ("b", True)), columns=("a", "b", "v", "w"))
    source = [b"1\tx\tone\tsame", b"2\tx\ttwo\tsame", b"3\tx\tthree\tsame", b"5\t\\N\tfive\tsame"]
    target = [b"1\tx\tone\tsame", b"2\tx\tTWO\tsame", b"4\tx\tfour\tsame", b"5\t\\N\tfive\tsame"]
    count, found = compare(t, iter(source), iter(target))
    assert count == 3
    assert [str(d) for d in found] == ["a=2, b=x: changed: v", "a=3, b=x: missing on the target",
                                       "a=4, b=x: only on the target"]


def test_compare_follows_streams_out_of_step_and_stops_naming_at_the_limit():
    t = table("t")
    source = [f"{i}\tv".encode() for i in range(1, 101)]
    target = source[1:]  # the first row is gone: every later row arrives one step early
    count, found = compare(t, iter(source), iter(target))
    assert count == 1 and [str(d) for d in found] == ["id=1: missing on the target"]
    changed = [f"{i}\tw".encode() for i in range(1, 101)]
    count, found = compare(t, iter(source), iter(changed), limit=3)
    assert count == 100 and len(found) == 3


def test_rows_are_ordered_by_key_bytewise_on_both_sides():
    t = table("t", key=(("tenant", False), ("name", True)), columns=("tenant", "name", "v"))
    text = ordered_select(t).as_string()
    assert text == 'SELECT "tenant", "name", "v" FROM "public"."t" ORDER BY "tenant", "name" COLLATE "C"'


# -- what is copied, and in which order ----------------------------------------------------------


def test_parents_are_copied_before_the_tables_that_reference_them():
    tables = [table("decisions", parents=["receipts"]), table("steps", parents=["runs"]), table("runs"),
              table("receipts"), table("releases", parents=["releases_parent"])]
    order = [t.name for t in in_copy_order(tables)]
    assert order.index("receipts") < order.index("decisions") and order.index("runs") < order.index("steps")
    assert order == ["runs", "steps", "receipts", "decisions", "releases"]  # otherwise as created


def test_a_reference_cycle_is_refused():
    with pytest.raises(NotCopyable, match="reference each other"):
        in_copy_order([table("a", parents=["b"]), table("b", parents=["a"])])


def test_insert_triggers_are_paused_and_the_chain_is_checked_whole():
    snapshots = table("policy_snapshots", triggers=[("guard", "O"), ("audit", "A"), ("off", "D")])
    assert snapshots.triggers_to_pause == (("guard", "O"), ("audit", "A")) and not snapshots.holds_chain
    receipts = table("receipts", triggers=[("receipts_append", "O")])
    assert receipts.triggers_to_pause == (("receipts_append", "O"),) and receipts.holds_chain


# -- the pre-flight ----------------------------------------------------------------------------------


def facts(**changes) -> DatabaseFacts:
    base = dict(address="db:5432/zeroui_tenant_pg", version="15.10", version_num=150010, encoding="UTF8",
                collate="C.UTF-8", ctype="C.UTF-8", extensions={"plpgsql": "1.0"},
                migrations={"0001_evidence_ledger.sql": "a" * 64, "0002_integration_state.sql": "b" * 64},
                tables=[table("receipts")], filled=[])
    return DatabaseFacts(**{**base, **changes})


def test_matching_sides_pass():
    assert problems(contract.TENANT, facts(), facts(version_num=160004), resuming=False) == []


@pytest.mark.parametrize("target, words", [
    (facts(version_num=140011), "older than the source's 15"),
    (facts(encoding="LATIN1"), "encoding is LATIN1"),
    (facts(extensions={}), "extensions plpgsql are installed on the source but not on the target"),
    (facts(migrations={"0001_evidence_ledger.sql": "a" * 64}),
     "0002_integration_state.sql are applied only on the source"),
    (facts(migrations={"0001_evidence_ledger.sql": "c" * 64, "0002_integration_state.sql": "b" * 64}),
     "0001_evidence_ledger.sql are applied with other checksums"),
    (facts(tables=[table("receipts", columns=("id", "v", "extra"))]), "table receipts differs"),
    (facts(filled=["receipts"]), "already holds rows in receipts"),
])
def test_each_refusal_names_the_plane_and_the_fix(target, words):
    [problem] = problems(contract.TENANT, facts(), target, resuming=False)
    assert problem.startswith("tenant: ") and words in problem and "; " in problem


def test_a_resumed_cutover_may_find_its_own_rows_on_the_target():
    assert problems(contract.TENANT, facts(), facts(filled=["receipts"]), resuming=True) == []


def test_another_collation_is_said_but_does_not_stop_the_cutover():
    target = facts(collate="en_US.UTF-8", ctype="en_US.UTF-8")
    assert problems(contract.TENANT, facts(), target, resuming=False) == []
    [note] = warnings(contract.TENANT, facts(), target)
    assert "ORDER BY on text" in note


# -- the switch ------------------------------------------------------------------------------------


def test_the_env_files_of_two_sites_differ_only_in_the_url(site, cloud_site):
    for plane in contract.POSTGRES_PLANES:
        before = envfiles.render(site, site.endpoint(plane), "pilot-secret")
        after = envfiles.render(cloud_site, cloud_site.endpoint(plane), "cloud-secret")
        assert before != after and only_the_url_changes(plane, before, after) is None
    tenant = contract.TENANT
    text = envfiles.render(site, site.endpoint(tenant), "x")
    assert "differ in more than the URL" in only_the_url_changes(tenant, text, "# another header\n" + text)
    assert "should hold ZEROUI_TENANT_DB_URL only" in only_the_url_changes(tenant, text, text + "EXTRA=1\n")
