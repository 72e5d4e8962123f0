"""Where a batched file's backfill stands (its progress row: read for the runner and
``status``, and the SQL that writes it), and what paces it in a run. Light: the no-op
apply path imports it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from .errors import UsageError
from .ledger import LedgerTables

COLUMNS = (
    "version, checksum, lo_key, hi_key, next_key, batch_size, batches, rows, "
    "started_at, updated_at, done_at"
)
# Raised by the progress update when the row is not where this batch started: another
# runner moved it (one of the two had lost the runner lock). A user-defined class.
MOVED_SQLSTATE = "SRB01"

# A key, a batch size or a row count in the progress SQL; text only where the dry run
# shows a value that exists at run time alone (``<lo>``).
Number = int | str


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


def _number(value: Number) -> str:
    return f"{value:d}" if isinstance(value, int) else value


def fix_range(
    tables: LedgerTables, version: int, checksum: str, size: int, key: str, table: sql.Composable
) -> str:
    """The progress row of a backfill that starts now: its key range [min, max + 1) of
    ``key`` fixed once (rows inserted later are the application's job)."""
    return (
        sql.SQL(
            "INSERT INTO {progress} (version, checksum, lo_key, hi_key, next_key, batch_size) "
            "SELECT {version}, {checksum}, lo, hi, lo, {size} FROM ("
            "SELECT coalesce(min({key}), 0)::bigint AS lo, "
            "coalesce(max({key})::bigint + 1, 0) AS hi FROM {table}) AS range "
            "ON CONFLICT (version) DO UPDATE SET checksum = excluded.checksum, "
            "lo_key = excluded.lo_key, hi_key = excluded.hi_key, next_key = excluded.next_key, "
            "batch_size = excluded.batch_size, batches = 0, rows = 0, "
            "started_at = clock_timestamp(), updated_at = clock_timestamp(), done_at = NULL"
        )
        .format(
            progress=sql.SQL(tables.backfill_name),
            version=sql.Literal(version),
            checksum=sql.Literal(checksum),
            size=sql.Literal(size),
            key=sql.Identifier(key),
            table=table,
        )
        .as_string()
    )


def advance(
    tables: LedgerTables, version: int, lo: Number, hi: Number, size: Number, rows: Number
) -> str:
    """The progress row from ``lo`` to ``hi``; raises MOVED_SQLSTATE unless it was at lo."""
    lo, hi, size, rows = map(_number, (lo, hi, size, rows))
    return (
        "DO $sqlrunner$BEGIN "
        f"UPDATE {tables.backfill_name} SET next_key = {hi}, "
        f"batch_size = {size}, batches = batches + 1, rows = rows + {rows}, "
        f"updated_at = clock_timestamp() WHERE version = {version:d} "
        f"AND next_key = {lo} AND done_at IS NULL; "
        f"IF NOT FOUND THEN RAISE EXCEPTION USING ERRCODE = '{MOVED_SQLSTATE}', "
        f"MESSAGE = 'the backfill progress row is not at key {lo}'; END IF; END$sqlrunner$"
    )


def record_done(tables: LedgerTables, position: BackfillPosition | str) -> str:
    """The progress row written again, marked done (the ledger rows' ``clear_progress``
    removed it), so status and the table's history keep its totals. A ``str`` stands for
    the row as its last batch leaves it (the dry run's placeholder)."""
    values: sql.Composable = (
        sql.SQL(position)
        if isinstance(position, str)
        else sql.SQL(", ").join(
            map(
                sql.Literal,
                (
                    position.version,
                    position.checksum,
                    position.lo_key,
                    position.hi_key,
                    position.next_key,
                    position.batch_size,
                    position.batches,
                    position.rows,
                    position.started_at,
                ),
            )
        )
    )
    return (
        sql.SQL(
            "INSERT INTO {progress} (version, checksum, lo_key, hi_key, next_key, batch_size, "
            "batches, rows, started_at, done_at) VALUES ({values}, clock_timestamp())"
        )
        .format(progress=sql.SQL(tables.backfill_name), values=values)
        .as_string()
    )
