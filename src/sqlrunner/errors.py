"""Every failure sqlrunner reports, each carrying the CLI exit code it maps to.

The library raises these; the CLI turns them into one line on stderr and the
exit code, in exactly one place (``cli.main``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class SqlRunnerError(Exception):
    """Base class: ``str(err)`` is the one-line message a user sees."""

    exit_code = 2


class InvalidMigrationSet(SqlRunnerError):
    """The sql/ folder breaks a file rule; raised before anything runs."""

    exit_code = 2


class UsageError(SqlRunnerError):
    """A request that cannot be honoured as asked (unknown version, irreversible step)."""

    exit_code = 2


class DataLossRefused(UsageError):
    """A rollback would drop rows that are not seed data and was not confirmed."""

    def __init__(self, message: str, losses: Sequence[str]) -> None:
        super().__init__(message)
        self.losses = tuple(losses)


class ChecksumMismatch(SqlRunnerError):
    """Applied files were edited or removed since they ran (drift)."""

    exit_code = 1

    def __init__(self, message: str, files: Sequence[str]) -> None:
        super().__init__(message)
        self.files = tuple(files)


class VerificationFailed(SqlRunnerError):
    """A verify check returned ok = false or raised."""

    exit_code = 1

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report


class ConnectionFailed(SqlRunnerError):
    """The database could not be reached (after ``wait`` seconds of retries)."""

    exit_code = 3


@dataclass(frozen=True)
class SqlErrorDetail:
    """What PostgreSQL said about a failing statement, located in its file."""

    path: str
    line: int
    column: int
    sqlstate: str
    message: str
    detail: str | None
    hint: str | None
    statement: str

    def describe(self) -> str:
        parts = [f"{self.path}:{self.line}:{self.column}: SQLSTATE {self.sqlstate}: {self.message}"]
        if self.detail:
            parts.append(f"DETAIL: {self.detail}")
        if self.hint:
            parts.append(f"HINT: {self.hint}")
        parts.append(f"statement: {self.statement}")
        return " | ".join(parts)


class MigrationFailed(SqlRunnerError):
    """A statement in a file failed; the file's transaction was rolled back."""

    exit_code = 4

    def __init__(self, error: SqlErrorDetail, next_step: str) -> None:
        super().__init__(f"{error.describe()} | {next_step}")
        self.error = error
        self.file = error.path
        self.line = error.line
        self.column = error.column
        self.sqlstate = error.sqlstate


class LockTimeout(SqlRunnerError):
    """Gave up waiting for a table lock, or for another runner, after bounded retries."""

    exit_code = 5

    def __init__(self, message: str, blockers: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.blockers = tuple(blockers)


class RunnerBusy(LockTimeout):
    """Another sqlrunner held the runner lock for longer than we agreed to wait."""


class AdoptionRefused(UsageError):
    """Another tool's ledger (or a hand-built schema) cannot be taken over safely as it is."""

    def __init__(self, message: str, reasons: Sequence[str]) -> None:
        super().__init__(message)
        self.reasons = tuple(reasons)
