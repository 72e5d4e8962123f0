"""Run a batched file (batched.py): batch after batch, each committed with its progress row.

The key range is fixed when the file starts (min and max of the key, stored in
the ``_backfill`` table beside the ledger; rows inserted later are the
application's job). Each batch is one transaction: the runner's SET LOCALs and
lock check, the statement over ``[lo, hi)``, then the progress row moved from
``lo`` to ``hi`` and COMMIT. A batch therefore commits exactly once or not at
all, whatever kills the runner, and a re-run resumes at the stored next key even
when the statement is not idempotent. The ledger row is written in a final
transaction, with the progress row marked done.

Between batches the size adapts toward the header's ``target`` duration (at most
x1.2 up and x0.5 down per step, like GitLab's batch optimiser), the caller's
``between_batches`` runs (a replica-lag gate plugs in there), and a spent
``budget`` stops the file cleanly with BackfillPending (exit 6).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import psycopg

from . import ledger
from .errors import (
    BackfillPending,
    ChecksumMismatch,
    ConnectionLost,
    LockLost,
    LockTimeout,
    MigrationFailed,
    UsageError,
)
from .locking import RETRYABLE, Retryable, gave_up, retry_message, with_retries
from .messages import Message, Owner
from .position import (
    MOVED_SQLSTATE,
    BackfillPosition,
    Throttle,
    advance,
    fix_range,
    read_positions,
    record_done,
)
from .report import Event, elapsed_ms
from .session import PartFailed, connection_gone, send
from .sqltext import Statement, sql_error

if TYPE_CHECKING:
    from .batched import Batched
    from .executor import Executor
    from .sqltext import Script

GROW_AT_MOST = 1.2  # GitLab's MAX_MULTIPLIER: a fast batch grows the next by 20% at most
SHRINK_AT_MOST = 0.5  # a slow one halves it at most: one odd batch does not collapse it
STEADY = (0.9, 1.1)  # within 10% of the target: keep the size
SIZE_RANGE = 100  # the size stays within 1/100 and 100x the header's size


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """A committed batch and where the file now stands (the progress line's facts)."""

    file: str
    lo: int
    hi: int
    rows: int
    duration_ms: int
    position: BackfillPosition
    rate: float  # rows per second in this run
    eta_s: float | None  # at this run's pace, seconds to the end of the range

    def describe(self) -> str:
        p = self.position
        eta = f", ETA {_clock(self.eta_s)}" if self.eta_s is not None else ""
        return (
            f"{self.file}: backfill {p.fraction:.0%} (key {p.next_key} of "
            f"[{p.lo_key}, {p.hi_key})), {p.rows:,} rows in {p.batches:,} batches, "
            f"{self.rate:,.0f} rows/s{eta}; batch size {p.batch_size:,}"
        )


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def next_size(size: int, duration_ms: float, target_ms: int | None, initial: int) -> int:
    """The next batch's key width: toward ``target_ms``, clamped per step and overall."""
    if target_ms is None:
        return size
    ratio = target_ms / max(duration_ms, 1.0)
    if 1 / STEADY[1] <= ratio <= 1 / STEADY[0]:
        return size
    factor = min(GROW_AT_MOST, max(SHRINK_AT_MOST, ratio))
    floor, ceiling = max(1, initial // SIZE_RANGE), initial * SIZE_RANGE
    return max(floor, min(ceiling, int(size * factor)))


class Backfill:
    """One batched file on the executor's connection, with its lock and retry policy."""

    def __init__(self, executor: Executor, script: Script, throttle: Throttle | None) -> None:
        assert script.batch is not None
        self.x = executor
        self.m = script.migration
        self.batch: Batched = script.batch
        self.throttle = throttle or Throttle()
        self.path = self.m.shown_path
        self.blockers: list[str] = []
        # the caller's between_batches, and the run's replica-lag gate (replicas.LagGate)
        gates = (self.throttle.between_batches, executor.between_statements)
        self.gates = [g for g in gates if g is not None]
        self.messages = executor.messages()  # what each round trip carries (messages.py)

    # --- the file ----------------------------------------------------------------------------

    def run(self, finish: Callable[[str], Sequence[str]]) -> int:
        """Every remaining batch, then the ledger row; the most attempts any batch took."""
        started = time.monotonic()
        position = self._position()
        spec = self.batch.spec
        size = position.batch_size
        attempts = 1
        run_rows = 0
        run_keys = 0
        first = True
        while position.next_key < position.hi_key:
            if not first:
                if self.throttle.spent():
                    raise self._pending(position, run_rows)
                for gate in self.gates:
                    gate()
            first = False
            lo = position.next_key
            hi = min(lo + size, position.hi_key)
            began = time.monotonic()
            rows, tries = self._batch(lo, hi, size)
            took = (time.monotonic() - began) * 1000
            attempts = max(attempts, tries)
            run_rows += rows
            run_keys += hi - lo
            size = next_size(size, took, spec.target_ms, spec.size)
            position = replace(
                position,
                next_key=hi,
                batches=position.batches + 1,
                rows=position.rows + rows,
                batch_size=size,
            )
            self._report(position, lo, hi, rows, took, started, run_rows, run_keys)
        self._finish(position, finish, started)
        return attempts

    def _position(self) -> BackfillPosition:
        """The stored position to resume at, or a new one: the key range fixed now."""
        ledger.create_backfill_table(self.x.conn, self.x.tables)
        found = read_positions(self.x.conn, self.x.tables, self.m.version)
        if found and not found[0].done:
            position = found[0]
            if position.checksum != self.m.checksum:
                raise self._drift(position)
            self._note(
                f"{self.m.display_path}: resuming the backfill at key {position.next_key} "
                f"of [{position.lo_key}, {position.hi_key}) ({position.rows:,} rows in "
                f"{position.batches:,} batches done)"
            )
            return position
        self._check_table()
        spec = self.batch.spec
        start = fix_range(
            self.x.tables, self.m.version, self.m.checksum, spec.size, spec.key, spec.table_sql
        )
        self._transaction(self.messages.backfill_transaction([start]), None, None)
        (position,) = read_positions(self.x.conn, self.x.tables, self.m.version)
        self._note(
            f"{self.m.display_path}: backfilling {spec.table_name} keys [{position.lo_key}, "
            f"{position.hi_key}) in batches of {spec.size:,}"
            + (f" toward {spec.target_ms}ms each" if spec.target_ms else "")
        )
        return position

    def _check_table(self) -> None:
        """The header's table and key exist and the key is an integer: said before anything."""
        spec = self.batch.spec
        row = self.x.conn.execute(
            "SELECT c.oid IS NOT NULL, format_type(a.atttypid, NULL) "
            "FROM (SELECT to_regclass(%s) AS oid) AS c LEFT JOIN pg_catalog.pg_attribute a "
            "ON a.attrelid = c.oid AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped",
            (spec.table_sql.as_string(self.x.conn), spec.key),
        ).fetchone()
        where = f"{self.path}:1: the batched header's"
        if row is None or not row[0]:
            raise UsageError(f"{where} table {spec.table_name} does not exist | nothing was run")
        if row[1] is None:
            raise UsageError(
                f"{where} key: table {spec.table_name} has no column {spec.key} | nothing was run"
            )
        if row[1] not in ("smallint", "integer", "bigint"):
            raise UsageError(
                f"{where} key {spec.key} is {row[1]}: a batched key must be smallint, integer "
                "or bigint | nothing was run"
            )

    def _finish(
        self,
        position: BackfillPosition,
        finish: Callable[[str], Sequence[str]],
        started: float,
    ) -> None:
        """The ledger row and the progress row marked done, in one transaction."""
        rows = [*finish(str(elapsed_ms(started))), record_done(self.x.tables, position)]
        self._transaction(self.messages.backfill_transaction(rows), None, None)

    # --- one batch ---------------------------------------------------------------------------

    def _batch(self, lo: int, hi: int, size: int) -> tuple[int, int]:
        """Keys [lo, hi) and the progress row in one transaction: (rows changed, attempts)."""
        rendered = self.batch.render(lo, hi)
        where = f"{self.m.display_path}:{self.batch.statement.line} batch [{lo}, {hi})"
        changed = 0

        def attempt(number: int) -> None:
            nonlocal changed
            self.x.emit(
                Event(
                    "statement_started",
                    f"{self.m.display_path}:{self.batch.statement.line}: batch [{lo}, {hi})",
                    migration=self.m,
                    statement=self.batch.statement,
                    backend_pid=self.x.conn.info.backend_pid,
                )
            )
            parts = self.messages.batch(rendered, self.batch.statement)
            try:
                with self._watch(number > 1):
                    results = send(self.x.conn, [q for q, _ in parts])
                rows = results[-1].command_tuples or 0
                moved = advance(self.x.tables, self.m.version, lo, hi, size, rows)
                parts = self.messages.batch_commit(moved)
                send(self.x.conn, [q for q, _ in parts])
                changed = rows
            except PartFailed as failed:
                owner = parts[failed.index][1]
                self._settle_failure(failed, lo, hi)
                if isinstance(failed.error, RETRYABLE) and isinstance(owner, Statement):
                    raise Retryable(failed.error, where) from None
                raise self._failed(failed, owner, lo, hi, rendered) from None
            except psycopg.OperationalError as exc:
                if self._is_lost(exc):
                    raise self._lost(exc, lo, hi) from None
                raise

        next_step = (
            f"this batch was rolled back; the batches below key {lo} are committed: end or "
            "wait out the blocker, then run apply again (it resumes at that key), or raise "
            "--lock-retries"
        )
        attempts = self._with_retries(attempt, next_step)
        return changed, attempts

    def _transaction(self, parts: Message, lo: int | None, hi: int | None) -> None:
        """The runner's own SQL in one locked, timed transaction (start and finish)."""
        where = f"{self.m.display_path}: reading the key range of {self.batch.spec.table_name}"

        def attempt(number: int) -> None:
            try:
                send(self.x.conn, [q for q, _ in parts])
            except PartFailed as failed:
                self._settle_failure(failed, lo, hi)
                if isinstance(failed.error, RETRYABLE):  # reading the key range
                    raise Retryable(failed.error, where) from None
                raise self._failed(failed, None, lo, hi, "") from None
            except psycopg.OperationalError as exc:
                if self._is_lost(exc):
                    raise self._lost(exc, lo, hi) from None
                raise

        self._with_retries(
            attempt,
            "nothing of this file ran: end or wait out the blocker, then run apply again, "
            "or raise --lock-retries",
        )

    def _with_retries(self, attempt: Callable[[int], None], next_step: str) -> int:
        """``attempt`` on the one retry loop (locking.with_retries), naming the blocker seen."""

        def on_retry(failed: Retryable, number: int, delay: float) -> None:
            message = retry_message(failed, number, delay, self.blockers)
            self.x.emit(Event("retry", message, migration=self.m))

        def give_up(failed: Retryable, number: int) -> LockTimeout:
            return gave_up(failed, number, self.x.policy, self.blockers, next_step)

        return with_retries(self.x.policy, attempt, on_retry, give_up)

    def _settle_failure(self, failed: PartFailed, lo: int | None, hi: int | None) -> None:
        """Roll back; raise what the failure means when it is not the batch's own error."""
        if self._is_lost(failed.error):
            raise self._lost(failed.error, lo, hi) from None
        with contextlib.suppress(psycopg.Error):
            send(self.x.conn, ["ROLLBACK"])
        where = self.path if lo is None else f"{self.path} batch [{lo}, {hi})"
        lock_failure = self.x.lock.commit_failure(failed.error, self.x.tables, where)
        if lock_failure is not None:
            raise lock_failure from None
        if failed.error.sqlstate == MOVED_SQLSTATE:
            raise LockLost(
                f"{where}: another sqlrunner moved this backfill's progress while this run "
                "held it (one of the two had lost the runner lock); this batch was rolled "
                "back, so it ran once | check 'status', then run apply again"
            ) from None

    def _watch(self, on: bool) -> contextlib.AbstractContextManager[None]:
        """On a retry, note who blocks the batch while it waits (for the give-up message)."""
        if not on:
            return contextlib.nullcontext()

        def seen(found: list[str]) -> None:
            self.blockers = found or self.blockers

        pid = self.x.conn.info.backend_pid
        return self.x.lock.watching(pid, self.x.policy.lock_timeout_ms, seen)

    # --- what the user reads -----------------------------------------------------------------

    def _failed(
        self, failed: PartFailed, owner: Owner, lo: int | None, hi: int | None, rendered: str
    ) -> MigrationFailed:
        statement = self.batch.statement
        if lo is None or hi is None:
            detail = sql_error(self.m, None, failed.error, first="(sqlrunner backfill progress)")
            return MigrationFailed(detail, "nothing of this file was committed; run apply again")
        bounds = f"batch lo={lo} hi={hi}"
        position = failed.position if isinstance(owner, Statement) else None
        if position is not None and 0 < position <= len(rendered) + 1:
            position = self.batch.position_in_file(lo, hi, position)
        else:
            position = None
        first = f"{statement.first_line} [{bounds}]"
        if owner == "COMMIT":
            first = f"COMMIT of {bounds} (deferred constraints are checked there)"
        detail = sql_error(self.m, statement, failed.error, position=position, first=first)
        return MigrationFailed(
            detail,
            f"the batch of keys [{lo}, {hi}) was rolled back and the batches below key {lo} "
            f"are committed; run it by hand with psql -X -v ON_ERROR_STOP=1 -v lo={lo} "
            f"-v hi={hi} -f {self.path} to see, fix the data, then run apply again: it "
            f"resumes at key {lo} (an edit of the file now is drift)",
        )

    def _is_lost(self, exc: psycopg.Error) -> bool:
        return connection_gone(self.x.conn, exc)

    def _lost(self, exc: psycopg.Error, lo: int | None, hi: int | None) -> ConnectionLost:
        reason = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())[:300]
        during = f"during the batch of keys [{lo}, {hi})" if lo is not None else "between batches"
        return ConnectionLost(
            f"{self.path}: lost the connection to the database {during} ({reason}); each "
            "batch commits together with its progress row, so it ran once or not at all: "
            "run apply again, it resumes after the last committed batch",
            self.path,
            None,
        )

    def _drift(self, position: BackfillPosition) -> ChecksumMismatch:
        table = self.x.tables.backfill_name
        return ChecksumMismatch(
            f"{self.path} changed while its backfill is in progress: {position.batches:,} "
            f"batches ran with the old text, up to key {position.next_key} of "
            f"[{position.lo_key}, {position.hi_key}) | nothing of it was run now; restore the "
            "file to finish it; or, after review, continue the rest of the range with the "
            f"new text (UPDATE {table} SET checksum = '{self.m.checksum}' WHERE version = "
            f"{self.m.version}), or start over from the first key (DELETE FROM {table} "
            f"WHERE version = {self.m.version}; only if the statement can safely run twice)",
            [self.m.display_path],
        )

    def _pending(self, position: BackfillPosition, run_rows: int) -> BackfillPending:
        budget = self.throttle.budget or 0
        return BackfillPending(
            f"pending: the backfill continues on the next apply: {self.path} stopped by the "
            f"budget of {budget:g}s at key {position.next_key} of [{position.lo_key}, "
            f"{position.hi_key}) ({position.fraction:.0%}; {run_rows:,} rows in this run, "
            f"{position.rows:,} in all) | every batch done is committed; seeds and verify "
            "wait until it is done",
            self.path,
            position.next_key,
            position.hi_key,
        )

    def _note(self, message: str) -> None:
        self.x.emit(Event("note", message, migration=self.m))

    def _report(
        self,
        position: BackfillPosition,
        lo: int,
        hi: int,
        rows: int,
        took_ms: float,
        started: float,
        run_rows: int,
        run_keys: int,
    ) -> None:
        elapsed = max(time.monotonic() - started, 1e-6)
        left = position.hi_key - position.next_key
        eta = left / (run_keys / elapsed) if run_keys else None
        progress = BatchProgress(
            self.m.display_path, lo, hi, rows, int(took_ms), position, run_rows / elapsed, eta
        )
        self.x.emit(
            Event("backfill_progress", progress.describe(), migration=self.m, backfill=progress)
        )
