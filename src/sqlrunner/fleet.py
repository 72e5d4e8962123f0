"""Fleets: one run over many databases (or tenant schemas), each with every guarantee of one.

    from sqlrunner import fleet
    report = fleet.apply(fleet.read_targets("targets.toml"), "sql", parallel=8, canary=1)

Every target goes through ``sqlrunner.apply`` (or ``status``) unchanged: its own
connection, runner lock, ledger, lock timeouts and retries, verify. The fleet adds
only scheduling: a pool of ``parallel`` threads, at most ``per_server`` targets at
once on one server (host:port), canaries first, a failure policy, and shards for
spreading a fleet over machines (the targets' own runner locks keep overlapping
slices safe, so no coordinator is needed). The set is loaded once and shared.

A target whose batched file stops on its ``budget`` (BackfillPending) is ``pending``,
not failed: every batch it did is committed, and the next run continues it.

Like the rest of the library it never prints: ``on_event`` gets a FleetEvent in the
caller's thread as each target finishes, and the outcome is the FleetReport.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

import psycopg

from . import api
from .errors import (
    BackfillPending,
    ConnectionFailed,
    MigrationFailed,
    SqlRunnerError,
    UsageError,
)
from .files import MigrationSet, SqlDir, load_files
from .fleet_report import (
    FleetEvent,
    FleetListener,
    FleetReport,
    State,
    TargetResult,
    TargetStatus,
    result_line,
    summary,
)
from .fleet_targets import (
    FleetTarget,
    InvalidTargets,
    Shard,
    default_name,
    parsed,
    read_targets,
    server_of,
)
from .report import Event, elapsed_ms

__all__ = [
    "FleetEvent",
    "FleetReport",
    "FleetTarget",
    "InvalidTargets",
    "Shard",
    "TargetResult",
    "TargetStatus",
    "apply",
    "read_targets",
    "result_line",
    "status",
    "summary",
]

log = logging.getLogger("sqlrunner")
# Failures of the set itself, the same on every target: the first one stops the run (exit 2).
# OutOfOrder, FutureVersions, drift depend on each target's ledger: they are its own failure.
SET_ERRORS = frozenset({"InvalidMigrationSet"})
R = TypeVar("R", TargetResult, TargetStatus)
# what apply and status take per target; the fleet passes on_event itself
APPLY_OPTIONS = frozenset(
    {
        "to",
        "seed",
        "verify",
        "dry_run",
        "strict",
        "strict_order",
        "lock_timeout",
        "lock_retries",
        "wait",
        "runner_wait",
        "ledger_schema",
        "ledger_table",
        "budget",
        "wait_replicas",
        "max_replica_lag",
        "replica_wait",
    }
)
# apply's ``replicas`` (standbys pg_stat_replication does not show) is not among them:
# a standby follows one server, so one list cannot be right for every target.
REPLICAS_REFUSED = (
    "fleet.apply does not take replicas: a standby follows one server, so one list cannot "
    "serve every target (wait_replicas and max_replica_lag watch each target's own standbys)"
)
# what a canary's verify takes of them
VERIFY_OPTIONS = frozenset({"wait", "ledger_schema", "ledger_table"})


@dataclass(frozen=True, slots=True)
class Pool:
    """How many targets run at once, in all and on one server."""

    parallel: int = 4
    per_server: int | None = None

    def __post_init__(self) -> None:
        if self.parallel < 1:
            raise UsageError(f"parallel must be at least 1 (got {self.parallel})")
        if self.per_server is not None and self.per_server < 1:
            raise UsageError(f"per_server must be at least 1 (got {self.per_server})")


def apply(
    targets: Iterable[FleetTarget | str],
    sql_dir: SqlDir = None,
    *,
    parallel: int = 4,
    per_server: int | None = None,
    canary: int = 0,
    on_error: Literal["stop", "continue"] = "continue",
    max_failures: int | None = None,
    shard: Shard | str | None = None,
    on_event: FleetListener | None = None,
    **apply_options: Any,
) -> FleetReport:
    """``sqlrunner.apply`` on every target; a failure is that target's result, not a raise.

    ``canary=K``: the first K targets are applied and verified before any other
    starts; if one fails, no other starts. ``on_error="stop"`` or ``max_failures=K``:
    after the first (K-th) failure no new target starts, those in flight finish.
    A target stopped by ``budget`` is pending: no failure, exit 6 (see FleetReport).
    An invalid migration set raises InvalidMigrationSet before any target is touched.
    """
    started = time.monotonic()
    pool = Pool(parallel, per_server)
    if "replicas" in apply_options:
        raise UsageError(REPLICAS_REFUSED)
    unknown = sorted(set(apply_options) - APPLY_OPTIONS)
    if unknown:
        raise UsageError(f"fleet.apply does not take {', '.join(unknown)}")
    if on_error not in ("stop", "continue"):
        raise UsageError(f"on_error must be 'stop' or 'continue' (got {on_error!r})")
    if canary < 0 or (max_failures is not None and max_failures < 1):
        raise UsageError("canary must be 0 or more, max_failures 1 or more")
    limit = 1 if on_error == "stop" else max_failures
    chosen, slice_ = _select(targets, shard)
    files = load_files(sql_dir)
    verify = bool(apply_options.get("verify", True)) and not apply_options.get("dry_run")

    def work(target: FleetTarget, is_canary: bool) -> TargetResult:
        return _apply_one(target, files, apply_options, canary=is_canary and verify)

    dry_run = bool(apply_options.get("dry_run"))
    run = _Run(pool, chosen, on_event, dry_run)
    run.each(chosen[:canary], lambda t: work(t, True), limit=1, phase="canary")
    if run.stopped is None:
        run.each(chosen[canary:], lambda t: work(t, False), limit=limit)
    results = tuple(
        run.results.get(t.name) or TargetResult(t.name, t.shown, t.schema, "not started", None)
        for t in chosen
    )
    return FleetReport(
        "apply", results, elapsed_ms(started), slice_, run.stopped, run.set_error, dry_run
    )


def status(
    targets: Iterable[FleetTarget | str],
    sql_dir: SqlDir = None,
    *,
    parallel: int = 4,
    per_server: int | None = None,
    shard: Shard | str | None = None,
    wait: float = 0,
    ledger_schema: str = "public",
    ledger_table: str = "sqlrunner_ledger",
    on_event: FleetListener | None = None,
) -> FleetReport:
    """Per target: up to date, pending (how many), drifted, or unreachable; never raises
    for one target (an invalid migration set raises before any is read)."""
    started = time.monotonic()
    pool = Pool(parallel, per_server)
    chosen, slice_ = _select(targets, shard)
    files = load_files(sql_dir)

    def work(target: FleetTarget) -> TargetStatus:
        return _status_one(target, files, wait, target.schema or ledger_schema, ledger_table)

    run = _Run(pool, chosen, on_event)
    run.each(chosen, work, limit=None)
    results = tuple(run.results[t.name] for t in chosen if t.name in run.results)
    return FleetReport("status", results, elapsed_ms(started), slice_, run.stopped, run.set_error)


def _select(
    targets: Iterable[FleetTarget | str], shard: Shard | str | None
) -> tuple[list[FleetTarget], str | None]:
    """The targets of this run (a shard's slice) and the shard as shown, names unique."""
    chosen = [t if isinstance(t, FleetTarget) else FleetTarget(default_name(t), t) for t in targets]
    names = Counter(t.name for t in chosen)
    twice = sorted(name for name, n in names.items() if n > 1)
    if twice:
        raise InvalidTargets(f"target(s) listed twice: {', '.join(twice[:5])}")
    if not chosen:
        raise InvalidTargets("no targets")
    if shard is None:
        return chosen, None
    slice_ = Shard.parse(shard) if isinstance(shard, str) else shard
    return [t for t in chosen if slice_.holds(t)], str(slice_)


class _Run:
    """The scheduler: starts targets as slots free up, collects results, stops on a policy.

    It runs in the caller's thread; the workers only run one target each, so events
    reach ``on_event`` in the caller's thread, in the order targets finish.
    """

    def __init__(
        self,
        pool: Pool,
        targets: Sequence[FleetTarget],
        on_event: FleetListener | None,
        dry_run: bool = False,
    ) -> None:
        self.pool = pool
        self.dry_run = dry_run
        self.total = len(targets)
        # host:port of each target, parsed once (InvalidTargets before anything starts)
        self.servers = {t.name: server_of(parsed(t.dsn)) for t in targets}
        self.on_event = on_event
        self.results: dict[str, Any] = {}
        self.failures = 0
        self.stopped: str | None = None
        self.set_error: str | None = None

    def each(
        self,
        targets: Sequence[FleetTarget],
        work: Callable[[FleetTarget], R],
        limit: int | None,
        phase: str = "",
    ) -> None:
        """Run ``work`` on every target (as pool and per-server limits allow) until ``limit``
        failures; a Ctrl-C starts nothing more and waits for those in flight."""
        waiting = list(targets)
        running: dict[Future[R], FleetTarget] = {}
        busy: Counter[str] = Counter()
        with ThreadPoolExecutor(self.pool.parallel, thread_name_prefix="sqlrunner-fleet") as ex:
            try:
                while waiting or running:
                    if self.stopped is None:
                        for target in self._startable(waiting, busy, len(running)):
                            busy[self.servers[target.name]] += 1
                            running[ex.submit(work, target)] = target
                    if not running:
                        break
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        busy[self.servers[running.pop(future).name]] -= 1
                        self._finished(future.result(), limit, phase)
            except KeyboardInterrupt:  # Ctrl-C, or SIGTERM as the CLI raises it
                # A thread cannot be interrupted: the targets in flight finish (each file
                # all or nothing either way), are reported, and then the interrupt goes on.
                self._stop("interrupted: no new target starts, those in flight finish")
                for future in as_completed(running):
                    self._finished(future.result(), None, phase)
                raise

    def _startable(
        self, waiting: list[FleetTarget], busy: Counter[str], running: int
    ) -> list[FleetTarget]:
        """The next targets in list order that fit the free slots (taken off ``waiting``):
        a full server's targets wait without holding up the other servers'."""
        chosen: list[FleetTarget] = []
        room = self.pool.parallel - running
        per_server = self.pool.per_server
        taken = Counter(busy)
        for target in waiting:
            if len(chosen) >= room:
                break
            server = self.servers[target.name]
            if per_server is None or taken[server] < per_server:
                chosen.append(target)
                taken[server] += 1
        for target in chosen:
            waiting.remove(target)
        return chosen

    def _finished(self, result: R, limit: int | None, phase: str) -> None:
        self.results[result.name] = result
        line = result_line(result, len(self.results), self.total, self.dry_run)
        failed = isinstance(result, TargetResult) and result.outcome == "failed"
        whole_set = isinstance(result, TargetResult) and result.error_kind in SET_ERRORS
        level = logging.WARNING if failed else logging.INFO
        log.log(level, "%s", line, extra={"sqlrunner_event": "target_finished"})
        self._emit(FleetEvent("target_finished", line, len(self.results), self.total, result))
        self.failures += failed
        if failed and whole_set and self.stopped is None:
            self.set_error = result.error
            self._stop(f"{result.name} found an error in the migration set itself")
        elif failed and phase == "canary" and self.stopped is None:
            self._stop(f"canary {result.name} failed, so no other target was started")
        elif failed and limit is not None and self.failures >= limit and self.stopped is None:
            self._stop(f"{result.name} failed ({self.failures} failure(s), the limit is {limit})")

    def _stop(self, why: str) -> None:
        self.stopped = why
        self._emit(FleetEvent("stopped", f"stopped: {why}", len(self.results), self.total))

    def _emit(self, event: FleetEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)


def _apply_one(
    target: FleetTarget, files: MigrationSet, options: dict[str, Any], *, canary: bool
) -> TargetResult:
    """One target through ``sqlrunner.apply``; a canary is verified even when up to date
    (not when pending: its verify waits, like its seeds, until the backfill is done)."""
    started = time.monotonic()
    applied: list[str] = []
    seeded: list[str] = []
    warnings: list[str] = []

    def listen(event: Event) -> None:  # what committed, even when a later file fails
        if event.kind == "file_finished" and event.result is not None:
            (seeded if event.result.kind == "seed" else applied).append(event.result.label)
        elif event.kind == "warning":
            warnings.append(event.message)

    own = {**options, "ledger_schema": target.schema or options.get("ledger_schema", "public")}
    result = TargetResult(target.name, target.shown, target.schema, "ok", 0, canary=canary)
    try:
        report = api.apply(target.conninfo, files, on_event=listen, **own)
        applied[:] = [r.label for r in report.applied]  # in a dry run: what would run
        seeded[:] = [r.label for r in report.seeded]
        if canary and report.verification is None:
            api.verify(target.conninfo, files, **{k: own[k] for k in VERIFY_OPTIONS & own.keys()})
    except BackfillPending as exc:
        result = replace(
            result,
            outcome="pending",
            exit_code=exc.exit_code,
            error=str(exc),
            error_kind=type(exc).__name__,
        )
    except Exception as exc:
        code, message, where = _failure(exc)
        result = replace(
            result,
            outcome="failed",
            exit_code=code,
            error=message,
            error_kind=type(exc).__name__,
            location=where,
        )
    return replace(
        result,
        applied=tuple(applied),
        seeded=tuple(seeded),
        warnings=tuple(warnings),
        duration_ms=elapsed_ms(started),
    )


def _status_one(
    target: FleetTarget, files: MigrationSet, wait: float, ledger_schema: str, ledger_table: str
) -> TargetStatus:
    started = time.monotonic()
    try:
        report = api.status(
            target.conninfo,
            files,
            wait=wait,
            ledger_schema=ledger_schema,
            ledger_table=ledger_table,
        )
    except Exception as exc:
        code, message, _ = _failure(exc)
        return TargetStatus(
            target.name,
            target.shown,
            target.schema,
            "unreachable" if isinstance(exc, ConnectionFailed) else "failed",
            exit_code=code,
            error=message,
            duration_ms=elapsed_ms(started),
        )
    drifted, pending = len(report.drifted), len(report.pending)
    state: State = "drifted" if drifted else "pending" if pending else "up to date"
    code = {"drifted": 1, "pending": 6}.get(state, 0)
    return TargetStatus(
        target.name,
        target.shown,
        target.schema,
        state,
        pending,
        drifted,
        code,
        duration_ms=elapsed_ms(started),
    )


def _failure(exc: Exception) -> tuple[int, str, str | None]:
    """(exit code, one-line message, path:line:column) as `sqlrunner apply` reports them.

    Anything else than these is a bug in sqlrunner: it is raised, not hidden in a result.
    """
    if isinstance(exc, MigrationFailed):
        return exc.exit_code, str(exc), f"{exc.file}:{exc.line}:{exc.column}"
    if isinstance(exc, SqlRunnerError):
        return exc.exit_code, str(exc), None
    if isinstance(exc, psycopg.OperationalError):
        return 3, f"lost the database connection: {' '.join(str(exc).split())}", None
    if isinstance(exc, psycopg.Error):
        return 4, f"database error: {' '.join(str(exc).split())}", None
    raise exc
