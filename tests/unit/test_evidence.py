"""The evidence guard's script (installed by the pilot's superuser): it names the plane's keeper,
carries a marker of its own content, and counts as installed only whole and enabled."""

from zeroui_db import contract, evidence


def test_the_guard_protects_the_planes_keeper():
    script = evidence.guard_script(contract.TENANT)
    assert "to_regrole('\"zeroui_tenant_keeper\"')" in script.sql
    assert ':"keeper_role"' not in script.sql
    for event in ("ddl_command_start", "sql_drop", "ddl_command_end"):
        assert f"ON {event}\n    EXECUTE FUNCTION zeroui_guard.evidence_guard();" in script.sql


def test_the_marker_says_which_script_is_installed():
    tenant, product = evidence.guard_script(contract.TENANT), evidence.guard_script(contract.PRODUCT)
    assert tenant.marker.startswith("zeroui evidence guard ") and tenant.marker != product.marker
    assert f"COMMENT ON FUNCTION \"zeroui_guard\".\"evidence_guard\"() IS '{tenant.marker}';" in tenant.sql
    assert evidence.guard_script(contract.TENANT) == tenant  # the same text, the same marker


def test_the_guard_counts_as_current_only_whole_and_enabled():
    script = evidence.guard_script(contract.TENANT)
    assert evidence.guard_current((script.marker, 3), script)
    assert not evidence.guard_current(None, script)  # not installed
    assert not evidence.guard_current(("zeroui evidence guard 0000", 3), script)  # an older script
    assert not evidence.guard_current((script.marker, 2), script)  # a trigger dropped or disabled
