"""Settings from a file: ``sqlrunner.toml``, else ``[tool.sqlrunner]`` in pyproject.toml.

Both are read from the current directory only, where the command runs (as
dbmate and Flyway read theirs). The file fills click's ``default_map``, so the
precedence is click's own: a flag beats its ``SQLRUNNER_<OPTION>`` variable,
which beats the file, which beats the default.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# What a file may set, each an option of the group or of some commands. The DSN is
# not among them: a file is committed, and a DSN carries a password.
KEYS = (
    "sql_dir",
    "ledger_schema",
    "ledger_table",
    "lock_timeout",
    "lock_retries",
    "wait",
    "runner_wait",
    "strict",
    "strict_order",
    "heartbeat",
    "log_format",
    "lint_excluded_rules",  # squawk rules `sqlrunner lint` leaves out (hook: surface)
    "wait_replicas",  # apply's standby options (replicas.py); --replica DSNs stay out
    "max_replica_lag",
    "replica_wait",
    "budget",  # a batched file's time budget (backfill.py)
)


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """The settings found, and where: the path shown by ``sqlrunner config``."""

    path: Path | None
    values: dict[str, Any]


def read_config(directory: Path) -> ConfigFile:
    """The file's settings, keys spelt with ``_`` or ``-``; refused whole when one is wrong."""
    own, pyproject = directory / "sqlrunner.toml", directory / "pyproject.toml"
    if own.is_file():
        path, table = own, _load(own)
    elif pyproject.is_file():
        path, table = pyproject, _load(pyproject).get("tool", {}).get("sqlrunner")
        if table is None:
            return ConfigFile(None, {})
    else:
        return ConfigFile(None, {})
    if not isinstance(table, dict):
        raise UsageError(f"{path}: [tool.sqlrunner] must be a table")
    values = {key.replace("-", "_"): value for key, value in table.items()}
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        hint = " (the DSN belongs in SQLRUNNER_DSN or DATABASE_URL)" if "dsn" in unknown else ""
        raise UsageError(
            f"{path}: unknown setting {', '.join(unknown)}{hint}; known: {', '.join(KEYS)}"
        )
    return ConfigFile(path, values)


def _load(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data: dict[str, Any] = tomllib.load(f)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    return data
