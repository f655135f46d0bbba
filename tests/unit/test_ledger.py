"""Which migrations to apply, and when to refuse: edited, removed or out-of-order history."""

import pytest

from zeroui_db import contract, ledger
from zeroui_db.schemas import Migration

A, B, C = (Migration(f"000{i}_{n}.sql", f"SELECT {i};") for i, n in ((1, "a"), (2, "b"), (3, "c")))


def test_pending_after_the_applied():
    assert ledger.pending(contract.TENANT, [A, B, C], {A.name: A.checksum}) == [B, C]
    assert ledger.pending(contract.TENANT, [A, B], {A.name: A.checksum, B.name: B.checksum}) == []


def test_changed_applied_file_is_refused_naming_both_checksums():
    edited = Migration(A.name, "SELECT 'edited';")
    with pytest.raises(ledger.MigrationError) as e:
        ledger.pending(contract.TENANT, [edited, B], {A.name: A.checksum})
    assert str(e.value) == (
        f"tenant/0001_a.sql changed after it was applied to {contract.TENANT.store}: applied checksum {A.checksum}, "
        f"file checksum {edited.checksum}; restore the file and put the change in a new migration"
    )


def test_removed_applied_file_is_refused():
    with pytest.raises(ledger.MigrationError, match=f"tenant/0001_a.sql is applied in {contract.TENANT.store} but its file is gone"):
        ledger.pending(contract.TENANT, [B], {A.name: A.checksum})


def test_new_file_before_applied_ones_is_refused():
    with pytest.raises(ledger.MigrationError, match="0002_b.sql is new but sorts before the applied 0003_c.sql"):
        ledger.pending(contract.TENANT, [A, B, C], {A.name: A.checksum, C.name: C.checksum})


def test_role_variables_are_filled_per_plane():
    text = ledger.with_variables(contract.PRODUCT, 'REVOKE UPDATE ON t FROM :"app_role"; GRANT SELECT ON t TO :"readonly_role";')
    assert text == (f'REVOKE UPDATE ON t FROM "{contract.PRODUCT.app_role}"; '
                    f'GRANT SELECT ON t TO "{contract.PRODUCT.readonly_role}";')


def test_a_migration_needs_the_keeper_when_it_names_it():
    keeper = Migration("0005_k.sql", 'ALTER TABLE receipts OWNER TO :"keeper_role";')
    assert ledger.needs_keeper(keeper) and not ledger.needs_keeper(A)
    assert ledger.with_variables(contract.TENANT, keeper.sql) == 'ALTER TABLE receipts OWNER TO "zeroui_tenant_keeper";'


def test_the_bundles_keeper_migrations_are_the_tenant_ledgers():
    """Only the tenant plane has a keeper; only its ledger migrations need it."""
    from zeroui_db import schemas
    needing = {(p.key, m.name) for p in contract.POSTGRES_PLANES for m in schemas.migrations(p)
               if ledger.needs_keeper(m)}
    assert needing == {("tenant", "0011_evidence_keeper.sql"), ("tenant", "0013_closed_search_paths.sql"),
                       ("tenant", "0014_receipt_checks_without_counted_repeats.sql"),
                       ("tenant", "0015_chain_verified_in_parallel.sql")}
    assert [p.key for p in contract.POSTGRES_PLANES if p.keeps_evidence] == ["tenant"]
