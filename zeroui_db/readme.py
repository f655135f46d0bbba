"""Sections of README.md that are derived from the contract module, never typed by hand.

    python -m zeroui_db.readme          # rewrite them in README.md
    python -m zeroui_db.readme --check  # exit 1 if README.md is stale (the unit tests do this)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from . import contract, schemas

README = Path(__file__).resolve().parent.parent / "README.md"


def access_table() -> str:
    """Who may connect to which plane database, by default and by the hard rules."""
    pg = contract.POSTGRES_PLANES
    lines = ["| Client group | " + " | ".join(p.store for p in pg) + " |", "|---|" + "---|" * len(pg)]
    for group in contract.CLIENT_GROUPS:
        cells = []
        for plane in pg:
            rule = contract.forbidding_rule(group, plane)
            if group is contract.ADMIN_HOSTS:
                cells.append(f"{contract.ADMIN_ROLE} only")
            elif rule:
                cells.append(f"never (hard rule {rule.number})")
            elif plane in group.default_planes:
                cells.append(f"{plane.app_role}, {plane.readonly_role}")
            else:
                cells.append("not by default")
        lines.append(f"| {group.title} (`{group.key}`) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def schema_tables() -> str:
    """Each plane's tables with their classification, read from sql/schemas."""
    out = []
    for plane in contract.PLANES:
        out += [f"**{plane.title}** (`{plane.store}`, `sql/schemas/{plane.key}/`)", "",
                "| Table | Data class | What it holds | File |", "|---|---|---|---|"]
        for t in schemas.tables(plane.key, schemas.SCHEMA_DIR):
            out.append(f"| `{t.name}` | {t.class_key} | {t.description} | `{t.path.split('/', 1)[1]}` |")
        out.append("")
    return "\n".join(out).rstrip()


SECTIONS = {
    "plane-table": contract.plane_table_markdown,
    "access-table": access_table,
    "schema-tables": schema_tables,
}


def render(text: str) -> str:
    for name, make in SECTIONS.items():
        pattern = re.compile(rf"(<!-- {name}:begin[^>]*-->\n)(?:.*?\n)?(<!-- {name}:end -->)", re.S)
        text, count = pattern.subn(lambda m, make=make: m.group(1) + make() + "\n" + m.group(2), text)
        if count != 1:
            raise ValueError(f"README.md needs exactly one '{name}' section")
    return text


def main(argv: list[str]) -> int:
    text = README.read_text()
    fresh = render(text)
    if "--check" in argv:
        if fresh != text:
            print("README.md is stale: run python -m zeroui_db.readme", file=sys.stderr)
            return 1
        return 0
    README.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
