"""sqlrunner: a plain-SQL migration runner for PostgreSQL.

    import sqlrunner
    report = sqlrunner.apply(dsn, "sql")   # safe from several replicas at once

The library never prints and never exits; it logs to ``logging.getLogger("sqlrunner")``
and raises the SqlRunnerError subclasses below.

Names are loaded on first use (PEP 562): ``python -m sqlrunner`` and a no-op
``apply`` import only the modules they need, which is most of what a process
that has nothing to apply pays beyond Python and psycopg.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .api import apply, rollback, seed, status, verify
    from .errors import (
        ChecksumMismatch,
        ConnectionFailed,
        DataLossRefused,
        FutureVersions,
        InvalidMigrationSet,
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

_HOME = {
    **dict.fromkeys(("apply", "rollback", "seed", "status", "verify"), "api"),
    **dict.fromkeys(
        (
            "ChecksumMismatch",
            "ConnectionFailed",
            "DataLossRefused",
            "FutureVersions",
            "InvalidMigrationSet",
            "LockTimeout",
            "MigrationFailed",
            "RunnerBusy",
            "SqlRunnerError",
            "UsageError",
            "VerificationFailed",
        ),
        "errors",
    ),
    **dict.fromkeys(("history", "repair"), "maintenance"),
    **dict.fromkeys(
        (
            "ApplyReport",
            "CheckResult",
            "FileResult",
            "Report",
            "RollbackReport",
            "StatusReport",
            "VerifyReport",
        ),
        "report",
    ),
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'sqlrunner' has no attribute {name!r}")
    value = getattr(import_module(f".{home}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])


__all__ = [
    "ApplyReport",
    "CheckResult",
    "ChecksumMismatch",
    "ConnectionFailed",
    "DataLossRefused",
    "FileResult",
    "FutureVersions",
    "InvalidMigrationSet",
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
