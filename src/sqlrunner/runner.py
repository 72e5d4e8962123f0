"""Do: under the runner lock, re-check the ledger, then execute files on the run's
connection, each all-or-nothing with its ledger row, verify, and record the run.

Loaded only when something will run (``api`` imports it there): it brings the
parser with it, which a no-op apply never needs.

Every statement of a file is sent on its own message (as psql does), so a
failure is pinned to its statement, its line and its column; the runner's own
SQL travels in the same messages (``session.send``). Transactional files run
inside one ``BEGIN … COMMIT`` whose last message also restores the session
(``session.SessionState``), writes the ledger and history rows as the role the runner
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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import psycopg
from psycopg import sql

from . import ledger
from .backfill import Backfill
from .checks import refuse_unsafe_checks, run_checks
from .errors import (
    BackfillPending,
    ConnectionFailed,
    ConnectionLost,
    LockTimeout,
    MigrationFailed,
    UsageError,
    VerificationFailed,
)
from .files import Migration, MigrationSet
from .ledger import LedgerTables, RunContext
from .locking import (
    MIGRATION_LIMITS,
    RETRYABLE,
    Retryable,
    RetryPolicy,
    RunnerLock,
    gave_up,
    retry_message,
    runner_lock,
    with_retries,
)
from .plan import LedgerRow, plan_apply, refuse_drift
from .position import Throttle
from .report import (
    ApplyReport,
    Event,
    FileResult,
    Listener,
    RollbackReport,
    VerifyReport,
    elapsed_ms,
    fan_out,
)
from .seedtargets import partial_seeds, seeds_may_run
from .session import (
    Options,
    PartFailed,
    SessionState,
    connect,
    connection_gone,
    identifier,
    literal,
    send,
)
from .sqltext import (
    Script,
    Statement,
    concurrent_index,
    runs_alone,
    runs_without_lock_timeout,
    script_for,
    sql_error,
)

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

# What to do after a failed file, per command.
NEXT_STEP = {
    "apply": "the file was rolled back; fix it and run apply again",
    "seed": "the seed file was rolled back; fix it and run apply (or seed) again",
    "rollback": "the rollback file was rolled back, so the migration is still applied; "
    "fix the rollback file and run rollback again",
}


@dataclass
class LockedRun:
    """One apply or rollback, from taking the runner lock to the run's history row."""

    conn: psycopg.Connection[Any]
    conninfo: str
    options: Options
    listener: Listener | None
    shown: str
    started: float
    between_statements: Callable[[], None] | None = None  # replicas.LagGate, if any
    throttle: Throttle | None = None  # a batched file's budget and pauses (position.py)

    @property
    def tables(self) -> LedgerTables:
        return LedgerTables.of(self.options)

    @property
    def policy(self) -> RetryPolicy:
        return RetryPolicy.of(self.options)

    def _lock(self, ctx: RunContext) -> RunnerLock:
        return runner_lock(
            self.conninfo, self.options, f"sqlrunner lock ({ctx.client})", self.listener
        )

    def _executor(self, lock: RunnerLock, ctx: RunContext) -> Executor:
        return Executor(
            self.conn,
            lock,
            self.tables,
            self.policy,
            ctx,
            fan_out(self.listener),
            conninfo=self.conninfo,
            between_statements=self.between_statements,
            throttle=self.throttle,
        )

    def _ms(self) -> int:
        return elapsed_ms(self.started)

    def apply(
        self,
        files: MigrationSet,
        parsed: list[Script],
        *,
        to: int | None,
        seed: bool,
        verify: bool,
        notes: tuple[str, ...],
        strict: bool = False,
    ) -> ApplyReport:
        """Apply what is still pending once the lock is ours (another runner may have done it)."""
        scripts = {s.migration.path: s for s in parsed}

        def script(m: Migration) -> Script:
            return scripts.get(m.path) or script_for(m)

        refuse_unsafe_checks([script(m) for m in files.verify if m.path in scripts])
        ctx = RunContext.new()
        with self._lock(ctx) as lock:
            ledger.create_tables(self.conn, self.tables)
            rows = ledger.read_rows(self.conn, self.tables)
            refuse_drift(files, rows, strict=strict)
            plan = plan_apply(files, rows, to_version=to, seed=seed, verify=verify)
            # the runner we waited for did it all (a partial apply may still have seeds to try)
            if plan.empty and not seeds_may_run(files, rows, plan):
                return ApplyReport(self.shown, (), (), None, self._ms(), False, notes)
            executor = self._executor(lock, ctx)
            applied: list[FileResult] = []
            seeded: list[FileResult] = []
            try:
                applied.extend(executor.forward(script(m)) for m in plan.forward)
                seeded.extend(executor.seed(script(m)) for m in plan.seeds)
                if plan.seeds_deferred and not plan.future:  # --to V: seeds whose tables exist
                    ready, notes = partial_seeds(self.conn, files, rows, script, notes)
                    seeded.extend(executor.seed(s) for s in ready)
            except BaseException as exc:
                record_failed_run(executor, "apply", self._ms(), exc)
                raise
            verification = self._verify([script(m) for m in plan.verify], executor)
            outcome = "ok" if verification is None or verification.ok else "verify failed"
            executor.finish_run(
                "apply", outcome, self._ms(), f"{len(applied)} applied, {len(seeded)} seeded"
            )
        report = ApplyReport(
            self.shown, tuple(applied), tuple(seeded), verification, self._ms(), False, notes
        )
        if verification is not None and not verification.ok:
            raise VerificationFailed(verification.failure_message(), report)
        return report

    def _verify(self, scripts: list[Script], executor: Executor) -> VerifyReport | None:
        """The checks of what is now applied, bounded by the run's lock_timeout."""
        if not scripts:
            return None
        return run_checks(
            self.conn,
            scripts,
            self.shown,
            lock_timeout=self.policy.lock_timeout_setting,
            state=executor.session(),
        )

    def rollback(
        self, rows: list[LedgerRow], scripts: list[Script], losses: list[str]
    ) -> RollbackReport:
        """Run the rollback files newest first; seeds are forgotten with the first one."""
        ctx = RunContext.new()
        with self._lock(ctx) as lock:
            ledger.create_tables(self.conn, self.tables)
            if ledger.read_rows(self.conn, self.tables) != rows:
                raise UsageError(
                    "the ledger changed while waiting for another sqlrunner; nothing was "
                    "rolled back: check 'status' and run rollback again"
                )
            executor = self._executor(lock, ctx)
            done: list[FileResult] = []
            try:
                for index, script in enumerate(scripts):
                    done.append(executor.rollback(script, forget_seeds=index == 0))
            except BaseException as exc:
                record_failed_run(executor, "rollback", self._ms(), exc)
                raise
            executor.finish_run("rollback", "ok", self._ms(), f"{len(done)} rolled back")
        return RollbackReport(self.shown, tuple(done), self._ms(), False, tuple(losses))


