"""The IDE plane's SQLite database and its migration ledger, on the laptop itself.

Standard library only: the deploy sends this file's source to ``python3 -`` on the
laptop (over SSH or locally) together with a JSON request, so a laptop needs nothing but
Python 3. Each migration runs in one ``BEGIN EXCLUSIVE`` transaction, which also makes
two deploys at once apply each file exactly once. The database is kept in WAL mode,
mode 0600, with foreign keys enforced on every connection the runner opens.

Request (JSON on stdin after this source): ``{"action": "state" | "apply", "path": …,
"migrations": [{"name", "sql", "checksum"}], "settings": {key: value}}``.
"""

import json
import os
import sqlite3
import sys

TABLE = "zeroui_schema_migrations"
SETTINGS = "ide_settings"
CREATE_LEDGER = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    filename   TEXT PRIMARY KEY,
    checksum   TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    applied_by TEXT NOT NULL
) STRICT"""


def connect(path):
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)  # we issue BEGIN ourselves
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def state(path):
    """What the deploy compares against: ledger, settings, journal mode and file mode."""
    if not os.path.exists(path):
        return {"exists": False}
    conn = connect(path)
    try:
        has = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        ledger = dict(conn.execute(f"SELECT filename, checksum FROM {TABLE}")) if TABLE in has else {}
        settings = dict(conn.execute(f"SELECT key, value FROM {SETTINGS}")) if SETTINGS in has else {}
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()
    return {"exists": True, "ledger": ledger, "settings": settings, "journal_mode": journal,
            "mode": oct(os.stat(path).st_mode & 0o777)}


def statements(text):
    """Split a script into statements the way sqlite3 itself sees them end."""
    out, current = [], ""
    for line in text.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                out.append(current.strip())
            current = ""
    # What is left after the last statement counts only if it is more than comments.
    if any(line.strip() and not line.strip().startswith("--") for line in current.splitlines()):
        out.append(current.strip())
    return out


def apply(path, migrations, settings):
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    old_umask = os.umask(0o077)  # the file (and its -wal/-shm) is created 0600
    try:
        conn = connect(path)
    finally:
        os.umask(old_umask)
    applied = []
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        for m in migrations:
            conn.execute("BEGIN EXCLUSIVE")
            try:
                conn.execute(CREATE_LEDGER)
                row = conn.execute(f"SELECT checksum FROM {TABLE} WHERE filename = ?", (m["name"],)).fetchone()
                if row is not None:
                    if row[0] != m["checksum"]:
                        raise RuntimeError(f"ide/{m['name']} changed after it was applied: applied checksum "
                                           f"{row[0]}, file checksum {m['checksum']}")
                    conn.execute("ROLLBACK")
                    continue
                for number, statement in enumerate(statements(m["sql"]), 1):
                    try:
                        conn.execute(statement)
                    except sqlite3.Error as e:
                        first = " ".join(statement.split())[:160]
                        raise RuntimeError(f"ide/{m['name']}: statement {number} failed ({e}): {first}; rolled back, "
                                           "the ledger is unchanged and later migrations did not run") from None
                conn.execute(f"INSERT INTO {TABLE} (filename, checksum, applied_by) VALUES (?, ?, ?)",
                             (m["name"], m["checksum"], _whoami()))
                conn.execute("COMMIT")
                applied.append(m["name"])
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (SETTINGS,)).fetchone():
            for key, value in settings.items():
                conn.execute(f"UPDATE {SETTINGS} SET value = ? WHERE key = ? AND value IS NOT ?", (value, key, value))
    finally:
        conn.close()
    os.chmod(path, 0o600)
    return {"applied": applied}


def _whoami():
    try:
        import getpass
        return getpass.getuser()
    except Exception:  # no passwd entry: still record something honest
        return str(os.getuid())


def main(request):
    if request["action"] == "state":
        return state(request["path"])
    return apply(request["path"], request["migrations"], request.get("settings", {}))


if __name__ == "__main__":
    try:
        print(json.dumps(main(json.loads(sys.stdin.read()))))
    except RuntimeError as e:
        print(str(e), file=sys.stderr)
        sys.exit(1)
