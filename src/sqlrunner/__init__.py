"""sqlrunner: a plain-SQL migration runner for PostgreSQL.

    import sqlrunner
    report = sqlrunner.apply(dsn, "sql")   # safe from several replicas at once

The library never prints and never exits; it logs to ``logging.getLogger("sqlrunner")``
and raises the SqlRunnerError subclasses below. The command line lives in
``sqlrunner.cli`` and is not imported here: a service that imports sqlrunner
does not load click.
"""

from ._version import __version__
from .api import apply, rollback, seed, status, verify
from .errors import (
    AppliedElsewhere,
    BackfillPending,
    ChecksumMismatch,
    ConnectionFailed,
    ConnectionLost,
    DataLossRefused,
    FutureVersions,
    InvalidMigrationSet,
    LockLost,
    LockTimeout,
    MigrationFailed,
    RunnerBusy,
    SqlRunnerError,
    UsageError,
    VerificationFailed,
)
from .maintenance import history, repair
from .report import (
    ApplyReport,
    CheckResult,
    FileResult,
    Report,
    RollbackReport,
    StatusReport,
    VerifyReport,
)

__all__ = [
    "AppliedElsewhere",
    "ApplyReport",
    "BackfillPending",
    "CheckResult",
    "ChecksumMismatch",
    "ConnectionFailed",
    "ConnectionLost",
    "DataLossRefused",
    "FileResult",
    "FutureVersions",
    "InvalidMigrationSet",
    "LockLost",
    "LockTimeout",
    "MigrationFailed",
    "Report",
    "RollbackReport",
    "RunnerBusy",
    "SqlRunnerError",
    "StatusReport",
    "UsageError",
    "VerificationFailed",
    "VerifyReport",
    "__version__",
    "apply",
    "history",
    "repair",
    "rollback",
    "seed",
    "status",
    "verify",
]
