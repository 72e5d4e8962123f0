"""Do: execute files on the run's connection, each all-or-nothing with its ledger row.

Every statement is sent on its own (as psql does), so a failure is pinned to
its statement, its line and its column. Transactional files run inside one
``BEGIN … COMMIT`` whose last round trip also writes the ledger and history
rows. Each commits with ``synchronous_commit = off``; the run's final history
row commits with it on, and since WAL is flushed in order that one fsync makes
every earlier migration durable before the run reports success.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from . import ledger
from .errors import LockTimeout, MigrationFailed, SqlErrorDetail, UsageError
from .events import Event, Listener
from .files import Migration
from .ledger import LedgerTables, RunContext
from .locking import RETRYABLE_SQLSTATES, RetryPolicy, RunnerLock
from .report import FileResult, elapsed_ms
from .sqltext import Script, Statement, concurrent_index, line_and_column, runs_without_lock_timeout

# A killed runner's backend notices the closed socket within this interval and
# rolls back, releasing its table locks, instead of finishing a long statement
# first (PostgreSQL 14+; the default, 0, never checks while a query runs).
CLIENT_CHECK = "1s"

Finish = Callable[[str], Sequence[str]]

# Any INVALID index in the database at all? Almost never: a cold backend answers this
# in well under a millisecond, the query below takes several.
ANY_INVALID_INDEX_QUERY = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index WHERE NOT indisvalid)"

# INVALID indexes among those a no-transaction file builds concurrently, with their
# schema and whether some session is building one right now: one query per file.
INVALID_INDEXES_QUERY = """
SELECT c.relname,
       n.nspname,
       EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid)
FROM unnest(%s::text[], %s::text[]) AS wanted(index_name, table_name)
JOIN pg_class c
  ON c.relname = wanted.index_name
 AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = to_regclass(wanted.table_name))
JOIN pg_index i ON i.indexrelid = c.oid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid
"""


def shown_path(migration: Migration) -> str:
    """The file's path as the user typed it: relative to the working directory when inside it."""
    relative = os.path.relpath(migration.path)
    return migration.display_path if relative.startswith("..") else relative


