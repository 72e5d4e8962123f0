"""Do: under the runner lock, re-check the ledger, then execute files on the run's
connection (``executor.py``), each all-or-nothing with its ledger row, verify, and
record the run.

Loaded only when something will run (``api`` imports it there): it brings the
parser with it, which a no-op apply never needs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from . import ledger
from .checks import refuse_unsafe_checks, run_checks
from .errors import BackfillPending, UsageError, VerificationFailed
from .executor import Executor
from .files import Migration, MigrationSet
from .ledger import LedgerTables, RunContext
from .locking import RetryPolicy, RunnerLock, runner_lock
from .plan import LedgerRow, plan_apply, refuse_drift
from .position import Throttle
from .report import (
    ApplyReport,
    FileResult,
    Listener,
    RollbackReport,
    VerifyReport,
    elapsed_ms,
    fan_out,
)
from .seedtargets import partial_seeds, seeds_may_run
from .session import Options
from .sqltext import Script, script_for


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