def record_failed_run(
    executor: Executor, action: str, duration_ms: int, exc: BaseException
) -> None:
    """Best effort: when the connection itself died, the original error is what matters.

    An interruption (Ctrl-C, or SIGTERM, which the CLI turns into one) may arrive inside
    a migration's transaction: that is rolled back first, so the row can be written.
    """
    interrupted = not isinstance(exc, Exception)
    outcome = "interrupted" if interrupted else "failed"
    if isinstance(exc, BackfillPending):  # stopped by its budget, on purpose
        outcome = "pending"
    detail = f"interrupted ({type(exc).__name__})" if interrupted else str(exc)[:2000]
    with contextlib.suppress(psycopg.Error):
        if executor.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            executor.conn.execute("ROLLBACK")
        executor.finish_run(action, outcome, duration_ms, detail)


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

    def forward(self, script: Script) -> FileResult:
        return self._run(script, self._recorded(script.migration, "apply"), "applied", "apply")

    def seed(self, script: Script) -> FileResult:
        return self._run(script, self._recorded(script.migration, "seed"), "seeded", "seed")

    def _recorded(self, m: Migration, action: str) -> Finish:
        """The ledger rows of an applied forward or seed file (a forward file's progress
        rows go: they served a crashed no-transaction run of it)."""

        def finish(duration_ms: str) -> list[str]:
            rows = [
                ledger.record_applied(
                    self.tables, m.kind, m.version, m.name, m.checksum, duration_ms, self.ctx
                )
            ]
            if m.kind == "forward":
                rows.append(ledger.clear_progress(self.tables, m.version))
            return [*rows, self._history(action, m, "ok", duration_ms)]

        return finish

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
        return ledger.record_file_history(
            self.tables, self.ctx, action, outcome, m, duration_ms=duration_ms, detail=detail
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
            (f"SET LOCAL lock_timeout = {literal(lock_timeout)}", None),
            ("SET LOCAL synchronous_commit = off", None),
            (f"SET LOCAL client_connection_check_interval = {literal(CLIENT_CHECK)}", None),
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
            ("BEGIN", None),
            *[(s.text, s) for s in script.preamble],
            *ours,
            *limits,
            held,
        ]
        restore: list[Part] = [(q, None) for q in self.session().restore()]
        ledger_rows = [(q, None) for q in finish(ledger.TRANSACTION_DURATION_MS)]
        tail: list[Part] = [*restore, *ours, held, *ledger_rows, ("COMMIT", "COMMIT")]
        statements = script.statements or (None,)

        def attempt(number: int) -> None:
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
                    self._execute(m, statement, parts, watch=number > 1)
            except PartFailed as failed:
                owner = parts[failed.index][1]
                raise self._failure(
                    failed, script, owner, action, retry=True, running=statement
                ) from failed.error
            except psycopg.OperationalError as exc:
                committing = bool(parts) and parts[-1][1] == "COMMIT"
                self._raise_lost(exc, m, statement, action, committing)

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
                if self.between_statements is not None:  # replicas: wait out standby lag
                    self.between_statements()
                if runs_alone(statement):  # otherwise the check travels with the statement
                    self.lock.ensure_held(
                        self.conn,
                        f"before {m.shown_path}:{statement.line}; the statements before it "
                        "are done and recorded",
                    )
                target = concurrent_index(statement)
                if target is not None and target[2] in leftovers:
                    self._drop_invalid_leftover(m, statement, target[2], *leftovers[target[2]])
                attempts = max(attempts, self._autocommit_statement(script, statement, action))
            self._record_done(script, finish, started, action)
        except (MigrationFailed, LockTimeout):
            self._settle()
            raise
        return attempts

    def _record_done(self, script: Script, finish: Finish, started: float, action: str) -> None:
        """A finished no-transaction file's ledger rows, in one transaction that first puts
        the session back: the file's own SETs (and role) must not reach the ledger write."""
        m = script.migration
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
            raise self._failure(failed, script, None, action) from failed.error
        except psycopg.OperationalError as exc:
            raise self._connection_lost(m, None, exc, action) from exc

    def _autocommit_statement(self, script: Script, statement: Statement, action: str) -> int:
        """One statement of a no-transaction file with its progress row, retried on lock
        timeouts unless it takes no lock that blocks writers (then it has no lock_timeout)."""
        m = script.migration
        alone = runs_alone(statement)
        bounded = not runs_without_lock_timeout(statement)
        timeout = self.policy.lock_timeout_setting if bounded else "0"
        progress: list[Part] = []
        if statement.kind != "VariableSetStmt":
            row = ledger.record_statement_done(self.tables, m.version, m.checksum, statement.index)
            progress = [*[(q, None) for q in self.session().as_runner(local=True)], (row, None)]

        def attempt(number: int) -> None:
            nonlocal alone
            parts: list[Part] = [(statement.text, statement)]
            try:
                if alone:
                    self._alone(m, statement, bounded, watch=number > 1 and bounded)
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
                raise self._failure(
                    failed, script, owner, action, retry=retry, resumable=statement
                ) from failed.error
            except psycopg.OperationalError as exc:
                self._raise_lost(exc, m, statement, action)

        return self._with_retries(m, attempt)

    def _raise_lost(
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
        raise self._connection_lost(m, statement, exc, action, committing) from exc

    def _failure(
        self,
        failed: PartFailed,
        script: Script,
        owner: Statement | str | None,
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
            return self._connection_lost(m, at, failed.error, action)
        if resumable is None:
            self._rollback_quietly()
        where = f"{m.shown_path}:{resumable.line}" if resumable is not None else m.shown_path
        lock_failure = self.lock.commit_failure(failed.error, self.tables, where)
        if lock_failure is not None:
            return lock_failure
        if retry and isinstance(failed.error, RETRYABLE):
            waited = running or resumable
            where = f"{m.display_path}:{waited.line}" if waited else m.display_path
            return Retryable(failed.error, where)
        return self._failed(m, script, owner, failed, action, resumable=resumable)

    def _alone(self, m: Migration, statement: Statement, bounded: bool, watch: bool) -> None:
        """A statement that cannot run in a transaction block: in its own message."""
        if not bounded:
            self._execute(m, statement, [(statement.text, statement)], watch=False)
            return
        state = self.session()
        send(self.conn, [f"SET lock_timeout = {literal(self.policy.lock_timeout_setting)}"])
        try:
            self._execute(m, statement, [(statement.text, statement)], watch=watch)
        finally:
            if not self.conn.closed:
                kept = dict(state.settings).get("lock_timeout")
                reset = f"SET lock_timeout = {literal(kept)}" if kept else "RESET lock_timeout"
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
        with self.lock.watching(
            pid,
            self.policy.lock_timeout_ms,
            lambda found: self.seen_blockers.update({m.version: found}),
        ):
            send(self.conn, queries)

    def _with_retries(self, m: Migration, attempt: Callable[[int], None]) -> int:
        """``attempt`` under the retry policy, saying who blocks it; the attempts it took."""

        def on_retry(failed: Retryable, number: int, delay: float) -> None:
            blockers = self.seen_blockers.get(m.version, [])
            self.emit(Event("retry", retry_message(failed, number, delay, blockers), migration=m))

        def give_up(failed: Retryable, number: int) -> LockTimeout:
            blockers = self.seen_blockers.get(m.version, [])
            return gave_up(failed, number, self.policy, blockers, GIVE_UP_NEXT_STEP)

        return with_retries(self.policy, attempt, on_retry, give_up)

    def _invalid_leftovers(self, statements: Sequence[Statement]) -> dict[str, tuple[str, bool]]:
        """Index name -> (schema, being built now) for each INVALID index the file would build."""
        targets = [t for t in map(concurrent_index, statements) if t is not None]
        if not targets:
            return {}
        row = self.conn.execute(ANY_INVALID_INDEX_QUERY).fetchone()
        if row is None or not row[0]:
            return {}
        tables = [identifier(*(p for p in (schema, table) if p)) for schema, table, _ in targets]
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
                f"{m.shown_path}:{statement.line}: index {index} is being built by another "
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
            f"{m.shown_path}: lost the connection to the database {where} ({reason}); {verdict}",
            m.shown_path,
            done if m.kind != "rollback" else (None if done is None else not done),
        )

    def _ledger_shows(self, m: Migration) -> tuple[bool | None, str]:
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
