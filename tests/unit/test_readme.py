"""The README's contract tables are generated from the contract module, and current."""

from zeroui_db import contract, readme


def test_readme_tables_are_current():
    assert readme.main(["--check"]) == 0
    assert contract.plane_table_markdown() in readme.README.read_text()
    assert readme.access_table() in readme.README.read_text()
