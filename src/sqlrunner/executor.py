"""Run one file on the run's connection, all-or-nothing with its ledger rows.

Every statement of a file is sent on its own message (as psql does), so a
failure is pinned to its statement, its line and its column; the runner's own
SQL travels in the same messages, built by ``messages.py``. Transactional files
run inside one ``BEGIN … COMMIT`` whose last message also restores the session
(``session.SessionState``), writes the ledger and history rows as the role the
runner connected with, and commits. Each commits with ``synchronous_commit =
off``; the run's final history row commits with it on (``finish_run``), and
since WAL is flushed in order that one fsync makes every earlier migration
durable before the run reports success.

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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from . import ledger
from .backfill import Backfill
from .errors import ConnectionLost, LockTimeout, MigrationFailed
from .failures import Failures
from .files import Migration
from .invalid_indexes import drop_invalid_leftover, invalid_leftovers
from .ledger import LedgerTables, RunContext
from .locking import Retryable, RetryPolicy, RunnerLock, gave_up, retry_message, with_retries
from .messages import AloneStatement, Message, Messages, Part
from .position import Throttle
from .report import Event, FileResult, Listener, elapsed_ms
from .session import PartFailed, SessionState, send
from .sqltext import Script, Statement, concurrent_index, runs_alone, runs_without_lock_timeout

# The ledger rows of a finished file, given its duration as SQL.
Finish = Callable[[str], Sequence[str]]

# What PostgreSQL answers a statement it refuses in a transaction block that the
# parse tree did not reveal (a procedure that commits, ...): it is sent alone then.
NOT_IN_A_BLOCK = (
    psycopg.errors.ActiveSqlTransaction,
    psycopg.errors.InvalidTransactionTermination,
)

# What to do when a file's retries on lock timeouts ran out.
GIVE_UP_NEXT_STEP = (
    "nothing was changed by this file; end or wait out the blocker, then run apply again "
    "(or raise --lock-retries)"
)


def queries(parts: Sequence[Part]) -> list[str]:
    return [q for q, _ in parts]


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
    # replicas.LagGate (--max-replica-lag): called before each statement of a
    # no-transaction file; it waits while a standby lags, or raises ReplicasBehind
    between_statements: Callable[[], None] | None = None
    # budget and between-batches callable for batched files (backfill.py)
    throttle: Throttle | None = None
    said: Messages | None = field(default=None, repr=False)

    def forward(self, script: Script) -> FileResult:
        return self._run(script, self._applied(script.migration, "apply"), "applied", "apply")

    def seed(self, script: Script) -> FileResult:
        return self._run(script, self._applied(script.migration, "seed"), "seeded", "seed")

    def _applied(self, m: Migration, action: str) -> Finish:
        return lambda duration_ms: self.messages().applied(m, action, duration_ms)

    def rollback(self, script: Script, forget_seeds: bool) -> FileResult:
        """Undo one file; ``forget_seeds`` on the run's first step, so that a rollback that
        fails part-way has still made the next apply re-run the seeds of what it dropped."""
        m = script.migration

        def finish(duration_ms: str) -> list[str]:
            return self.messages().rolled_back(m, duration_ms, forget_seeds)

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

    def session(self) -> SessionState:
        """The session state each file starts from (captured once, on first use)."""
        if self.state is None:
            self.state = SessionState.capture(self.conn)
        return self.state

    def messages(self) -> Messages:
        """What each round trip of a file carries (messages.py), for this run."""
        if self.said is None:
            self.said = Messages(
                self.policy.lock_timeout_setting,
                self.lock.held_check(),
                self.session(),
                self.tables,
                self.ctx,
            )
        return self.said

    def failures(self) -> Failures:
        return Failures(self.conn, self.lock, self.tables, self.conninfo, self.session())

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
        duration = str(elapsed_ms(started))
        row = self.messages().file_history(action, m, duration, outcome="failed", detail=detail)
        with contextlib.suppress(psycopg.Error):  # the failure itself is what the user must see
            self.conn.execute(row)

    def _settle(self) -> None:
        """Best effort after an interruption: no open transaction, the session restored."""
        if self.conn.closed:
            return
        with contextlib.suppress(psycopg.Error):
            if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                self.conn.execute("ROLLBACK")
            send(self.conn, self.session().restore())

    def _transaction(self, script: Script, finish: Finish, action: str) -> int:
        """Run the file's body in one transaction with its ledger rows, one round trip per
        statement (``Messages.transaction``); retry on lock timeouts."""
        m = script.migration
        messages = self.messages().transaction(script, finish(ledger.TRANSACTION_DURATION_MS))
        statements = script.statements or (None,)

        def attempt(number: int) -> None:
            parts: Message = []
            statement: Statement | None = None
            try:
                for statement, parts in zip(statements, messages, strict=True):
                    self._execute(m, statement, parts, watch=number > 1)
            except PartFailed as failed:
                owner = parts[failed.index][1]
                raise self.failures().explain(
                    failed, script, owner, action, retry=True, running=statement
                ) from failed.error
            except psycopg.OperationalError as exc:
                committing = bool(parts) and parts[-1][1] == "COMMIT"
                self.failures().raise_lost(exc, m, statement, action, committing)

        return self._with_retries(m, attempt)

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

        pending = [s for s in script.statements if not done_before(s)]
        leftovers = invalid_leftovers(self.conn, pending)
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
                if self.between_statements is not None:  # replicas: wait out standby lag
                    self.between_statements()
                if runs_alone(statement):  # sends AloneStatement.check; else it travels along
                    self.lock.ensure_held(
                        self.conn,
                        f"before {m.shown_path}:{statement.line}; the statements before it "
                        "are done and recorded",
                    )
                target = concurrent_index(statement)
                if target is not None and target[2] in leftovers:
                    schema, building = leftovers[target[2]]
                    drop_invalid_leftover(
                        self.conn, self.emit, m, statement, target[2], schema, building
                    )
                attempts = max(attempts, self._autocommit_statement(script, statement, action))
            self._record_done(script, finish, started, action)
        except (MigrationFailed, LockTimeout):
            self._settle()
            raise
        return attempts

    def _record_done(self, script: Script, finish: Finish, started: float, action: str) -> None:
        """A finished no-transaction file's ledger rows (``Messages.ledger_transaction``)."""
        m = script.migration
        parts = self.messages().ledger_transaction(finish(str(elapsed_ms(started))))
        try:
            send(self.conn, queries(parts))
        except PartFailed as failed:
            raise self.failures().explain(failed, script, None, action) from failed.error
        except psycopg.OperationalError as exc:
            raise self.failures().connection_lost(m, None, exc, action) from exc

    def _autocommit_statement(self, script: Script, statement: Statement, action: str) -> int:
        """One statement of a no-transaction file with its progress row, retried on lock
        timeouts unless it takes no lock that blocks writers (then it has no lock_timeout)."""
        m = script.migration
        said = self.messages()
        alone = runs_alone(statement)
        bounded = not runs_without_lock_timeout(statement)

        def attempt(number: int) -> None:
            nonlocal alone
            parts: Message = [(statement.text, statement)]
            try:
                if alone:
                    sent = said.alone(m, statement)
                    parts = sent.statement
                    self._alone(m, statement, sent, watch=number > 1 and bounded)
                    parts = sent.progress
                    if parts:
                        send(self.conn, queries(parts))
                else:
                    parts = said.autocommit(m, statement)
                    self._execute(m, statement, parts, watch=number > 1 and bounded)
            except PartFailed as failed:
                owner = parts[failed.index][1]
                if (
                    not alone
                    and owner is statement
                    and isinstance(failed.error, NOT_IN_A_BLOCK)
                    and self.lock.lost_reason is None
                ):
                    alone = True  # its implicit transaction rolled back: nothing happened
                    attempt(number)
                    return
                retry = bounded and owner is statement
                raise self.failures().explain(
                    failed, script, owner, action, retry=retry, resumable=statement
                ) from failed.error
            except psycopg.OperationalError as exc:
                self.failures().raise_lost(exc, m, statement, action)

        return self._with_retries(m, attempt)

    def _alone(self, m: Migration, statement: Statement, sent: AloneStatement, watch: bool) -> None:
        """A statement that cannot run in a transaction block: in its own message, inside
        the session lock_timeout of ``sent`` (reset even when the statement failed)."""
        if sent.bound:
            send(self.conn, queries(sent.bound))
        try:
            self._execute(m, statement, sent.statement, watch=watch)
        finally:
            if sent.reset and not self.conn.closed:
                with contextlib.suppress(psycopg.Error):
                    send(self.conn, queries(sent.reset))

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
        if not watch:
            send(self.conn, queries(parts))
            return
        pid = self.conn.info.backend_pid
        with self.lock.watching(
            pid,
            self.policy.lock_timeout_ms,
            lambda found: self.seen_blockers.update({m.version: found}),
        ):
            send(self.conn, queries(parts))

    def _with_retries(self, m: Migration, attempt: Callable[[int], None]) -> int:
        """``attempt`` under the retry policy, saying who blocks it; the attempts it took."""

        def on_retry(failed: Retryable, number: int, delay: float) -> None:
            blockers = self.seen_blockers.get(m.version, [])
            self.emit(Event("retry", retry_message(failed, number, delay, blockers), migration=m))

        def give_up(failed: Retryable, number: int) -> LockTimeout:
            blockers = self.seen_blockers.get(m.version, [])
            return gave_up(failed, number, self.policy, blockers, GIVE_UP_NEXT_STEP)

        return with_retries(self.policy, attempt, on_retry, give_up)
