"""Running planned steps: role steps as one psql script for the local superuser, database
steps over the admin connection, each statement on its own (CREATE DATABASE cannot run in a
transaction, and a re-run converges after a failure)."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from psycopg import sql

from .catalog import Connect
from .grants import Step


class StepFailed(Exception):
    """A step the server refused, or drift the deploy may not repair; one line."""


def blocked(steps: list[Step]) -> str | None:
    """The one-line reason a plan cannot be carried out, if it holds blocked drift."""
    found = [f"{s.summary} ({s.blocked})" for s in steps if s.blocked]
    return f"cannot {'; '.join(found)}" if found else None


def superuser_script(steps: list[Step]) -> str:
    """Role steps as a psql script (sent on stdin: it holds verifiers)."""
    return "".join(step.statement.as_string() + ";\n" for step in steps)


def run(connect: Connect, steps: list[Step], log: Callable[[str], None] = lambda _: None) -> None:
    for step in steps:
        log(step.summary)
        conn = connect(step.database)
        try:
            if step.as_role:
                with conn.transaction():
                    conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(step.as_role)))
                    conn.execute(step.statement)
            else:
                conn.execute(step.statement)
        except psycopg.Error as e:
            raise StepFailed(f"could not {step.summary}: {e.diag.message_primary or e}") from None
        if step.after:
            step.after()
