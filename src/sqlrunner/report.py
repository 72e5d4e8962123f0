"""Report values returned by the library, and their text and JSON renderings."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from .errors import Problem
from .plan import FileState
from .position import BackfillPosition


@dataclass(frozen=True)
class FileResult:
    """One file the run executed (or, in a dry run, would execute)."""

    kind: str
    version: int
    name: str
    action: str  # applied | seeded | rolled back | would apply | would seed | would roll back
    duration_ms: int = 0
    attempts: int = 1
    statements: int = 0
    no_transaction: bool = False

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.version:04d}_{self.name}.sql"


@dataclass(frozen=True)
class CheckResult:
    """One row of a verify file: ``(check, ok, detail)``."""

    file: str
    check: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class VerifyReport:
    target: str
    checks: tuple[CheckResult, ...]
    duration_ms: int = 0

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if not c.ok)

    def failure_message(self) -> str:
        failed = "; ".join(f"{c.check}: {c.detail}" for c in self.failed)
        return f"verification failed ({len(self.failed)} of {len(self.checks)} checks): {failed}"


@dataclass(frozen=True)
class ApplyReport:
    target: str
    applied: tuple[FileResult, ...]
    seeded: tuple[FileResult, ...]
    verification: VerifyReport | None
    duration_ms: int
    dry_run: bool = False
    notes: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.applied or self.seeded) and not self.dry_run


@dataclass(frozen=True)
class RollbackReport:
    target: str
    rolled_back: tuple[FileResult, ...]
    duration_ms: int
    dry_run: bool = False
    data_at_risk: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class StatusReport:
    target: str
    files: tuple[FileState, ...]
    notes: tuple[str, ...] = field(default=())
    # batched files part-way through their key range: where the next apply resumes
    backfills: tuple[BackfillPosition, ...] = ()

    def _with(self, *states: str) -> tuple[FileState, ...]:
        return tuple(f for f in self.files if f.state in states)

    @property
    def pending(self) -> tuple[FileState, ...]:
        """What apply would run; with future versions applied, seeds wait for the newer
        release (their newest schema is its schema), so they are not pending here."""
        waiting = self._with("pending", "changed", "failed")
        return tuple(f for f in waiting if f.kind == "forward") if self.future else waiting

    @property
    def failed(self) -> tuple[FileState, ...]:
        """Pending files whose last attempt failed (also counted as pending)."""
        return self._with("failed")

    @property
    def future(self) -> tuple[FileState, ...]:
        """Versions a newer release applied: not drift, not pending for this release."""
        return self._with("future")

    @property
    def drifted(self) -> tuple[FileState, ...]:
        return tuple(f for f in self._with("drifted", "missing") if f.kind == "forward")

    @property
    def up_to_date(self) -> bool:
        return not self.pending and not self.drifted


@dataclass(frozen=True, slots=True)
class CheckReport:
    """``check``: every problem of a migration set, found without a database."""

    sql_dir: str
    files: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def elapsed_ms(started: float) -> int:
    """Milliseconds since ``started`` (a time.monotonic() reading), as reports show them."""
    return int((time.monotonic() - started) * 1000)


Report = ApplyReport | RollbackReport | StatusReport | VerifyReport | CheckReport


SCHEMA_VERSION = 1  # of every --json document: raised when a field changes meaning or goes


def when(at: datetime) -> str:
    """The one timestamp format of sqlrunner's output: ISO 8601 with the UTC offset."""
    return at.isoformat(timespec="seconds")


def to_dict(report: Report) -> dict[str, Any]:
    """The ``--json`` document: the dataclass fields plus the derived verdicts."""
    data = asdict(report)
    data["report"] = type(report).__name__.removesuffix("Report").lower()
    data["schema_version"] = SCHEMA_VERSION
    if isinstance(report, VerifyReport | CheckReport):
        data["ok"] = report.ok
    if isinstance(report, StatusReport):
        data["up_to_date"] = report.up_to_date
        data["pending"] = [f.label for f in report.pending]
        data["drifted"] = [f.label for f in report.drifted]
        data["failed"] = [f.label for f in report.failed]
        data["future"] = [f.label for f in report.future]
    if isinstance(report, ApplyReport) and report.verification is not None:
        data["verification"]["ok"] = report.verification.ok
    return data


