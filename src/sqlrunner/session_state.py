"""The session state a run starts with, and the SQL that puts it back.

psql runs each file in a fresh session; the runner runs a whole set on one
connection. So whatever a file leaves in the session (``SET search_path``,
``SET ROLE``, ``SET SESSION AUTHORIZATION``, ``set_config(..., false)``,
``DISCARD ALL``, a session advisory lock) is undone before the next file,
before the ledger write, and before a caller's connection is handed back.

``RESET ALL`` returns every setting to its value at connection time (the
startup packet, ``ALTER ROLE/DATABASE ... SET``, postgresql.conf); what the
session itself had ``SET`` before the run (``source = 'session'`` in
pg_settings) is captured once and re-applied. Role and session authorization
are not touched by ``RESET ALL`` and are restored explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

CAPTURE_QUERY = """
SELECT current_user::text, session_user::text,
       ARRAY(SELECT name FROM pg_catalog.pg_settings
             WHERE source = 'session' AND name NOT LIKE 'transaction\\_%' ORDER BY name),
       ARRAY(SELECT setting FROM pg_catalog.pg_settings
             WHERE source = 'session' AND name NOT LIKE 'transaction\\_%' ORDER BY name),
       (SELECT count(*) FROM pg_catalog.pg_locks
        WHERE pid = pg_backend_pid() AND locktype = 'advisory')
"""


def _ident(name: str) -> str:
    return sql.Identifier(name).as_string()


def _literal(value: str) -> str:
    return sql.Literal(value).as_string()


@dataclass(frozen=True, slots=True)
class SessionState:
    """Who the session was and what it had SET when the run started."""

    current_user: str
    session_user: str
    settings: tuple[tuple[str, str], ...] = ()
    advisory_locks: int = 0

    @classmethod
    def capture(cls, conn: psycopg.Connection[Any]) -> SessionState:
        """One query, only when something will run (a no-op apply never pays for it)."""
        row = conn.execute(CAPTURE_QUERY).fetchone()
        assert row is not None
        current, session, names, values, locks = row
        return cls(str(current), str(session), tuple(zip(names, values, strict=True)), int(locks))

    def as_runner(self, local: bool) -> list[str]:
        """Become the role the runner connected as (``local``: for this transaction only)."""
        scope = "LOCAL " if local else ""
        role = "NONE" if self.current_user == self.session_user else _ident(self.current_user)
        return [
            f"SET {scope}SESSION AUTHORIZATION {_ident(self.session_user)}",
            f"SET {scope}ROLE {role}",
        ]

    def restore(self) -> list[str]:
        """Statements (one each) that return the session to this state.

        Inside a transaction they take effect for what follows in it (the
        ledger write) and persist when it commits; a rollback undoes them
        along with whatever the file did.
        """
        statements = ["RESET ALL", *self.as_runner(local=False)[:1]]
        if self.settings:
            calls = ", ".join(
                f"pg_catalog.set_config({_literal(name)}, {_literal(value)}, false)"
                for name, value in self.settings
            )
            statements.append(f"SELECT {calls}")
        statements.append(self.as_runner(local=False)[1])
        statements.extend(self.release_locks())
        return statements

    def release_locks(self) -> list[str]:
        """A file's (or verify check's) session advisory locks die with psql's session; here
        they are released, unless the caller held some of its own (then they are left)."""
        return [] if self.advisory_locks else ["SELECT pg_catalog.pg_advisory_unlock_all()"]
