"""The core shared by the library and the CLI: plan, then (if needed) lock and execute.

None of these functions print or exit; they log to ``logging.getLogger("sqlrunner")``,
raise SqlRunnerError subclasses, and return report values.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from . import ledger
from ._version import __version__
from .errors import ChecksumMismatch, DataLossRefused, UsageError, VerificationFailed
from .events import Event, Listener, fan_out
from .files import Migration, MigrationSet, load_migration_set
from .ledger import LedgerTables, RunContext
from .locking import RetryPolicy, RunnerLock, duration_ms
from .plan import LedgerRow, drift, file_states, plan_apply, plan_rollback
from .report import ApplyReport, FileResult, RollbackReport, StatusReport, VerifyReport
from .runner import Executor
from .safety import data_at_risk
from .sqltext import Script, script_for
from .target import connect, mask_password
from .verify import run_checks

Target = str | psycopg.Connection[Any]
DEFAULT_LOCK_RETRIES = RetryPolicy().retries


def resolve_sql_dir(sql_dir: str | os.PathLike[str] | None) -> Path:
    """``sql_dir`` if given, else ./sql when it exists, else the set shipped in the package."""
    if sql_dir is not None:
        return Path(sql_dir)
    local = Path("sql")
    if local.is_dir():
        return local
    packaged = Path(__file__).parent / "sql"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "sql"  # an editable install of the repo


@contextmanager
def _session(target: Target, wait: float) -> Iterator[tuple[psycopg.Connection[Any], str, str]]:
    """(connection, conninfo for the lock connection, masked target) for one run."""
    if isinstance(target, psycopg.Connection):
        if target.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            raise UsageError("the connection given to sqlrunner must not be inside a transaction")
        autocommit, threshold = target.autocommit, target.prepare_threshold
        target.autocommit, target.prepare_threshold = True, None
        params = {o.keyword.decode(): o.val.decode() for o in target.pgconn.info if o.val}
        try:
            yield target, psycopg.conninfo.make_conninfo(**params), mask_password(target.info.dsn)
        finally:
            target.autocommit, target.prepare_threshold = autocommit, threshold
        return
    conn = connect(target, wait=wait)
    try:
        yield conn, target, mask_password(target)
    finally:
        conn.close()


def _require_supported_server(conn: psycopg.Connection[Any]) -> None:
    """PostgreSQL 14.4+: 14.0-14.3 could corrupt indexes built concurrently (no round trip)."""
    version = conn.info.server_version
    if version < 140004:
        raise UsageError(f"PostgreSQL 14.4 or newer is required; this server is {version}")


def _context() -> RunContext:
    return RunContext(str(uuid.uuid4()), f"{socket.gethostname()} pid {os.getpid()}", __version__)


def _refuse_drift(files: MigrationSet, rows: list[LedgerRow]) -> None:
    drifted = drift(file_states(files, rows))
    if drifted:
        listing = ", ".join(f"{s.label} ({s.state})" for s in drifted)
        raise ChecksumMismatch(
            f"applied files changed since they ran: {listing} | nothing was run; restore the "
            "file(s), or after review run 'sqlrunner repair --accept VERSION' "
            "('--forget VERSION' for a removed file)",
            [s.label for s in drifted],
        )


def _scripts(migrations: Sequence[Migration]) -> list[Script]:
    """Parse every file that will run, so a broken one stops the run before anything runs."""
    return [script_for(m) for m in migrations]


def apply(
    target: Target,
    sql_dir: str | os.PathLike[str] | None = None,
    *,
    to: int | None = None,
    seed: bool = True,
    verify: bool = True,
    dry_run: bool = False,
    lock_timeout: str | int = "200ms",
    lock_retries: int = DEFAULT_LOCK_RETRIES,
    wait: float = 0,
    runner_wait: float = 300,
    ledger_schema: str = "public",
    ledger_table: str = "sqlrunner_ledger",
    on_event: Listener | None = None,
) -> ApplyReport:
    """Apply pending forward files, then new or changed seeds, then verify.

    When nothing is pending this costs one query after connecting: no lock, no
    catalog scan, no verify. Safe to call from several processes at once.
    """
    started = time.monotonic()
    files = load_migration_set(resolve_sql_dir(sql_dir))
    tables = LedgerTables(ledger_schema, ledger_table)
    policy = RetryPolicy(duration_ms(lock_timeout), lock_retries)
    emit = fan_out(on_event)
    with _session(target, wait) as (conn, conninfo, shown):
        _require_supported_server(conn)
        rows = ledger.read_rows(conn, tables)
        _refuse_drift(files, rows)
        plan = plan_apply(files, rows, to_version=to, seed=seed, verify=verify)
        notes = ("seeds deferred: forward files are still pending",) if plan.seeds_deferred else ()
        if dry_run or plan.empty:
            _scripts([*plan.forward, *plan.seeds])
            would = tuple(
                _would(m, "would apply" if m.kind == "forward" else "would seed")
                for m in (*plan.forward, *plan.seeds)
            )
            return ApplyReport(
                shown, would if dry_run else (), (), None, _ms(started), dry_run, notes
            )
        _scripts([*plan.forward, *plan.seeds, *plan.verify])
        ctx = _context()
        with RunnerLock(
            conninfo,
            tables.lock_key,
            runner_wait,
            application_name=f"sqlrunner lock ({ctx.client})",
            on_wait=lambda msg: emit(Event("waiting", msg)),
        ) as lock:
            ledger.create_tables(conn, tables)
            rows = ledger.read_rows(conn, tables)  # another runner may have applied meanwhile
            _refuse_drift(files, rows)
            plan = plan_apply(files, rows, to_version=to, seed=seed, verify=verify)
            if plan.empty:  # the runner we waited for did it all
                return ApplyReport(shown, (), (), None, _ms(started), False, notes)
            executor = Executor(conn, lock, tables, policy, ctx, emit)
            applied: list[FileResult] = []
            seeded: list[FileResult] = []
            try:
                applied.extend(executor.forward(s) for s in _scripts(plan.forward))
                seeded.extend(executor.seed(s) for s in _scripts(plan.seeds))
            except Exception as exc:
                executor.finish_run("apply", "failed", _ms(started), str(exc)[:2000])
                raise
            verification = None
            if plan.verify and (applied or seeded):
                verification = run_checks(conn, _scripts(plan.verify), shown)
            outcome = "ok" if verification is None or verification.ok else "verify failed"
            executor.finish_run(
                "apply", outcome, _ms(started), f"{len(applied)} applied, {len(seeded)} seeded"
            )
    report = ApplyReport(
        shown, tuple(applied), tuple(seeded), verification, _ms(started), False, notes
    )
    if verification is not None and not verification.ok:
        raise VerificationFailed(_verify_failure(verification), report)
    return report


def _verify_failure(report: VerifyReport) -> str:
    failed = "; ".join(f"{c.check}: {c.detail}" for c in report.failed)
    return f"verification failed ({len(report.failed)} of {len(report.checks)} checks): {failed}"


def _would(m: Migration, action: str) -> FileResult:
    return FileResult(m.kind, m.version, m.name, action, no_transaction=m.no_transaction)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def status(
    target: Target,
    sql_dir: str | os.PathLike[str] | None = None,
    *,
    wait: float = 0,
    ledger_schema: str = "public",
    ledger_table: str = "sqlrunner_ledger",
) -> StatusReport:
    """Every file: applied, pending, drifted (changed since applied) or missing."""
    files = load_migration_set(resolve_sql_dir(sql_dir))
    with _session(target, wait) as (conn, _conninfo, shown):
        rows = ledger.read_rows(conn, LedgerTables(ledger_schema, ledger_table))
    return StatusReport(shown, file_states(files, rows))


def verify(
    target: Target,
    sql_dir: str | os.PathLike[str] | None = None,
    *,
    wait: float = 0,
    ledger_schema: str = "public",
    ledger_table: str = "sqlrunner_ledger",
) -> VerifyReport:
    """Run the verify files of every applied version; raise VerificationFailed on a false check."""
    files = load_migration_set(resolve_sql_dir(sql_dir))
    with _session(target, wait) as (conn, _conninfo, shown):
        rows = ledger.read_rows(conn, LedgerTables(ledger_schema, ledger_table))
        applied = {r.version for r in rows if r.kind == "forward"}
        scripts = _scripts([m for m in files.verify if m.version in applied])
        report = run_checks(conn, scripts, shown)
    if not report.ok:
        raise VerificationFailed(_verify_failure(report), report)
    return report


def rollback(
    target: Target,
    sql_dir: str | os.PathLike[str] | None = None,
    *,
    steps: int | None = 1,
    to: int | None = None,
    dry_run: bool = False,
    allow_data_loss: bool = False,
    confirm: Callable[[Sequence[str]], bool] | None = None,
    lock_timeout: str | int = "200ms",
    lock_retries: int = DEFAULT_LOCK_RETRIES,
    wait: float = 0,
    runner_wait: float = 300,
    ledger_schema: str = "public",
    ledger_table: str = "sqlrunner_ledger",
    on_event: Listener | None = None,
) -> RollbackReport:
    """Undo applied forward files, newest first; refuse to drop real data unless allowed.

    Seeds are forgotten by the ledger afterwards, so the next apply re-runs them
    (they are idempotent, and the tables they fill may have been dropped).
    """
    started = time.monotonic()
    files = load_migration_set(resolve_sql_dir(sql_dir))
    tables = LedgerTables(ledger_schema, ledger_table)
    policy = RetryPolicy(duration_ms(lock_timeout), lock_retries)
    emit = fan_out(on_event)
    with _session(target, wait) as (conn, conninfo, shown):
        _require_supported_server(conn)
        rows = ledger.read_rows(conn, tables)
        _refuse_drift(files, rows)
        plan = plan_rollback(files, rows, steps=None if to is not None else steps, to_version=to)
        scripts = _scripts([step.rollback for step in plan])
        losses = data_at_risk(conn, scripts, _scripts(files.seed))
        if dry_run:
            would = tuple(_would(s.rollback, "would roll back") for s in plan)
            return RollbackReport(shown, would, _ms(started), True, tuple(losses))
        if losses and not allow_data_loss and not (confirm is not None and confirm(losses)):
            raise DataLossRefused(
                "rollback would drop data: "
                + "; ".join(losses)
                + " | nothing was changed; export what you need, then confirm (--yes)",
                losses,
            )
        ctx = _context()
        with RunnerLock(
            conninfo,
            tables.lock_key,
            runner_wait,
            application_name=f"sqlrunner lock ({ctx.client})",
            on_wait=lambda msg: emit(Event("waiting", msg)),
        ) as lock:
            ledger.create_tables(conn, tables)
            if ledger.read_rows(conn, tables) != rows:
                raise UsageError(
                    "the ledger changed while waiting for another sqlrunner; "
                    "nothing was rolled back: check 'status' and run rollback again"
                )
            executor = Executor(conn, lock, tables, policy, ctx, emit)
            done: list[FileResult] = []
            try:
                for index, script in enumerate(scripts):
                    done.append(executor.rollback(script, last=index == len(scripts) - 1))
            except Exception as exc:
                executor.finish_run("rollback", "failed", _ms(started), str(exc)[:2000])
                raise
            executor.finish_run("rollback", "ok", _ms(started), f"{len(done)} rolled back")
    return RollbackReport(shown, tuple(done), _ms(started), False, tuple(losses))


def seed(
    target: Target, sql_dir: str | os.PathLike[str] | None = None, **options: Any
) -> ApplyReport:
    """Apply new or changed seed files; refuses while forward files are pending."""
    current = status(
        target,
        sql_dir,
        wait=options.get("wait", 0),
        **{k: v for k, v in options.items() if k.startswith("ledger_")},
    )
    pending = [f.label for f in current.pending if f.kind == "forward"]
    if pending:
        raise UsageError(
            f"{len(pending)} forward file(s) pending ({pending[0]} first): "
            "seeds target the newest schema; run apply first"
        )
    return apply(target, sql_dir, seed=True, **options)