def to_json(report: Report) -> str:
    return json.dumps(to_dict(report), default=json_default, indent=2)


def json_default(value: object) -> str:
    if isinstance(value, datetime):
        return when(value)
    return str(value)


def render_text(report: Report, files: bool = True) -> str:
    """What a person reads on the terminal after the run; ``files=False`` leaves out the
    line of each file run, when the progress printed it already (each fact once)."""
    if isinstance(report, StatusReport):
        return _status_text(report)
    if isinstance(report, VerifyReport):
        return _verify_text(report)
    if isinstance(report, RollbackReport):
        return _rollback_text(report, files)
    if isinstance(report, CheckReport):
        return _check_text(report)
    return _apply_text(report, files)


def _when(state: FileState) -> str:
    if state.failed_at is not None:
        return f"  {state.failed_at:%Y-%m-%d %H:%M:%S%z} by {state.failed_by}: {state.error}"
    if state.applied_at is None:
        return ""
    return f"  {when(state.applied_at)} by {state.applied_by}"


def _status_text(report: StatusReport) -> str:
    positions = {p.version: p for p in report.backfills}
    lines = []
    for f in report.files:
        lines.append(f"{f.state:<8} {f.label}{_when(f)}")
        if f.kind == "forward" and f.version in positions and f.state in ("pending", "failed"):
            lines.append(f"{'':<8}   {positions[f.version].describe()}")
    if not report.files:
        lines.append("no migration files")
    summary = (
        "up to date"
        if report.up_to_date
        else (
            f"{len(report.pending)} pending"
            + (f" ({len(report.failed)} failed)" if report.failed else "")
            + f", {len(report.drifted)} drifted or missing"
        )
    )
    return "\n".join([*lines, *report.notes, summary])


def _verify_text(report: VerifyReport) -> str:
    lines = [f"{'ok  ' if c.ok else 'FAIL'} {c.check}: {c.detail}" for c in report.checks]
    failed = len(report.failed)
    lines.append(
        f"verify: {len(report.checks)} checks, " + ("all ok" if not failed else f"{failed} failed")
    )
    return "\n".join(lines)


def _file_line(result: FileResult) -> str:
    retries = f", {result.attempts} attempts" if result.attempts > 1 else ""
    return f"{result.action} {result.label} ({result.duration_ms} ms{retries})"


def _apply_text(report: ApplyReport, files: bool = True) -> str:
    ran = (*report.applied, *report.seeded)
    lines = [_file_line(r) for r in ran] if files or report.dry_run else []
    lines.extend(report.notes)
    if report.dry_run:
        lines.append("dry run: nothing was changed" if ran else "dry run: nothing to do")
    elif not (report.applied or report.seeded):
        lines.append("nothing to apply: up to date")
    else:
        lines.append(
            f"applied {len(report.applied)} migration(s), {len(report.seeded)} seed(s) "
            f"in {report.duration_ms} ms"
        )
    if report.verification is not None:
        lines.append(_verify_text(report.verification))
    return "\n".join(lines)


def _rollback_text(report: RollbackReport, files: bool = True) -> str:
    lines = [_file_line(r) for r in report.rolled_back] if files or report.dry_run else []
    lines.extend(f"data at risk: {d}" for d in report.data_at_risk)
    lines.extend(report.notes)
    if report.dry_run:
        lines.append("dry run: nothing was changed")
    else:
        lines.append(
            f"rolled back {len(report.rolled_back)} migration(s) in {report.duration_ms} ms"
        )
    return "\n".join(lines)


def _check_text(report: CheckReport) -> str:
    lines = [p.describe() for p in report.problems]
    found = f"{len(report.problems)} problem(s)" if report.problems else "no problems"
    lines.append(f"check: {report.files} file(s) in {report.sql_dir}, {found}")
    return "\n".join(lines)
