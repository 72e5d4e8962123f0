"""What a failed message of a file means: the error the user reads, with its next step.

A message fails for one of four reasons, told apart in this order: the
connection is gone (then the ledger, read on a new connection, says whether the
file's COMMIT went through); the runner lock explains it (lost, or another
runner recorded the file first); a lock timeout the retry loop takes another
attempt at; a SQL error in the file, located at its statement, at its COMMIT, or
in the runner's own SQL.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, NoReturn

import psycopg

from . import ledger
from .errors import ConnectionFailed, ConnectionLost, MigrationFailed
from .files import Migration
from .ledger import LedgerTables
from .locking import RETRYABLE, Retryable, RunnerLock
from .messages import Owner
from .session import PartFailed, SessionState, connect, connection_gone, send
from .sqltext import Script, Statement, sql_error

# What to do after a failed file, per command.
NEXT_STEP = {
    "apply": "the file was rolled back; fix it and run apply again",
    "seed": "the seed file was rolled back; fix it and run apply (or seed) again",
    "rollback": "the rollback file was rolled back, so the migration is still applied; "
    "fix the rollback file and run rollback again",
}


@dataclass(frozen=True)
class Failures:
    """Turns a failure on the run's connection into the error with its next step.

    ``conninfo`` reconnects to read the ledger after the run's connection was lost;
    ``state`` is the session the run found (its advisory locks decide what a rolled
    back file must release).
    """

    conn: psycopg.Connection[tuple[Any, ...]]
    lock: RunnerLock
    tables: LedgerTables
    conninfo: str
    state: SessionState

    def explain(
        self,
        failed: PartFailed,
        script: Script,
        owner: Owner,
        action: str,
        *,
        retry: bool = False,
        resumable: Statement | None = None,
        running: Statement | None = None,
    ) -> Exception:
        """What a failed message means, in order: the connection is gone; the runner lock
        explains it; a lock timeout to retry (``retry``); a SQL error in the file.

        ``resumable`` is the no-transaction statement that failed (its implicit
        transaction is over); otherwise the file's transaction is rolled back here.
        ``running`` is the file's statement whose message failed (a retry names it).
        """
        m = script.migration
        if connection_gone(self.conn, failed.error):
            at = owner if isinstance(owner, Statement) else resumable
            return self.connection_lost(m, at, failed.error, action)
        if resumable is None:
            self.rollback_quietly()
        where = f"{m.shown_path}:{resumable.line}" if resumable is not None else m.shown_path
        lock_failure = self.lock.commit_failure(failed.error, self.tables, where)
        if lock_failure is not None:
            return lock_failure
        if retry and isinstance(failed.error, RETRYABLE):
            waited = running or resumable
            where = f"{m.display_path}:{waited.line}" if waited else m.display_path
            return Retryable(failed.error, where)
        return self.in_file(m, script, owner, failed, action, resumable=resumable)

    def rollback_quietly(self) -> None:
        """ROLLBACK undoes the file's settings, not the session advisory locks it took."""
        with contextlib.suppress(psycopg.Error):
            send(self.conn, ["ROLLBACK", *self.state.release_locks()])

    def in_file(
        self,
        m: Migration,
        script: Script,
        owner: Owner,
        failed: PartFailed,
        action: str,
        resumable: Statement | None = None,
    ) -> MigrationFailed:
        """The error located in the file: the statement that failed (PostgreSQL's position,
        or its PL/pgSQL line), the file's COMMIT, or the runner's own SQL."""
        if resumable is not None:
            next_step = (
                f"statements before line {resumable.line} are done and recorded; fix the file "
                f"if needed and run {action} again: it resumes safely"
            )
        else:
            next_step = NEXT_STEP.get(action, NEXT_STEP["apply"])
        if isinstance(owner, Statement):
            detail = sql_error(
                m, owner, failed.error, position=failed.position, statements=script.statements
            )
        elif owner == "COMMIT" and script.commit is not None:
            detail = sql_error(m, script.commit, failed.error, first="COMMIT")
            next_step = (
                "at COMMIT (deferred constraints and constraint triggers are checked there): "
                + next_step
            )
        else:
            detail = sql_error(m, None, failed.error, first="(sqlrunner ledger write)")
        return MigrationFailed(detail, next_step)

    def raise_lost(
        self,
        exc: psycopg.OperationalError,
        m: Migration,
        statement: Statement | None,
        action: str,
        committing: bool = False,
    ) -> NoReturn:
        """ConnectionLost when the connection is gone; else ``exc`` itself, as it came."""
        if not connection_gone(self.conn, exc):
            raise exc
        raise self.connection_lost(m, statement, exc, action, committing) from exc

    def connection_lost(
        self,
        m: Migration,
        statement: Statement | None,
        exc: psycopg.Error,
        action: str,
        committing: bool = False,
    ) -> ConnectionLost:
        """Not a SQL error in the file: say so, and what the ledger shows on reconnecting."""
        reason = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())[:300]
        if statement is None:
            where = "while committing the file"
        elif committing:
            where = (
                f"while running line {statement.line} and committing the file "
                "(the COMMIT may have gone through)"
            )
        else:
            where = f"while running line {statement.line}"
        done, why = self.ledger_shows(m)
        if done is None:
            verdict = (
                f"could not reconnect to read the ledger ({why}): run 'sqlrunner status' to see "
                "whether the file was recorded before running anything again"
            )
        elif m.kind == "rollback":
            verdict = (
                "the ledger shows it rolled back: its COMMIT went through"
                if done
                else "the ledger still shows the migration applied: the rollback did not "
                "commit; run rollback again"
            )
        elif done:
            verdict = "the ledger shows the file applied: its COMMIT went through; nothing to redo"
        elif m.no_transaction:
            verdict = (
                "the ledger does not show the file applied; statements recorded done are "
                f"skipped: run {action} again, it resumes safely"
            )
        else:
            verdict = (
                f"the ledger does not show the file applied: it was rolled back; run {action} again"
            )
        return ConnectionLost(
            f"{m.shown_path}: lost the connection to the database {where} ({reason}); {verdict}",
            m.shown_path,
            done if m.kind != "rollback" else (None if done is None else not done),
        )

    def ledger_shows(self, m: Migration) -> tuple[bool | None, str]:
        """(whether the file's effect is recorded, why not known) read on a new connection."""
        if not self.conninfo:
            return None, "no connection string"
        try:
            with connect(self.conninfo, timeout=5) as conn:
                checksum = ledger.recorded_checksum(conn, self.tables, m)
        except (psycopg.Error, ConnectionFailed) as exc:
            return None, (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if m.kind == "rollback":
            return checksum is None, ""
        return checksum == m.checksum, ""
