"""Decide what would happen: files + ledger rows -> a plan. Pure: no I/O, no database.

``--dry-run`` is "print the plan"; the runner executes a plan and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from .errors import ChecksumMismatch, FutureVersions, UsageError
from .files import Migration, MigrationSet


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """What the ledger says about one applied forward or seed file."""

    kind: str
    version: int
    name: str
    checksum: str
    applied_at: datetime | None = None
    applied_by: str | None = None


@dataclass(frozen=True, slots=True)
class FileState:
    """One line of ``status``: a file (or a ledger row whose file is gone) and its state."""

    kind: str
    version: int
    name: str
    state: str  # applied | pending | failed | drifted | missing | future | changed
    applied_at: datetime | None = None
    applied_by: str | None = None
    # for a failed file: when its last attempt failed, by whom, and the one-line error
    failed_at: datetime | None = None
    failed_by: str | None = None
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.version:04d}_{self.name}"


@dataclass(frozen=True, slots=True)
class ApplyPlan:
    """What ``apply`` would run, in order."""

    forward: tuple[Migration, ...]
    seeds: tuple[Migration, ...]
    verify: tuple[Migration, ...]
    seeds_deferred: bool
    future: tuple[LedgerRow, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.forward or self.seeds)


def _index(rows: list[LedgerRow]) -> dict[tuple[str, int], LedgerRow]:
    return {(row.kind, row.version): row for row in rows}


@dataclass(frozen=True, slots=True)
class Failure:
    """The newest history row of a file, when it says the file failed."""

    kind: str
    version: int
    checksum: str | None
    at: datetime
    by: str
    detail: str


def file_states(
    files: MigrationSet, rows: list[LedgerRow], failures: Sequence[Failure] = ()
) -> tuple[FileState, ...]:
    """Every forward and seed file, plus ledger rows whose file is not here, in version order.

    A ledger row without its file is "future" when its version is newer than every
    local forward file (a newer release applied it during a rolling deploy), else
    "missing" (a gap inside the local range: a file was deleted). A pending or
    changed file whose last attempt failed is "failed" until it succeeds.
    """
    ledger = _index(rows)
    failed = {(f.kind, f.version): f for f in failures}
    newest_local = max((m.version for m in files.forward), default=None)
    states: list[FileState] = []
    for kind, migrations in (("forward", files.forward), ("seed", files.seed)):
        present = {m.version for m in migrations}
        for m in migrations:
            row = ledger.get((kind, m.version))
            if row is None:
                state = "pending"
            elif row.checksum == m.checksum and row.name == m.name:
                state = "applied"
            else:
                state = "drifted" if kind == "forward" else "changed"
            failure = failed.get((kind, m.version))
            if failure is not None and state in ("pending", "changed"):
                states.append(_failed(m, row, failure))
            elif row is None:
                states.append(FileState(kind, m.version, m.name, state))
            else:
                states.append(
                    FileState(kind, m.version, m.name, state, row.applied_at, row.applied_by)
                )
        for row in rows:
            if row.kind == kind and row.version not in present:
                state = "missing"
                if kind == "forward" and _is_future(row.version, newest_local):
                    state = "future"
                states.append(
                    FileState(kind, row.version, row.name, state, row.applied_at, row.applied_by)
                )
    states.sort(key=lambda s: (s.kind != "forward", s.version))
    return tuple(states)


def _failed(m: Migration, row: LedgerRow | None, failure: Failure) -> FileState:
    error = failure.detail.split(" | ", 1)[0]
    if failure.checksum is not None and failure.checksum != m.checksum:
        error += " (the file changed since)"
    return FileState(
        m.kind,
        m.version,
        m.name,
        "failed",
        row.applied_at if row else None,
        row.applied_by if row else None,
        failure.at,
        failure.by,
        error,
    )


def _is_future(version: int, newest_local: int | None) -> bool:
    return newest_local is None or version > newest_local


def future(files: MigrationSet, rows: list[LedgerRow]) -> tuple[LedgerRow, ...]:
    """Applied forward versions newer than every local forward file, oldest first."""
    newest_local = max((m.version for m in files.forward), default=None)
    return tuple(
        sorted(
            (r for r in rows if r.kind == "forward" and _is_future(r.version, newest_local)),
            key=lambda r: r.version,
        )
    )


def future_note(rows: Sequence[LedgerRow]) -> str:
    """What apply and status say when a newer release got here first."""
    listing = ", ".join(f"{r.version:04d}_{r.name}" for r in rows)
    return f"future: {listing} applied by a newer release (not in this sql/)"


def drift(states: tuple[FileState, ...]) -> tuple[FileState, ...]:
    """Applied forward files that changed or vanished: running anything on top would lie."""
    return tuple(s for s in states if s.kind == "forward" and s.state in ("drifted", "missing"))


def refuse_drift(files: MigrationSet, rows: list[LedgerRow], *, strict: bool = False) -> None:
    """Applied forward files that changed or vanished stop the run before anything runs.

    Future versions (applied by a newer release) are tolerated, as Flyway does, unless
    ``strict``: a rolling deploy restarts old replicas after a new one migrated.
    """
    on_disk = {m.version: (m.name, m.checksum) for m in files.forward}
    if all(on_disk.get(r.version) == (r.name, r.checksum) for r in rows if r.kind == "forward"):
        return  # the common case, checked without building a FileState per file
    if strict:
        ahead = future(files, rows)
        if ahead:
            raise FutureVersions(
                f"{future_note(ahead)} | nothing was run; strict refuses "
                "future versions: deploy the newer release, or run without strict",
                [f"forward/{r.version:04d}_{r.name}" for r in ahead],
            )
    drifted = drift(file_states(files, rows))
    if drifted:
        listing = ", ".join(f"{s.label} ({s.state})" for s in drifted)
        raise ChecksumMismatch(
            f"applied files changed since they ran: {listing} | nothing was run; restore the "
            "file(s), or after review run 'sqlrunner repair --accept VERSION' "
            "('--forget VERSION' for a removed file)",
            [s.label for s in drifted],
        )


def plan_apply(
    files: MigrationSet,
    rows: list[LedgerRow],
    *,
    to_version: int | None = None,
    seed: bool = True,
    verify: bool = True,
) -> ApplyPlan:
    """Pending forward files (ascending, up to ``to_version``), then new or changed seeds.

    Seeds run only when every forward file is applied: they target the newest
    schema. With future versions applied, the newest schema is a newer release's,
    whose seeds may differ: this release's seeds wait (else two releases would
    re-seed each other's version back and forth). Verify files run once the
    forward file of the same version is applied.
    """
    if to_version is not None and files.forward_by_version(to_version) is None:
        raise UsageError(f"--to {to_version}: no forward file with version {to_version:04d}")
    ledger = _index(rows)
    pending_all = [m for m in files.forward if ("forward", m.version) not in ledger]
    pending = [m for m in pending_all if to_version is None or m.version <= to_version]
    ahead = future(files, rows) if rows else ()
    at_head = len(pending) == len(pending_all) and not ahead
    seeds: list[Migration] = []
    if seed and at_head:
        for m in files.seed:
            row = ledger.get(("seed", m.version))
            if row is None or row.checksum != m.checksum:
                seeds.append(m)
    applied_versions = {v for (kind, v) in ledger if kind == "forward"}
    applied_versions.update(m.version for m in pending)
    checks = tuple(m for m in files.verify if m.version in applied_versions) if verify else ()
    return ApplyPlan(
        tuple(pending), tuple(seeds), checks, seeds_deferred=seed and not at_head, future=ahead
    )


@dataclass(frozen=True, slots=True)
class RollbackStep:
    """One applied forward version and the rollback file that undoes it."""

    forward: LedgerRow
    rollback: Migration


def plan_rollback(
    files: MigrationSet,
    rows: list[LedgerRow],
    *,
    steps: int | None = 1,
    to_version: int | None = None,
) -> tuple[RollbackStep, ...]:
    """Applied forward versions newest first, stopping in front of an irreversible one.

    ``to_version=0`` is "everything reversible" (``migrate down``, ``sqitch revert``):
    it undoes every version above the newest irreversible one, which stays applied
    (``stopped_in_front_of`` says so). ``--steps N`` and ``--to V`` (V > 0) ask for one
    exact state: when an irreversible file is in the way, nothing runs.
    """
    applied = sorted((r for r in rows if r.kind == "forward"), key=lambda r: -r.version)
    everything = to_version == 0
    if to_version is not None:
        if not everything and not any(r.version == to_version for r in applied):
            raise UsageError(f"--to {to_version}: version {to_version:04d} is not applied")
        targets = [r for r in applied if r.version > to_version]
    else:
        if steps is None or steps < 1:
            raise UsageError("--steps must be at least 1")
        targets = applied[:steps]
    plan: list[RollbackStep] = []
    for row in targets:
        if files.forward_by_version(row.version) is None:
            raise UsageError(
                f"version {row.version:04d} ({row.name}) was applied by a newer release and "
                "this sql/ has no file for it: roll it back with the release that has its files"
            )
        rollback = files.rollback_for(row.version)
        if rollback is None:
            if everything:
                break
            raise UsageError(
                _irreversible(row)
                + (f" after {len(plan)} step(s): use --steps {len(plan)}" if plan else "")
            )
        plan.append(RollbackStep(row, rollback))
    return tuple(plan)


def out_of_order(pending: Sequence[Migration], rows: Sequence[LedgerRow]) -> tuple[Migration, ...]:
    """Pending forward files older than the newest applied one: a branch merged after a
    newer file ran. They apply in version order like any pending file, but the order
    differs from what the other databases saw, so it is said (and refused when strict)."""
    newest = max((r.version for r in rows if r.kind == "forward"), default=None)
    if newest is None:
        return ()
    return tuple(m for m in pending if m.kind == "forward" and m.version < newest)


def out_of_order_note(late: Sequence[Migration], rows: Sequence[LedgerRow]) -> str:
    newest = max(r.version for r in rows if r.kind == "forward")
    names = ", ".join(m.display_path for m in late)
    return f"out of order: {names} older than the applied {newest:04d}"


def _irreversible(row: LedgerRow) -> str:
    return (
        f"forward/{row.version:04d}_{row.name}.sql is irreversible (no "
        f"rollback/{row.version:04d}_{row.name}.sql); rollback stops in front of it"
    )


def stopped_in_front_of(rows: list[LedgerRow], plan: tuple[RollbackStep, ...]) -> str | None:
    """For ``--to 0``: the irreversible file the plan stopped in front of, as a note."""
    floor = plan[-1].forward.version if plan else None
    below = [
        r
        for r in rows
        if r.kind == "forward" and r.version > 0 and (floor is None or r.version < floor)
    ]
    if not below:
        return None
    return _irreversible(max(below, key=lambda r: r.version)) + ": it stays applied"
