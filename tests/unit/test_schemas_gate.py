"""The plane classification gate: every table classified, in its own plane, no payload bodies in shared."""

import pytest

from zeroui_db import contract, schemas

GOOD_TENANT = """
-- zeroui-class: tenant/evidence_ledger: durable receipts
CREATE TABLE receipts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    body jsonb NOT NULL,
    CONSTRAINT receipts_body_object CHECK (jsonb_typeof(body) = 'object')
);
"""


def plant(root, plane, name, text):
    folder = root / plane
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def test_the_bundles_own_schemas_pass_the_gate():
    assert schemas.classification_errors() == []


def test_classified_tables_pass(tmp_path):
    plant(tmp_path, "tenant", "0001_receipts.sql", GOOD_TENANT)
    assert schemas.classification_errors(tmp_path) == []
    (table,) = schemas.tables("tenant", tmp_path)
    assert (table.name, table.columns, table.class_key) == ("receipts", ("id", "body"), "evidence_ledger")


def test_unclassified_table_is_stopped(tmp_path):
    plant(tmp_path, "product", "0001_x.sql", "CREATE TABLE IF NOT EXISTS mystery (id int);")
    (error,) = schemas.classification_errors(tmp_path)
    assert error.startswith("sql/schemas/product/0001_x.sql: table mystery is not classified: "
                            "STOP and classify its plane before creating tables")


def test_class_of_another_plane_is_refused(tmp_path):
    """Long-term tenant history never goes to the laptop."""
    plant(tmp_path, "ide", "0001_x.sql", "-- zeroui-class: ide/tenant_history: history\nCREATE TABLE h (id int);")
    (error,) = schemas.classification_errors(tmp_path)
    assert "tenant_history belongs to the tenant plane, not ide" in error


def test_table_in_the_wrong_plane_folder(tmp_path):
    plant(tmp_path, "shared", "0001_x.sql", GOOD_TENANT.replace("body jsonb", "digest text"))
    (error,) = schemas.classification_errors(tmp_path)
    assert "classified for plane 'tenant' but lives in sql/schemas/shared" in error


def test_unknown_class(tmp_path):
    plant(tmp_path, "tenant", "0001_x.sql", "-- zeroui-class: tenant/misc: stuff\nCREATE TABLE m (id int);")
    (error,) = schemas.classification_errors(tmp_path)
    assert "unknown data class 'misc'" in error


@pytest.mark.parametrize("column", ["payload", "event_payload", "request_body", "bodies"])
def test_payload_bodies_never_in_shared(tmp_path, column):
    plant(tmp_path, "shared", "0001_x.sql",
          f"-- zeroui-class: shared/observability_metadata: events\nCREATE TABLE e (id int, {column} text);")
    (error,) = schemas.classification_errors(tmp_path)
    assert f"column {column} holds payload bodies" in error and "hard rule 3" in error


def test_payload_metadata_is_fine_in_shared(tmp_path):
    plant(tmp_path, "shared", "0001_x.sql",
          "-- zeroui-class: shared/observability_metadata: events\nCREATE TABLE e (payload_sha256 text, body_size int);")
    assert schemas.classification_errors(tmp_path) == []


def test_unknown_plane_folder(tmp_path):
    plant(tmp_path, "billing", "0001_x.sql", "SELECT 1;")
    assert schemas.classification_errors(tmp_path) == [
        "sql/schemas/billing: not a plane; schema folders are ide, tenant, product, shared"]


def test_migration_names_are_ordered_and_checked(tmp_path):
    plant(tmp_path, "tenant", "0002_b.sql", "SELECT 2;")
    plant(tmp_path, "tenant", "0001_a.sql", "SELECT 1;")
    assert [m.name for m in schemas.migrations(contract.TENANT, tmp_path)] == ["0001_a.sql", "0002_b.sql"]
    plant(tmp_path, "tenant", "2-bad.sql", "SELECT 3;")
    with pytest.raises(ValueError, match="NNNN_words.sql"):
        schemas.migrations(contract.TENANT, tmp_path)


def test_statements_split_with_dollar_quotes():
    m = schemas.Migration("0001_f.sql", "-- lead\nCREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n"
                                        "SELECT ';';\n-- trailing comment only\n")
    assert len(m.statements()) == 2


def test_fast_table_names_agree_with_the_parsed_tables():
    """The audit's quick scan finds exactly the tables sqlparse finds, plane by plane."""
    from zeroui_db import contract, schemas

    for plane in contract.PLANES:
        assert schemas.table_names(plane.key) == {t.name for t in schemas.tables(plane.key)}, plane.key
        assert schemas.table_names(plane.key)
