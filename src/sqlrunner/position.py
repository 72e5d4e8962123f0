"""Where a batched file's backfill stands (its progress row, read for the runner and
``status``), and what paces it in a run. Light: the no-op apply path imports it."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from .errors import UsageError
from .files import Migration
from .ledger import LedgerTables

MARK = re.compile(r"--\s*sqlrunner:\s*batched(?=\s|$)")  # batched.py reads the rest
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|min|h)$")
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000}
COLUMNS = (
    "version, checksum, lo_key, hi_key, next_key, batch_size, batches, rows, "
    "started_at, updated_at, done_at"
)


@dataclass(frozen=True, slots=True)
class BackfillPosition:
    """One batched file's key range [lo_key, hi_key), fixed when it started, and how far
    its committed batches reach (next_key): the next apply resumes there."""

    version: int
    checksum: str
    lo_key: int
    hi_key: int
    next_key: int
    batch_size: int
    batches: int
    rows: int
    started_at: datetime
    updated_at: datetime
    done_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.done_at is not None

    @property
    def fraction(self) -> float:
        """Share of the key range done (1.0 for an empty range)."""
        width = self.hi_key - self.lo_key
        return 1.0 if width <= 0 else min(1.0, (self.next_key - self.lo_key) / width)

    def describe(self) -> str:
        """``backfill 45% (key 900001 of [1, 2000001), 899,990 rows in 90 batches, ...)``."""
        state = "done" if self.done else f"at key {self.next_key}"
        return (
            f"backfill {self.fraction:.0%} ({state} of [{self.lo_key}, {self.hi_key}), "
            f"{self.rows:,} rows in {self.batches:,} batches, batch size {self.batch_size:,}, "
            f"last batch {self.updated_at.isoformat(timespec='seconds')})"
        )


def is_batched(migration: Migration) -> bool:
    """Whether the file's first line marks it batched (forward files only run batched)."""
    return migration.kind == "forward" and MARK.match(migration.text) is not None


def duration_ms(value: str) -> int:
    """'500ms', '2s', '10m', '1.5h' -> milliseconds (a unit is required)."""
    match = _DURATION.match(value.strip())
    if match is None:
        raise ValueError(f"invalid duration {value!r}: use e.g. 500ms, 30s, 10m or 1h")
    return int(float(match[1]) * _UNITS_MS[match[2]])


def read_positions(
    conn: psycopg.Connection[Any], tables: LedgerTables, version: int | None = None
) -> list[BackfillPosition]:
    """Every progress row (or one version's); none before sqlrunner created its tables."""
    query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(COLUMNS), sql.SQL(tables.backfill_name))
    if version is not None:
        query += sql.SQL(" WHERE version = {}").format(sql.Literal(version))
    try:
        rows = conn.execute(query + sql.SQL(" ORDER BY version")).fetchall()
    except psycopg.errors.UndefinedTable:
        return []
    return [BackfillPosition(*row) for row in rows]


@dataclass(frozen=True, slots=True)
class Throttle:
    """What slows or stops backfills in one run: a time budget (seconds from the run's
    start) and a callable run between batches."""

    budget: float | None = None
    between_batches: Callable[[], None] | None = None
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.budget is not None and not self.budget > 0:
            raise UsageError(f"budget must be more than 0 seconds, not {self.budget}")

    def spent(self) -> bool:
        return self.budget is not None and time.monotonic() - self.started >= self.budget
