"""Decide what would happen: files + ledger rows -> a plan. Pure: no I/O, no database.

``--dry-run`` is "print the plan"; the runner executes a plan and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from .errors import ChecksumMismatch, UsageError
from .files import Migration, MigrationSet


class LedgerRow(NamedTuple):
    """What the ledger says about one applied forward or seed file.

    A NamedTuple, not a dataclass: a no-op apply builds one per ledger row, and
    a tuple is several times cheaper to create.
    """

    kind: str
    version: int
    name: str
    checksum: str
    applied_at: datetime | None = None
    applied_by: str | None = None


@dataclass(frozen=True)
class FileState:
    """One line of ``status``: a file (or a ledger row whose file is gone) and its state."""

    kind: str
    version: int
    name: str
    state: str  # applied | pending | drifted | missing | changed
    applied_at: datetime | None = None
    applied_by: str | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.version:04d}_{self.name}"


class ApplyPlan(NamedTuple):
    """What ``apply`` would run, in order."""

    forward: tuple[Migration, ...]
    seeds: tuple[Migration, ...]
    verify: tuple[Migration, ...]
    seeds_deferred: bool

    @property
    def empty(self) -> bool:
        return not (self.forward or self.seeds)


def _index(rows: list[LedgerRow]) -> dict[tuple[str, int], LedgerRow]:
    return {(row.kind, row.version): row for row in rows}


def file_states(files: MigrationSet, rows: list[LedgerRow]) -> tuple[FileState, ...]:
    """Every forward and seed file, plus ledger rows whose file vanished, in version order."""
    ledger = _index(rows)
    states: list[FileState] = []
    for kind, migrations in (("forward", files.forward), ("seed", files.seed)):
        present = {m.version for m in migrations}
        for m in migrations:
            row = ledger.get((kind, m.version))
            if row is None:
                states.append(FileState(kind, m.version, m.name, "pending"))
                continue
            if row.checksum == m.checksum and row.name == m.name:
                state = "applied"
            else:
                state = "drifted" if kind == "forward" else "changed"
            states.append(FileState(kind, m.version, m.name, state, row.applied_at, row.applied_by))
        for row in rows:
            if row.kind == kind and row.version not in present:
                states.append(
                    FileState(
                        kind, row.version, row.name, "missing", row.applied_at, row.applied_by
                    )
                )
    states.sort(key=lambda s: (s.kind != "forward", s.version))
    return tuple(states)


def drift(states: tuple[FileState, ...]) -> tuple[FileState, ...]:
    """Applied forward files that changed or vanished: running anything on top would lie."""
    return tuple(s for s in states if s.kind == "forward" and s.state in ("drifted", "missing"))


def refuse_drift(files: MigrationSet, rows: list[LedgerRow]) -> None:
    """Applied forward files that changed or vanished stop the run before anything runs."""
    on_disk = {m.version: (m.name, m.checksum) for m in files.forward}
    if all(on_disk.get(r.version) == (r.name, r.checksum) for r in rows if r.kind == "forward"):
        return  # the common case, checked without building a FileState per file
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
    schema. Verify files run once the forward file of the same version is applied.
    """
    if to_version is not None and files.forward_by_version(to_version) is None:
        raise UsageError(f"--to {to_version}: no forward file with version {to_version:04d}")
    ledger = _index(rows)
    pending_all = [m for m in files.forward if ("forward", m.version) not in ledger]
    pending = [m for m in pending_all if to_version is None or m.version <= to_version]
    at_head = len(pending) == len(pending_all)
    seeds: list[Migration] = []
    if seed and at_head:
        for m in files.seed:
            row = ledger.get(("seed", m.version))
            if row is None or row.checksum != m.checksum:
                seeds.append(m)
    applied_versions = {v for (kind, v) in ledger if kind == "forward"}
    applied_versions.update(m.version for m in pending)
    checks = tuple(m for m in files.verify if m.version in applied_versions) if verify else ()
    return ApplyPlan(tuple(pending), tuple(seeds), checks, seeds_deferred=seed and not at_head)


class RollbackStep(NamedTuple):
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
    """Applied forward versions newest first, stopping in front of an irreversible one."""
    applied = sorted((r for r in rows if r.kind == "forward"), key=lambda r: -r.version)
    if to_version is not None:
        if not any(r.version == to_version for r in applied):
            raise UsageError(f"--to {to_version}: version {to_version:04d} is not applied")
        targets = [r for r in applied if r.version > to_version]
    else:
        if steps is None or steps < 1:
            raise UsageError("--steps must be at least 1")
        targets = applied[:steps]
    plan: list[RollbackStep] = []
    for row in targets:
        rollback = files.rollback_for(row.version)
        if rollback is None:
            raise UsageError(
                f"forward/{row.version:04d}_{row.name}.sql is irreversible (no "
                f"rollback/{row.version:04d}_{row.name}.sql); rollback stops in front of it"
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