@dataclass
class Executor:
    """Runs scripts on ``conn`` while ``lock`` is held; knows nothing about plans."""

    conn: psycopg.Connection[tuple[Any, ...]]
    lock: RunnerLock
    tables: LedgerTables
    policy: RetryPolicy
    ctx: RunContext
    emit: Listener
    seen_blockers: dict[int, list[str]] = field(default_factory=dict)
    # the session's lock_timeout while a no-transaction file runs; None = not ours
    _lock_timeout_now: str | None = field(default=None, init=False)

    def forward(self, script: Script) -> FileResult:
        m = script.migration

        def finish(duration_ms: str) -> list[str]:
            return [
                ledger.record_applied(
                    self.tables, "forward", m.version, m.name, m.checksum, duration_ms, self.ctx
                ),
                ledger.clear_progress(self.tables, m.version),
                self._history("apply", m, "ok", duration_ms),
            ]

        return self._run(script, finish, "applied", "apply")

    def seed(self, script: Script) -> FileResult:
        m = script.migration

        def finish(duration_ms: str) -> list[str]:
            return [
                ledger.record_applied(
                    self.tables, "seed", m.version, m.name, m.checksum, duration_ms, self.ctx
                ),
                self._history("seed", m, "ok", duration_ms),
            ]

        return self._run(script, finish, "seeded", "seed")

    def rollback(self, script: Script, forget_seeds: bool) -> FileResult:
        """Undo one file; ``forget_seeds`` on the run's first step, so that a rollback that
        fails part-way has still made the next apply re-run the seeds of what it dropped."""
        m = script.migration

        def finish(duration_ms: str) -> list[str]:
            steps = [
                ledger.record_removed(self.tables, "forward", m.version),
                ledger.clear_progress(self.tables, m.version),
                self._history("rollback", m, "ok", duration_ms),
            ]
            return [*steps, ledger.forget_seeds(self.tables)] if forget_seeds else steps

        return self._run(script, finish, "rolled back", "rollback")

    def finish_run(self, action: str, outcome: str, duration_ms: int, detail: str | None) -> None:
        """The run's summary row, committed synchronously: the one fsync of the run."""
        self.conn.execute(
            ledger.record_history(
                self.tables,
                self.ctx,
                action,
                outcome,
                kind="run",
                duration_ms=str(duration_ms),
                detail=detail,
            )
        )

    def _history(
        self, action: str, m: Migration, outcome: str, duration_ms: str, detail: str | None = None
    ) -> str:
        return ledger.record_history(
            self.tables,
            self.ctx,
            action,
            outcome,
            kind=m.kind,
            version=m.version,
            name=m.name,
            checksum=m.checksum,
            duration_ms=duration_ms,
            detail=detail,
        )

    def _run(self, script: Script, finish: Finish, done: str, action: str) -> FileResult:
        m = script.migration
        self.emit(Event("file_started", f"{action} {m.display_path}", migration=m))
        started = time.monotonic()
        try:
            if m.no_transaction:
                attempts = self._autocommit(script, finish, started)
            else:
                attempts = self._transaction(script, finish, started)
        except MigrationFailed as failure:
            self._record_failure(action, m, started, str(failure))
            raise
        except LockTimeout as failure:
            self._record_failure(action, m, started, str(failure))
            raise
        result = FileResult(
            m.kind,
            m.version,
            m.name,
            done,
            elapsed_ms(started),
            attempts,
            len(script.statements),
            m.no_transaction,
        )
        self.emit(
            Event(
                "file_finished",
                f"{done} {m.display_path} ({result.duration_ms} ms)",
                migration=m,
                result=result,
            )
        )
        return result

    def _record_failure(self, action: str, m: Migration, started: float, detail: str) -> None:
        with contextlib.suppress(psycopg.Error):  # the failure itself is what the user must see
            self.conn.execute(self._history(action, m, "failed", str(elapsed_ms(started)), detail))

    def _transaction(self, script: Script, finish: Finish, started: float) -> int:
        """Run the file's body in one transaction with its ledger rows; retry on lock timeouts.

        Round trips: one per statement. BEGIN and the SET LOCALs travel with the
        first statement, the ledger rows and COMMIT with the last, and each
        message still holds one statement of the file, so a failure is pinned to
        it (positions are shifted back by the prefix's length).
        """
        m = script.migration
        begin = (
            f"BEGIN; SET LOCAL lock_timeout = {ledger.literal(self.policy.lock_timeout_setting)}; "
            "SET LOCAL synchronous_commit = off; "
            f"SET LOCAL client_connection_check_interval = {ledger.literal(CLIENT_CHECK)};\n"
        )
        commit = ";\n" + ";\n".join([*finish(ledger.TRANSACTION_DURATION_MS), "COMMIT"])
        statements = script.statements or (None,)
        delays = self.policy.delays()
        attempt = 0
        while True:
            attempt += 1
            statement: Statement | None = None
            try:
                for index, statement in enumerate(statements):
                    head = begin if index == 0 else ""
                    tail = commit if index == len(statements) - 1 else ""
                    self._execute(m, statement, head, tail, watch=attempt > 1)
                return attempt
            except psycopg.Error as exc:
                self._rollback_quietly()
                if exc.sqlstate in RETRYABLE_SQLSTATES:
                    self._wait_before_retry(m, statement, exc, attempt, delays)
                    continue
                raise self._failed(
                    m,
                    statement,
                    exc,
                    "the file was rolled back; fix it and run apply again",
                    shift=len(head) if statement is not None else 0,
                ) from None

    def _autocommit(self, script: Script, finish: Finish, started: float) -> int:
        """Statement by statement in autocommit, each recorded once it succeeded.

        Round trips per statement: the statement, then its progress row; a
        ``SET lock_timeout`` only when the value changes. Commits here are
        asynchronous like the transactional files' (the run's last history row
        flushes them); a progress row lost to a crash only makes the next run
        repeat an idempotent statement, as a crash between a statement and its
        row always could.
        """
        m = script.migration
        done = ledger.done_statements(self.conn, self.tables, m.version, m.checksum)

        def done_before(statement: Statement) -> bool:
            # A SET is session state, not progress: a resumed run needs it again.
            return statement.index in done and statement.kind != "VariableSetStmt"

        leftovers = self._invalid_leftovers([s for s in script.statements if not done_before(s)])
        self.conn.execute(
            "SET synchronous_commit = off; "
            f"SET client_connection_check_interval = {ledger.literal(CLIENT_CHECK)}"
        )
        self._lock_timeout_now = None
        attempts = 1
        for statement in script.statements:
            if done_before(statement):
                self.emit(
                    Event(
                        "statement_skipped",
                        f"{m.display_path}:{statement.line}: done in an earlier run, skipped",
                        migration=m,
                        statement=statement,
                    )
                )
                continue
            target = concurrent_index(statement)
            if target is not None and target[2] in leftovers:
                self._drop_invalid_leftover(m, statement, target[2], *leftovers[target[2]])
            attempts = max(attempts, self._autocommit_statement(m, statement))
            if statement.kind == "VariableSetStmt":
                self._lock_timeout_now = None  # the file may have set it: ours goes again
                continue
            self.conn.execute(
                ledger.record_statement_done(self.tables, m.version, m.checksum, statement.index)
            )
        # The file's own SETs (and ours) must not leak into the files that follow.
        self.conn.execute("RESET ALL")
        self.conn.execute(
            "; ".join(
                [
                    "BEGIN",
                    "SET LOCAL synchronous_commit = off",
                    *finish(str(elapsed_ms(started))),
                    "COMMIT",
                ]
            )
        )
        return attempts

    def _autocommit_statement(self, m: Migration, statement: Statement) -> int:
        unbounded = runs_without_lock_timeout(statement)
        timeout = "0" if unbounded else self.policy.lock_timeout_setting
        delays = self.policy.delays()
        attempt = 0
        while True:
            attempt += 1
            try:
                if self._lock_timeout_now != timeout:
                    self.conn.execute(f"SET lock_timeout = {ledger.literal(timeout)}")
                    self._lock_timeout_now = timeout
                self._execute(m, statement, watch=attempt > 1 and not unbounded)
                return attempt
            except psycopg.Error as exc:
                if exc.sqlstate in RETRYABLE_SQLSTATES and not unbounded:
                    self._wait_before_retry(m, statement, exc, attempt, delays)
                    continue
                raise self._failed(
                    m,
                    statement,
                    exc,
                    f"statements before line {statement.line} are done and recorded; fix the "
                    "file if needed and run apply again: it resumes safely",
                ) from None

    def _execute(
        self,
        m: Migration,
        statement: Statement | None,
        head: str = "",
        tail: str = "",
        watch: bool = False,
    ) -> None:
        """Send one statement (with ``head``/``tail`` of runner SQL around it); on retries,
        note who blocks it while it waits."""
        if statement is not None:
            self.emit(
                Event(
                    "statement_started",
                    f"{m.display_path}:{statement.line}: {statement.first_line}",
                    migration=m,
                    statement=statement,
                    backend_pid=self.conn.info.backend_pid,
                )
            )
        query = head + (statement.text if statement is not None else "") + tail
        if not watch:
            self.conn.execute(query)
            return
        pid = self.conn.info.backend_pid
        timer = threading.Timer(
            self.policy.lock_timeout_ms / 2000,
            lambda: self.seen_blockers.update({m.version: self.lock.blockers_of(pid)}),
        )
        timer.start()
        try:
            self.conn.execute(query)
        finally:
            timer.cancel()
            timer.join()

    def _wait_before_retry(
        self,
        m: Migration,
        statement: Statement | None,
        exc: psycopg.Error,
        attempt: int,
        delays: Any,
    ) -> None:
        where = f"{m.display_path}:{statement.line}" if statement else m.display_path
        blockers = self.seen_blockers.get(m.version, [])
        blocked_by = f"; blocked by {' / '.join(blockers)}" if blockers else ""
        delay = next(delays, None)
        if delay is None:
            raise LockTimeout(
                f"{where}: gave up after {attempt} attempts ({exc.diag.message_primary}, "
                f"lock_timeout {self.policy.lock_timeout_setting})"
                f"{blocked_by or '; the blocker is gone'}"
                " | nothing was changed by this file; end or wait out the blocker, then run apply "
                "again (or raise --lock-retries)",
                blockers,
            ) from None
        self.emit(
            Event(
                "retry",
                f"{where}: {exc.diag.message_primary} (attempt {attempt}); "
                f"retrying in {delay:.1f}s{blocked_by}",
                migration=m,
            )
        )
        time.sleep(delay)

    def _invalid_leftovers(self, statements: Sequence[Statement]) -> dict[str, tuple[str, bool]]:
        """Index name -> (schema, being built now) for each INVALID index the file would build."""
        targets = [t for t in map(concurrent_index, statements) if t is not None]
        if not targets:
            return {}
        row = self.conn.execute(ANY_INVALID_INDEX_QUERY).fetchone()
        if row is None or not row[0]:
            return {}
        tables = [
            ".".join(sql.Identifier(p).as_string(self.conn) for p in (schema, table) if p)
            for schema, table, _ in targets
        ]
        rows = self.conn.execute(
            INVALID_INDEXES_QUERY, ([index for _, _, index in targets], tables)
        ).fetchall()
        return {str(name): (str(schema), bool(building)) for name, schema, building in rows}

    def _drop_invalid_leftover(
        self, m: Migration, statement: Statement, index: str, schema: str, building: bool
    ) -> None:
        """An INVALID index left by a failed concurrent build would satisfy IF NOT EXISTS."""
        if building:
            raise UsageError(
                f"{shown_path(m)}:{statement.line}: index {index} is being built by another "
                "session right now (see pg_stat_progress_create_index); wait for it, then re-run"
            )
        self.emit(
            Event(
                "note",
                f"{m.display_path}:{statement.line}: dropping INVALID index "
                f"{schema}.{index} left by a failed concurrent build",
                migration=m,
            )
        )
        self.conn.execute("SET lock_timeout = 0")
        self._lock_timeout_now = "0"
        self.conn.execute(
            sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(schema, index))
        )

    def _rollback_quietly(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.conn.execute("ROLLBACK")

    def _failed(
        self,
        m: Migration,
        statement: Statement | None,
        exc: psycopg.Error,
        next_step: str,
        shift: int = 0,
    ) -> MigrationFailed:
        """Locate the error in the file: PostgreSQL's position when it gives one (minus the
        runner SQL sent before the statement), else the statement's first line."""
        diag = exc.diag
        position = int(diag.statement_position or 0) - shift
        if statement is None or position > len(statement.text):  # the ledger write failed
            line, column, first = 1, 1, "(sqlrunner ledger write)"
        else:
            offset = statement.offset + max(0, position - 1)
            line, column = line_and_column(m.text, offset)
            first = statement.first_line
        detail = SqlErrorDetail(
            path=shown_path(m),
            line=line,
            column=column,
            sqlstate=diag.sqlstate or "?????",
            message=diag.message_primary or str(exc).strip(),
            detail=diag.message_detail,
            hint=diag.message_hint,
            statement=first,
        )
        return MigrationFailed(detail, next_step)
