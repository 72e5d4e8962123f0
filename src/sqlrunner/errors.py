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


@dataclass(frozen=True, slots=True)
class Problem:
    """One flaw of a migration set, located as precisely as it can be (no line: the whole file)."""

    path: str | None
    line: int | None
    column: int | None
    message: str
    sqlstate: str | None = None  # 42601 for a syntax error

    def describe(self) -> str:
        """``path:line:column: message``, the form editors and CI annotations understand."""
        where = self.path or ""
        if self.line is not None:
            where += f":{self.line}:{self.column}"
        message = f"SQLSTATE {self.sqlstate}: {self.message}" if self.sqlstate else self.message
        return f"{where}: {message}" if where else message


class InvalidMigrationSet(SqlRunnerError):
    """The sql/ folder breaks a file rule; raised before anything runs.

    ``problems`` lists every flaw found, not only the first.
    """

    exit_code = 2

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)

    @classmethod
    def listing(cls, problems: Sequence[Problem]) -> InvalidMigrationSet:
        """One line naming every problem, the only one as it is or ``N problems: a; b``."""
        text = "; ".join(p.describe() for p in problems)
        return cls(text if len(problems) == 1 else f"{len(problems)} problems: {text}", problems)


class UsageError(SqlRunnerError):
    """A request that cannot be honoured as asked (unknown version, irreversible step)."""

    exit_code = 2


class DataLossRefused(UsageError):
    """A rollback would drop rows that are not seed data and was not confirmed."""

    def __init__(self, message: str, losses: Sequence[str]) -> None:
        super().__init__(message)
        self.losses = tuple(losses)


class FutureVersions(UsageError):
    """``strict``: the database has versions newer than every local file (a newer release)."""

    def __init__(self, message: str, versions: Sequence[str]) -> None:
        super().__init__(message)
        self.versions = tuple(versions)


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


class ConnectionLost(ConnectionFailed):
    """The run's connection died mid-file (backend terminated, network gone, server down).

    Not a SQL error in the file: ``applied`` says what the ledger showed on
    reconnecting (True: the file's COMMIT went through; False: it did not;
    None: the ledger could not be read).
    """

    def __init__(self, message: str, file: str, applied: bool | None) -> None:
        super().__init__(message)
        self.file = file
        self.applied = applied


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
    context: str | None = None  # PostgreSQL's CONTEXT (PL/pgSQL line, SQL statement), one line

    def describe(self) -> str:
        parts = [f"{self.path}:{self.line}:{self.column}: SQLSTATE {self.sqlstate}: {self.message}"]
        if self.detail:
            parts.append(f"DETAIL: {self.detail}")
        if self.hint:
            parts.append(f"HINT: {self.hint}")
        if self.context:
            parts.append(f"CONTEXT: {self.context}")
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


class LockLost(LockTimeout):
    """The runner lock ended mid-run (its connection or backend died): the run stopped
    before anything committed without it."""


class AppliedElsewhere(LockLost):
    """Another runner recorded the same file first (one of the two had lost the runner
    lock); this run's copy was rolled back, so nothing ran twice."""


class OutOfOrder(InvalidMigrationSet):
    """Strict order: a pending forward file is older than the newest applied one."""

    def __init__(self, message: str, files: Sequence[str]) -> None:
        super().__init__(message)
        self.files = tuple(files)
class AdoptionRefused(UsageError):
    """Another tool's ledger (or a hand-built schema) cannot be taken over safely as it is."""

    def __init__(self, message: str, reasons: Sequence[str]) -> None:
        super().__init__(message)
        self.reasons = tuple(reasons)


class BackfillPending(SqlRunnerError):
    """A batched file stopped cleanly between batches when its time budget ran out; every
    batch done is committed with its progress row, and the next apply continues it."""

    exit_code = 6

    def __init__(self, message: str, file: str, next_key: int, hi_key: int) -> None:
        super().__init__(message)
        self.file = file
        self.next_key = next_key
        self.hi_key = hi_key
