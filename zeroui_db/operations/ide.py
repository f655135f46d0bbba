"""The IDE plane on a developer laptop: its SQLite database and its env file.

The database work runs on the laptop with its own ``python3``: this bundle's
``zeroui_db/sqlite_ledger.py`` travels on stdin with the request, so nothing is
installed there and the same path serves ``@local`` and SSH.
"""

from __future__ import annotations

import json
from pathlib import Path

from pyinfra import host
from pyinfra.api import FactBase, StringCommand, operation
from pyinfra.api.exceptions import OperationError
from pyinfra.api.state import StateStage

from .. import contract, ledger, schemas, sqlite_ledger
from .report import refusal

_SOURCE = Path(sqlite_ledger.__file__).read_bytes()
# Reads exactly the runner's source from stdin and runs it; the rest of stdin is the request.
_BOOTSTRAP = f"import sys; exec(compile(sys.stdin.buffer.read({len(_SOURCE)}), 'sqlite_ledger', 'exec'))"


def runner(request: dict) -> tuple[StringCommand, str]:
    """The command and stdin that run ``sqlite_ledger`` with ``request`` on the host."""
    return StringCommand("python3", "-c", f'"{_BOOTSTRAP}"'), _SOURCE.decode() + json.dumps(request)


class IdeDatabase(FactBase):
    """
    The IDE database at ``path``: its ledger, settings, journal mode and file mode.

    .. code:: python

        {"exists": True, "ledger": {"0001_receipt_cache.sql": "9f…"}, "settings": {...},
         "journal_mode": "wal", "mode": "0o600"}
    """

    default = lambda self: {"exists": False}  # noqa: E731

    def requires_command(self, path: str) -> str:
        return "python3"

    def command(self, path: str) -> StringCommand:
        return runner({"action": "state", "path": path})[0]

    def process(self, output):
        return json.loads("".join(output))


@operation()
def database(path: str, receipt_cache_limit: int):
    """
    Create the IDE database if absent and apply pending ``sql/schemas/ide`` migrations,
    in WAL mode, file mode 0600, with the receipt cache bounded to ``receipt_cache_limit``.

    **Example:**

    .. code:: python

        ide.database(name="IDE database", path="/home/dev/.local/share/zeroui/zeroui_local.db",
                     receipt_cache_limit=500)
    """
    have = host.get_fact(IdeDatabase, path=path, _stdin=runner({"action": "state", "path": path})[1])
    files = schemas.migrations(contract.IDE)
    try:
        todo = ledger.pending(contract.IDE, files, have.get("ledger", {}))
    except ledger.MigrationError as e:
        if host.state.current_stage != StateStage.Execute:
            raise OperationError(str(e)) from None  # change detection or --dry: one line, nothing ran
        # With -y the operation is generated while executing, where a raised error escapes as a
        # greenlet traceback: fail the operation instead, with the same one-line message.
        yield refusal(str(e))
        return
    settings = {"receipt_cache_limit": str(receipt_cache_limit)}
    current = {k: str(v) for k, v in have.get("settings", {}).items()}
    in_line = (
        have.get("exists") and not todo and have.get("journal_mode") == "wal" and have.get("mode") == "0o600"
        and all(current.get(k, v) == v for k, v in settings.items())  # only settings the schema has
    )
    if in_line:
        return
    request = {
        "action": "apply", "path": path, "settings": settings,
        "migrations": [{"name": m.name, "sql": m.sql, "checksum": m.checksum} for m in files],
    }
    command, stdin = runner(request)
    yield StringCommand(command, _stdin=stdin)
