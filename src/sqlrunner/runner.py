"""Do: execute files on the run's connection, each all-or-nothing with its ledger row.

Every statement of a file is sent on its own message (as psql does), so a
failure is pinned to its statement, its line and its column; the runner's own
SQL travels in the same messages (see messages.py). Transactional files run
inside one ``BEGIN … COMMIT`` whose last message also restores the session
(session_state.py), writes the ledger and history rows as the role the runner
connected with, and commits. Each commits with ``synchronous_commit = off``;
the run's final history row commits with it on, and since WAL is flushed in
order that one fsync makes every earlier migration durable before the run
reports success.

Nothing the runner sets outlives its transaction: every setting of ours is
``SET LOCAL``, also for no-transaction statements, which run in the implicit
transaction of a multi-statement message. Behind PgBouncer in transaction mode
no setting of ours reaches another client's server connection. The exception:
a statement PostgreSQL refuses in any transaction block (``VACUUM``, ``CALL`` of
a procedure that commits, ``CREATE INDEX CONCURRENTLY``...) is sent alone. The
concurrent index builds and drops take SHARE UPDATE EXCLUSIVE, which blocks no
writer, and run under the session's own settings; the others get a session
``SET lock_timeout`` right before and a reset right after, which a transaction
pooler may route to other server connections (documented in the README).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from . import ledger
from .backfill import Backfill
from .errors import ConnectionLost, LockTimeout, MigrationFailed, UsageError
from .events import Event, Listener
from .files import Migration
from .ledger import LedgerTables, RunContext
from .locate import shown_path, sql_error
from .locking import MIGRATION_LIMITS, RETRYABLE_SQLSTATES, RetryPolicy, RunnerLock
from .messages import PartFailed, send
from .position import Throttle
from .report import FileResult, elapsed_ms
from .session_state import SessionState
from .sqltext import Script, Statement, concurrent_index, runs_without_lock_timeout

__all__ = ["CLIENT_CHECK", "Executor", "runs_alone", "shown_path"]

# A killed runner's backend notices the closed socket within this interval and
# rolls back, releasing its table locks, instead of finishing a long statement
# first (PostgreSQL 14+; the default, 0, never checks while a query runs).
CLIENT_CHECK = "1s"

Finish = Callable[[str], Sequence[str]]
# A message: (one statement of SQL, what it is). What it is: the file's statement,
# COMMIT for the file's COMMIT, or None for the runner's own SQL.
Part = tuple[str, "Statement | str | None"]

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

# Statements PostgreSQL refuses inside any transaction block, including the implicit
# one of a multi-statement message (PreventInTransactionBlock). Others it refuses
# are found at run time (SQLSTATE 25001 / 2D000) and sent alone then.
ALONE_KINDS = frozenset(
    {
        "CallStmt",  # a procedure may COMMIT
        "CreatedbStmt",
        "DropdbStmt",
        "AlterSystemStmt",
        "CreateTableSpaceStmt",
        "DropTableSpaceStmt",
        "CreateSubscriptionStmt",
        "AlterSubscriptionStmt",
        "DropSubscriptionStmt",
    }
)
# active_sql_transaction, invalid_transaction_termination
NOT_IN_A_BLOCK = frozenset({"25001", "2D000"})

# What to do after a failed file, per command.
NEXT_STEP = {
    "apply": "the file was rolled back; fix it and run apply again",
    "seed": "the seed file was rolled back; fix it and run apply (or seed) again",
    "rollback": "the rollback file was rolled back, so the migration is still applied; "
    "fix the rollback file and run rollback again",
}


def runs_alone(statement: Statement) -> bool:
    """True for statements that cannot share a message with any other statement."""
    fields = statement.fields
    if statement.kind in ALONE_KINDS:
        return True
    if statement.kind in ("IndexStmt", "DropStmt"):
        return bool(fields.get("concurrent"))
    if statement.kind == "ReindexStmt":
        return any(
            p.get("DefElem", {}).get("defname") == "concurrently" for p in fields.get("params", ())
        ) or fields.get("kind") in ("REINDEX_OBJECT_SYSTEM", "REINDEX_OBJECT_DATABASE")
    if statement.kind == "VacuumStmt":
        return bool(fields.get("is_vacuumcmd"))
    if statement.kind == "DiscardStmt":
        return fields.get("target") == "DISCARD_ALL"
    if statement.kind == "ClusterStmt":
        return not fields.get("relation")
    return False


def _literal(value: str) -> str:
    return sql.Literal(value).as_string()


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
    # the session as the run found it; captured before the first file
    state: SessionState | None = None
    # to reconnect and read the ledger after the run's connection was lost
    conninfo: str = ""
    # budget and between-batches callable for batched files (backfill.py)
    throttle: Throttle | None = None

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

    def session(self) -> SessionState:
        """The session state each file starts from (captured once, on first use)."""
        if self.state is None:
            self.state = SessionState.capture(self.conn)
        return self.state

    def _run(self, script: Script, finish: Finish, done: str, action: str) -> FileResult:
        m = script.migration
        self.session()
        self.emit(Event("file_started", f"{action} {m.display_path}", migration=m))
        started = time.monotonic()
        try:
            if script.batch is not None:
                attempts = Backfill(self, script, self.throttle).run(finish)
            elif m.no_transaction:
                attempts = self._autocommit(script, finish, started, action)
            else:
                attempts = self._transaction(script, finish, action)
        except (MigrationFailed, LockTimeout) as failure:
            self._record_failure(action, m, started, str(failure))
            raise
        except ConnectionLost:
            raise
        except BaseException:  # Ctrl-C, or a surprise: leave the session as the run found it
            self._settle()
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

    def _settle(self) -> None:
        """Best effort after an interruption: no open transaction, the session restored."""
        if self.conn.closed:
            return
        with contextlib.suppress(psycopg.Error):
            if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                self.conn.execute("ROLLBACK")
            send(self.conn, self.session().restore())

    def _locals(self, lock_timeout: str) -> list[Part]:
        """The runner's settings for one transaction (implicit or not): SET LOCAL only."""
        return [
            (f"SET LOCAL lock_timeout = {_literal(lock_timeout)}", None),
            ("SET LOCAL synchronous_commit = off", None),
            (f"SET LOCAL client_connection_check_interval = {_literal(CLIENT_CHECK)}", None),
        ]

    def _transaction(self, script: Script, finish: Finish, action: str) -> int:
        """Run the file's body in one transaction with its ledger rows; retry on lock timeouts.

        Round trips: one per statement. BEGIN, the SETs the file wrote before
        its BEGIN and the runner's SET LOCALs travel with the first statement;
        the runner's lock_timeout is set again after each statement (the file
        may have changed it); the session restore, the ledger rows and COMMIT
        travel with the last.
        """
        m = script.migration
        ours = self._locals(self.policy.lock_timeout_setting)
        held: Part = (self.lock.held_check(), None)
        limits: list[Part] = [(q, None) for q in MIGRATION_LIMITS]
        head: list[Part] = [
            ("BEGIN", None), *[(s.text, s) for s in script.preamble], *ours, *limits, held
        ]
        restore: list[Part] = [(q, None) for q in self.session().restore()]
        ledger_rows = [(q, None) for q in finish(ledger.TRANSACTION_DURATION_MS)]
        tail: list[Part] = [*restore, *ours, held, *ledger_rows, ("COMMIT", "COMMIT")]
        statements = script.statements or (None,)
        delays = self.policy.delays()
        attempt = 0
        while True:
            attempt += 1
            parts: list[Part] = []
            statement: Statement | None = None
            try:
                for index, statement in enumerate(statements):
                    last = index == len(statements) - 1
                    parts = [
                        *(head if index == 0 else ()),
                        *(((statement.text, statement),) if statement is not None else ()),
                        *(tail if last else ours[:1]),
                    ]
                    self._execute(m, statement, parts, watch=attempt > 1)
                return attempt
            except PartFailed as failed:
                if self._is_lost(failed.error):
                    owner = parts[failed.index][1]
                    at = owner if isinstance(owner, Statement) else None
                    raise self._connection_lost(m, at, failed.error, action) from None
                self._rollback_quietly()
                lock_failure = self.lock.commit_failure(failed.error, self.tables, shown_path(m))
                if lock_failure is not None:
                    raise lock_failure from None
                if failed.error.sqlstate in RETRYABLE_SQLSTATES:
                    self._wait_before_retry(m, statement, failed.error, attempt, delays)
                    continue
                raise self._failed(m, script, parts[failed.index][1], failed, action) from None
            except psycopg.OperationalError as exc:
                if self._is_lost(exc):
                    committing = bool(parts) and parts[-1][1] == "COMMIT"
                    raise self._connection_lost(m, statement, exc, action, committing) from None
                raise

    def _autocommit(self, script: Script, finish: Finish, started: float, action: str) -> int:
        """Statement by statement, each in its own (implicit) transaction with its progress row.

        Round trips per statement: one (the runner's SET LOCALs, the statement
        and its progress row share a message); a statement that must run alone
        sends its progress row after it. Commits here are asynchronous like the
        transactional files' (the run's last history row flushes them).
        """
        m = script.migration
        done = ledger.done_statements(self.conn, self.tables, m.version, m.checksum)

        def done_before(statement: Statement) -> bool:
            # A SET is session state, not progress: a resumed run needs it again.
            return statement.index in done and statement.kind != "VariableSetStmt"

        leftovers = self._invalid_leftovers([s for s in script.statements if not done_before(s)])
        attempts = 1
        try:
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
                if runs_alone(statement):  # otherwise the check travels with the statement
                    self.lock.ensure_held(
                        self.conn,
                        f"before {shown_path(m)}:{statement.line}; the statements before it "
                        "are done and recorded",
                    )
                target = concurrent_index(statement)
                if target is not None and target[2] in leftovers:
                    self._drop_invalid_leftover(m, statement, target[2], *leftovers[target[2]])
                attempts = max(attempts, self._autocommit_statement(script, statement, action))
            # The file's own SETs (and role) must not reach the ledger write or the next file.
            parts: list[Part] = [
                ("BEGIN", None),
                *[(q, None) for q in self.session().restore()],
                ("SET LOCAL synchronous_commit = off", None),
                (self.lock.held_check(), None),
                *[(q, None) for q in finish(str(elapsed_ms(started)))],
                ("COMMIT", None),
            ]
            try:
                send(self.conn, [q for q, _ in parts])
            except PartFailed as failed:
                if self._is_lost(failed.error):
                    raise self._connection_lost(m, None, failed.error, action) from None
                self._rollback_quietly()
                lock_failure = self.lock.commit_failure(failed.error, self.tables, shown_path(m))
                if lock_failure is not None:
                    raise lock_failure from None
                raise self._failed(m, script, None, failed, action) from None
            except psycopg.OperationalError as exc:
                raise self._connection_lost(m, None, exc, action) from None
        except (MigrationFailed, LockTimeout):
            self._settle()
            raise
        return attempts

    def _autocommit_statement(self, script: Script, statement: Statement, action: str) -> int:
        m = script.migration
        alone = runs_alone(statement)
        bounded = not runs_without_lock_timeout(statement)
        timeout = self.policy.lock_timeout_setting if bounded else "0"
        progress: list[Part] = []
        if statement.kind != "VariableSetStmt":
            row = ledger.record_statement_done(self.tables, m.version, m.checksum, statement.index)
            progress = [*[(q, None) for q in self.session().as_runner(local=True)], (row, None)]
        delays = self.policy.delays()
        attempt = 0
        while True:
            attempt += 1
            parts: list[Part] = [(statement.text, statement)]
            try:
                if alone:
                    self._alone(m, statement, bounded, watch=attempt > 1 and bounded)
                    parts = [("SET LOCAL synchronous_commit = off", None), *progress]
                    if progress:
                        send(self.conn, [q for q, _ in parts])
                else:
                    parts = [
                        *self._locals(timeout),
                        (self.lock.held_check(), None),
                        (statement.text, statement),
                        *progress,
                    ]
                    self._execute(m, statement, parts, watch=attempt > 1 and bounded)
                return attempt
            except PartFailed as failed:
                error, owner = failed.error, parts[failed.index][1]
                if self._is_lost(error):
                    raise self._connection_lost(m, statement, error, action) from None
                where = f"{shown_path(m)}:{statement.line}"
                lock_failure = self.lock.commit_failure(error, self.tables, where)
                if lock_failure is not None:
                    raise lock_failure from None
                if not alone and owner is statement and error.sqlstate in NOT_IN_A_BLOCK:
                    alone = True  # its implicit transaction rolled back: nothing happened
                    attempt -= 1
                    continue
                if error.sqlstate in RETRYABLE_SQLSTATES and bounded and owner is statement:
                    self._wait_before_retry(m, statement, error, attempt, delays)
                    continue
                raise self._failed(m, script, owner, failed, action, resumable=statement) from None
            except psycopg.OperationalError as exc:
                if self._is_lost(exc):
                    raise self._connection_lost(m, statement, exc, action) from None
                raise

    def _alone(self, m: Migration, statement: Statement, bounded: bool, watch: bool) -> None:
        """A statement that cannot run in a transaction block: in its own message."""
        if not bounded:
            self._execute(m, statement, [(statement.text, statement)], watch=False)
            return
        state = self.session()
        send(self.conn, [f"SET lock_timeout = {_literal(self.policy.lock_timeout_setting)}"])
        try:
            self._execute(m, statement, [(statement.text, statement)], watch=watch)
        finally:
            if not self.conn.closed:
                kept = dict(state.settings).get("lock_timeout")
                reset = f"SET lock_timeout = {_literal(kept)}" if kept else "RESET lock_timeout"
                with contextlib.suppress(psycopg.Error):
                    send(self.conn, [reset])

    def _execute(
        self, m: Migration, statement: Statement | None, parts: Sequence[Part], watch: bool = False
    ) -> None:
        """Send one message (the file's statement among the runner's SQL); on retries,
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
        queries = [q for q, _ in parts]
        if not watch:
            send(self.conn, queries)
            return
        pid = self.conn.info.backend_pid
        timer = threading.Timer(
            self.policy.lock_timeout_ms / 2000,
            lambda: self.seen_blockers.update({m.version: self.lock.blockers_of(pid)}),
        )
        timer.start()
        try:
            send(self.conn, queries)
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
        # Sent alone (it cannot run in a transaction block) and without a lock_timeout of
        # ours: SHARE UPDATE EXCLUSIVE blocks no writer, and a session SET would outlive it.
        self.conn.execute(
            sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(schema, index))
        )

    def _rollback_quietly(self) -> None:
        """ROLLBACK undoes the file's settings, not the session advisory locks it took."""
        with contextlib.suppress(psycopg.Error):
            send(self.conn, ["ROLLBACK", *self.session().release_locks()])

    def _is_lost(self, exc: psycopg.Error) -> bool:
        """The connection is gone (not a SQL error): closed, or ended by the server."""
        return self.conn.closed or (exc.sqlstate or "").startswith(("08", "57P"))

    def _failed(
        self,
        m: Migration,
        script: Script,
        owner: Statement | str | None,
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

    def _connection_lost(
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
        done, why = self._ledger_shows(m)
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
            f"{shown_path(m)}: lost the connection to the database {where} ({reason}); {verdict}",
            shown_path(m),
            done if m.kind != "rollback" else (None if done is None else not done),
        )

    def _ledger_shows(self, m: Migration) -> tuple[bool | None, str]:
        """(whether the file's effect is recorded, why not known) read on a new connection."""
        if not self.conninfo:
            return None, "no connection string"
        kind = "forward" if m.kind == "rollback" else m.kind
        try:
            with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
                row = conn.execute(
                    sql.SQL("SELECT checksum FROM {} WHERE kind = %s AND version = %s").format(
                        sql.SQL(self.tables.ledger_name)
                    ),
                    (kind, m.version),
                ).fetchone()
        except psycopg.Error as exc:
            return None, (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if m.kind == "rollback":
            return row is None, ""
        return row is not None and row[0] == m.checksum, ""
