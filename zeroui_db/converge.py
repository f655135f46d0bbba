"""Running planned steps: role steps as one psql script for the local superuser, database
steps over the admin connection, each statement on its own (CREATE DATABASE cannot run in a
transaction, and a re-run converges after a failure)."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from psycopg import sql

from .catalog import Connect
from .grants import KEEPER, Step


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
            if step.scope == KEEPER:
                _as_keeper(conn, step)
            elif step.as_role:
                with conn.transaction():
                    conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(step.as_role)))
                    conn.execute(step.statement)
            else:
                conn.execute(step.statement)
        except psycopg.Error as e:
            raise StepFailed(f"could not {step.summary}: {e.diag.message_primary or e}") from None
        if step.after:
            step.after()


def _as_keeper(conn: psycopg.Connection, step: Step) -> None:
    """A keeper step as an admin that administers the keeper (a managed service's): it grants
    itself the keeper, acts as it and revokes it, all in one transaction, so that no other
    session ever sees the membership."""
    keeper = sql.Identifier(step.as_role)
    grant = sql.SQL("GRANT {} TO CURRENT_USER").format(keeper)
    if conn.info.server_version >= 160000:
        grant += sql.SQL(" WITH INHERIT FALSE, SET TRUE")
    with conn.transaction():
        conn.execute(grant)
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(keeper))
        conn.execute(step.statement)
        conn.execute("RESET ROLE")
        conn.execute(sql.SQL("REVOKE {} FROM CURRENT_USER").format(keeper))


def keeper_script(steps: list[Step]) -> str:
    """Keeper steps of one database as a psql script for the local superuser (the pilot)."""
    return "".join(sql.SQL("SET ROLE {};\n").format(sql.Identifier(step.as_role)).as_string()
                   + step.statement.as_string() + ";\n" for step in steps)
