"""The plane schema files: ordered migrations per plane, and the classification of every
table they create.

Each table is classified on the comment line right above its ``CREATE TABLE``::

    -- zeroui-class: tenant/evidence_ledger: durable receipts, append-only and hash-chained
    CREATE TABLE receipts (...);

:func:`classification_errors` is the gate the contract asks for ("if a new feature's
storage plane is unclear, STOP and explicitly classify the plane before creating
tables"); the test suite runs it, so CI refuses an unclassified or misplaced table.
Statements are split with ``sqlparse`` (it knows dollar quoting and comments); the
column lists of our own CREATE TABLE statements are read with a small depth-aware scan.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path


from . import contract
from .contract import Plane

# The bundle's schema files. ZEROUI_SCHEMA_DIR points elsewhere for developing and
# testing migrations (a site's schemas never differ: the contract fixes them).
SCHEMA_DIR = Path(os.environ.get("ZEROUI_SCHEMA_DIR") or Path(__file__).resolve().parent.parent / "sql" / "schemas")
MIGRATION_NAME = re.compile(r"^\d{4}_[a-z0-9_]+\.sql$")
ANNOTATION = re.compile(r"--\s*zeroui-class:\s*([a-z_]+)/([a-z_]+)\s*(?::\s*(.*))?$", re.M)
CREATE_TABLE = re.compile(
    r"^\s*CREATE\s+(?:TEMP(?:ORARY)?\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([\w.\"]+)\s*\((.*)\)[^()]*$",
    re.I | re.S,
)
MAY_CREATE_TABLE = re.compile(r"\bCREATE\s+(?:TEMP(?:ORARY)?\s+)?TABLE\b", re.I)
CONSTRAINT_WORDS = {"constraint", "primary", "unique", "check", "foreign", "exclude", "like"}


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        import sqlparse  # only when applying: a no-op deploy needs checksums alone

        return [s for s in sqlparse.split(self.sql) if sqlparse.format(s, strip_comments=True).strip()]


@dataclass(frozen=True)
class Table:
    path: str  # relative to the schema root, e.g. "tenant/0001_receipts.sql"
    name: str
    columns: tuple[str, ...]
    plane_key: str | None  # as declared by the annotation
    class_key: str | None
    description: str


def plane_dir(plane: Plane, root: Path = SCHEMA_DIR) -> Path:
    return root / plane.key


def migrations(plane: Plane, root: Path = SCHEMA_DIR) -> list[Migration]:
    """The plane's migration files in order; names must be ``NNNN_words.sql``."""
    folder = plane_dir(plane, root)
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.sql")):
        if not MIGRATION_NAME.match(path.name):
            raise ValueError(f"{path}: migration files are named NNNN_words.sql (e.g. 0001_receipts.sql)")
        out.append(Migration(path.name, path.read_text()))
    return out


def _columns(body: str) -> tuple[str, ...]:
    parts, depth, current = [], 0, []
    for ch in body:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    names = []
    for part in parts:
        words = part.split()
        if words and words[0].lower() not in CONSTRAINT_WORDS:
            names.append(words[0].strip('"').lower())
    return tuple(names)


def tables(plane_key: str, root: Path = SCHEMA_DIR) -> list[Table]:
    import sqlparse

    out = []
    for path in sorted((root / plane_key).glob("*.sql")):
        for statement in sqlparse.split(path.read_text()):
            if not MAY_CREATE_TABLE.search(statement):
                continue  # formatting every statement is slow; most create no table
            code = sqlparse.format(statement, strip_comments=True)
            match = CREATE_TABLE.match(code)
            if not match:
                continue
            notes = ANNOTATION.findall(statement[: statement.upper().find("CREATE")])
            plane_key_, class_key, description = notes[-1] if notes else (None, None, "")
            out.append(Table(
                f"{plane_key}/{path.name}", match.group(1).strip('"').lower(), _columns(match.group(2)),
                plane_key_, class_key, description.strip(),
            ))
    return out


_DOLLAR_BODY = re.compile(r"(\$\w*\$).*?\1", re.S)
_LINE_COMMENT = re.compile(r"--[^\n]*")
_TABLE_NAME = re.compile(r"\bCREATE\s+(?:TEMP(?:ORARY)?\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([\w.\"]+)", re.I)


def table_names(plane_key: str, root: Path = SCHEMA_DIR) -> set[str]:
    """The names of the tables a plane's migrations create, fast: function bodies and comments
    are cut out with regular expressions rather than parsed (``tables`` parses with sqlparse,
    which takes a third of a second; the audit needs only the names)."""
    names = set()
    for path in sorted((root / plane_key).glob("*.sql")):
        code = _LINE_COMMENT.sub("", _DOLLAR_BODY.sub("", path.read_text()))
        names |= {m.group(1).strip('"').lower().rsplit(".", 1)[-1] for m in _TABLE_NAME.finditer(code)}
    return names


_CLASSIFIED_TABLE = re.compile(
    r"--\s*zeroui-class:\s*[a-z_]+/([a-z_]+)[^\n]*\n\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([\w.\"]+)", re.I)


def tables_of_class(plane_key: str, class_key: str, root: Path = SCHEMA_DIR) -> set[str]:
    """The names of a plane's tables of one data class, fast (as ``table_names``): the tables
    whose annotation, on the line above their CREATE TABLE, names that class."""
    return {m.group(2).strip('"').lower().rsplit(".", 1)[-1] for path in sorted((root / plane_key).glob("*.sql"))
            for m in _CLASSIFIED_TABLE.finditer(path.read_text()) if m.group(1) == class_key}


def classification_errors(root: Path = SCHEMA_DIR) -> list[str]:
    """Every way the schema files break the contract's storage rules, one line each."""
    errors = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        plane = contract.PLANES_BY_KEY.get(folder.name)
        where = f"sql/schemas/{folder.name}"
        if plane is None:
            errors.append(f"{where}: not a plane; schema folders are {', '.join(contract.PLANES_BY_KEY)}")
            continue
        allowed = ", ".join(f"{plane.key}/{c.key}" for c in plane.data_classes)
        for t in tables(plane.key, root):
            at = f"sql/schemas/{t.path}: table {t.name}"
            if t.class_key is None:
                errors.append(
                    f"{at} is not classified: STOP and classify its plane before creating tables; add "
                    f"'-- zeroui-class: <plane>/<class>: <what it holds>' above CREATE TABLE ({allowed})"
                )
                continue
            owner = contract.DATA_CLASS_PLANE.get(t.class_key)
            if t.plane_key != plane.key:
                errors.append(f"{at} is classified for plane {t.plane_key!r} but lives in {where}; "
                              "move the table to its plane's folder")
            elif owner is None:
                errors.append(f"{at}: unknown data class {t.class_key!r}; use one of {allowed}")
            elif owner is not plane:
                errors.append(
                    f"{at}: {t.class_key} belongs to the {owner.key} plane, not {plane.key} (contract: a module "
                    f"stores its data only in the plane DB that matches its responsibility); use one of {allowed}"
                )
            if plane in contract.PAYLOAD_FREE_PLANES:
                for column in t.columns:
                    if contract.PAYLOAD_BODY_COLUMN.search(column):
                        errors.append(
                            f"{at}: column {column} holds payload bodies, which the {plane.key} plane must not "
                            "store (hard rule 3); keep metadata such as a digest or size instead"
                        )
    return errors
