"""The contract module: names derived once, and faithful to the contract document."""

from pathlib import Path

from zeroui_db import contract

CONTRACT_DOC = Path(__file__).resolve().parents[2].parent / "shared" / "contract" / "db-plane-contract.md"


def test_plane_table_matches_the_contract_document():
    doc_rows = [line for line in CONTRACT_DOC.read_text().splitlines() if line.startswith("| ")]
    assert contract.plane_table_markdown().splitlines()[0] == doc_rows[0]
    assert [r for r in contract.plane_table_markdown().splitlines() if r.startswith("| ")][1:] == doc_rows[1:5]


def test_names_are_unique():
    roles = [r for p in contract.POSTGRES_PLANES for r in p.roles] + [contract.ADMIN_ROLE]
    assert len(set(roles)) == len(roles)
    assert len({p.store for p in contract.PLANES}) == len({p.env_var for p in contract.PLANES}) == 4


def test_hard_rules_name_forbidden_server_planes():
    for rule in contract.HARD_RULES:
        assert all(p.is_postgres for p in rule.forbidden)
        assert not set(rule.forbidden) & set(rule.group.default_planes)
    assert contract.forbidding_rule(contract.IDE_LAPTOPS, contract.PRODUCT).number == 1
    assert contract.forbidding_rule(contract.TENANT_SERVICES, contract.SHARED).number == 2
    assert contract.forbidding_rule(contract.PRODUCT_SERVICES, contract.SHARED) is None


def test_service_groups_hold_their_planes_login_roles():
    assert [g.plane for g in contract.SERVICE_GROUPS] == list(contract.POSTGRES_PLANES)
    assert contract.IDE_LAPTOPS.credential_roles == ()
    assert contract.TENANT_SERVICES.credential_roles == contract.TENANT.login_roles
