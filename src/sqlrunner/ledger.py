"""All SQL about sqlrunner's own tables: the ledger, its history, and no-transaction progress.

Statements that write are returned as SQL text with literal values, so the
runner can send them in the same round trip as a migration's last statement
and its COMMIT (a simple-query string cannot carry parameters). psycopg quotes
every literal (``session.literal``) and identifier (``session.identifier``).
Reads use row factories: a ledger row comes back as a ``LedgerRow``.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row, dict_row

from ._version import __version__
from .files import Migration
from .plan import Failure, LedgerRow
from .session import DEFAULTS, Options, identifier, literal

# A transactional migration's duration, measured by the server when its ledger row is
# written: now() is the transaction's start, clock_timestamp() the current time.
TRANSACTION_DURATION_MS = "(extract(epoch FROM clock_timestamp() - now()) * 1000)::int"


@dataclass(frozen=True, slots=True)
class LedgerTables:
    """Where the ledger lives; every name is quoted as an identifier."""

    schema: str = DEFAULTS.ledger_schema
    table: str = DEFAULTS.ledger_table

    @classmethod
    def of(cls, options: Options) -> LedgerTables:
        return cls(options.ledger_schema, options.ledger_table)

    @property
    def ledger_name(self) -> str:
        return identifier(self.schema, self.table)

    @property
    def history_name(self) -> str:
        return identifier(self.schema, self.table + "_history")

    @property
    def progress_name(self) -> str:
        return identifier(self.schema, self.table + "_progress")

    @property
    def backfill_name(self) -> str:
        """Batched files' progress (backfill.py): one row per file, its key range and position."""
        return identifier(self.schema, self.table + "_backfill")

    @property
    def lock_key(self) -> int:
        """A stable signed 64-bit advisory-lock key, one per ledger."""
        digest = hashlib.sha256(f"sqlrunner:{self.schema}.{self.table}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)


CREATE = """
CREATE TABLE IF NOT EXISTS {ledger} (
    kind              text        NOT NULL CHECK (kind IN ('forward', 'seed')),
    version           bigint      NOT NULL,
    name              text        NOT NULL,
    checksum          text        NOT NULL,
    applied_at        timestamptz NOT NULL DEFAULT now(),
    applied_by        text        NOT NULL DEFAULT current_user,
    duration_ms       integer     NOT NULL,
    sqlrunner_version text        NOT NULL,
    PRIMARY KEY (kind, version)
);
CREATE TABLE IF NOT EXISTS {history} (
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id            uuid        NOT NULL,
    at                timestamptz NOT NULL DEFAULT clock_timestamp(),
    by                text        NOT NULL DEFAULT current_user,
    client            text        NOT NULL,
    action            text        NOT NULL,
    kind              text,
    version           bigint,
    name              text,
    checksum          text,
    outcome           text        NOT NULL,
    duration_ms       integer,
    detail            text,
    sqlrunner_version text        NOT NULL
);
CREATE TABLE IF NOT EXISTS {progress} (
    version         bigint      NOT NULL,
    checksum        text        NOT NULL,
    statement_index integer     NOT NULL,
    done_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (version, statement_index)
);
"""

# Created when the first batched file runs (backfill.py), not with the ledger: a
# migration role without CREATE privilege keeps working on a ledger made before it.
CREATE_BACKFILL = """
CREATE TABLE IF NOT EXISTS {backfill} (
    version     bigint      PRIMARY KEY,
    checksum    text        NOT NULL,
    lo_key      bigint      NOT NULL,
    hi_key      bigint      NOT NULL,
    next_key    bigint      NOT NULL,
    batch_size  bigint      NOT NULL,
    batches     bigint      NOT NULL DEFAULT 0,
    rows        bigint      NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    done_at     timestamptz
);
"""


def create_tables(conn: psycopg.Connection[Any], tables: LedgerTables) -> None:
    """Create sqlrunner's schema and tables if they are missing (with the runner lock held).

    Existence is checked first: ``CREATE … IF NOT EXISTS`` still demands CREATE
    privilege on the database or schema, which a migration role may lack once
    everything exists.
    """
    names = (tables.ledger_name, tables.history_name, tables.progress_name)
    checks = " AND ".join(f"to_regclass({literal(name)}) IS NOT NULL" for name in names)
    row = conn.execute(
        f"SELECT to_regnamespace({literal(identifier(tables.schema))}) IS NOT NULL, {checks}"
    ).fetchone()
    schema_exists, tables_exist = row if row else (False, False)
    if tables_exist:
        widen_versions(conn, tables)
        return
    if not schema_exists:
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(tables.schema))
        )
    conn.execute(
        CREATE.format(
            ledger=tables.ledger_name, history=tables.history_name, progress=tables.progress_name
        )
    )


def create_backfill_table(
    conn: psycopg.Connection[tuple[object, ...]], tables: LedgerTables
) -> None:
    """The batched files' progress table, if missing (with the runner lock held)."""
    row = conn.execute(f"SELECT to_regclass({literal(tables.backfill_name)})").fetchone()
    if row is None or row[0] is None:
        conn.execute(CREATE_BACKFILL.format(backfill=tables.backfill_name))


def widen_versions(conn: psycopg.Connection[tuple[object, ...]], tables: LedgerTables) -> None:
    """Make the version columns of a ledger created with ``integer`` ones bigint, so a
    timestamp version (``20240101120000_init.sql``) fits. Runs with the runner lock held;
    the rewrite happens once per ledger (the tables are small)."""
    narrow = conn.execute(
        "SELECT c.relname FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid "
        "WHERE n.nspname = %s AND c.relname = ANY (%s) AND c.relkind = 'r' "
        "AND a.attname = 'version' AND a.atttypid = 'integer'::regtype",
        (tables.schema, [tables.table + suffix for suffix in ("", "_history", "_progress")]),
    ).fetchall()
    for (name,) in narrow:
        conn.execute(
            sql.SQL("ALTER TABLE {} ALTER COLUMN version TYPE bigint").format(
                sql.Identifier(tables.schema, str(name))
            )
        )


def read_rows(
    conn: psycopg.Connection[Any], tables: LedgerTables, *, when: bool = True
) -> list[LedgerRow]:
    """The whole ledger in one round trip; an absent ledger reads as empty.

    ``when=False`` leaves out applied_at/applied_by, which only ``status`` shows.
    """
    columns = "kind, version, name, checksum" + (", applied_at, applied_by" if when else "")
    rows = conn.cursor(row_factory=class_row(LedgerRow))
    try:
        return rows.execute(f"SELECT {columns} FROM {tables.ledger_name}").fetchall()
    except psycopg.errors.UndefinedTable:
        return []


@dataclass(frozen=True, slots=True)
class RunContext:
    """What every history row of one run shares."""

    run_id: str
    client: str
    version: str

    @classmethod
    def new(cls) -> RunContext:
        return cls(str(uuid.uuid4()), f"{socket.gethostname()} pid {os.getpid()}", __version__)


def record_applied(
    tables: LedgerTables,
    kind: str,
    version: int,
    name: str,
    checksum: str,
    duration_ms: str,
    ctx: RunContext,
) -> str:
    """Record an applied file so that the same file can never be recorded twice.

    A forward file is a plain INSERT: a second runner that applied it too fails on the
    primary key (see ``is_duplicate``) instead of overwriting the first one's row. A
    seed is re-applied when its checksum changes: its row is updated only when it holds
    another checksum, and otherwise inserted, which fails the same way when a runner
    already recorded this very content. ``duration_ms`` is SQL: a number, or
    TRANSACTION_DURATION_MS.
    """
    columns = "(kind, version, name, checksum, duration_ms, sqlrunner_version)"
    values = (
        f"{literal(kind)}, {version:d}, {literal(name)}, {literal(checksum)}, {duration_ms}, "
        f"{literal(ctx.version)}"
    )
    insert = f"INSERT INTO {tables.ledger_name} {columns}"
    if kind != "seed":
        return f"{insert} VALUES ({values})"
    return (
        f"WITH changed AS (UPDATE {tables.ledger_name} SET name = {literal(name)}, "
        f"checksum = {literal(checksum)}, applied_at = now(), applied_by = current_user, "
        f"duration_ms = {duration_ms}, sqlrunner_version = {literal(ctx.version)} "
        f"WHERE kind = 'seed' AND version = {version:d} AND checksum <> {literal(checksum)} "
        f"RETURNING 1) {insert} SELECT {values} WHERE NOT EXISTS (SELECT FROM changed)"
    )


def is_duplicate(exc: psycopg.Error, tables: LedgerTables) -> bool:
    """Whether ``exc`` is record_applied failing because the file is already recorded."""
    return (
        isinstance(exc, psycopg.errors.UniqueViolation)
        and exc.diag.schema_name == tables.schema
        and exc.diag.table_name == tables.table
    )


def record_accepted(tables: LedgerTables, version: int, name: str, checksum: str) -> str:
    """A reviewed edit: the new checksum; when and by whom it was applied stay as they were."""
    return (
        f"UPDATE {tables.ledger_name} SET name = {literal(name)}, checksum = {literal(checksum)} "
        f"WHERE kind = 'forward' AND version = {version:d}"
    )


def record_removed(tables: LedgerTables, kind: str, version: int) -> str:
    return (
        f"DELETE FROM {tables.ledger_name} WHERE kind = {literal(kind)} AND version = {version:d}"
    )


def forget_seeds(tables: LedgerTables) -> str:
    """After a rollback, seeds must run again: their tables may have been dropped."""
    return f"DELETE FROM {tables.ledger_name} WHERE kind = 'seed'"


def record_history(
    tables: LedgerTables,
    ctx: RunContext,
    action: str,
    outcome: str,
    *,
    kind: str | None = None,
    version: int | None = None,
    name: str | None = None,
    checksum: str | None = None,
    duration_ms: str = "NULL",
    detail: str | None = None,
) -> str:
    """One history row; ``duration_ms`` is SQL like in record_applied."""
    values = ", ".join(
        [
            literal(ctx.run_id),
            literal(ctx.client),
            literal(action),
            literal(kind),
            literal(version),
            literal(name),
            literal(checksum),
            literal(outcome),
            duration_ms,
            literal(detail),
            literal(ctx.version),
        ]
    )
    return (
        f"INSERT INTO {tables.history_name} (run_id, client, action, kind, version, name, "
        f"checksum, outcome, duration_ms, detail, sqlrunner_version) VALUES ({values})"
    )


def record_file_history(
    tables: LedgerTables,
    ctx: RunContext,
    action: str,
    outcome: str,
    m: Migration,
    *,
    duration_ms: str = "NULL",
    detail: str | None = None,
) -> str:
    """The history row of one file (its kind, version, name and checksum)."""
    return record_history(
        tables,
        ctx,
        action,
        outcome,
        kind=m.kind,
        version=m.version,
        name=m.name,
        checksum=m.checksum,
        duration_ms=duration_ms,
        detail=detail,
    )


def recorded_checksum(
    conn: psycopg.Connection[Any], tables: LedgerTables, m: Migration
) -> str | None:
    """The checksum the ledger holds for ``m`` (for a rollback file: for its forward file),
    or None when it holds no row for it."""
    kind = "forward" if m.kind == "rollback" else m.kind
    row = conn.execute(
        sql.SQL("SELECT checksum FROM {} WHERE kind = %s AND version = %s").format(
            sql.SQL(tables.ledger_name)
        ),
        (kind, m.version),
    ).fetchone()
    return None if row is None else str(row[0])


def done_statements(
    conn: psycopg.Connection[Any], tables: LedgerTables, version: int, checksum: str
) -> set[int]:
    """Statements of a no-transaction file that already succeeded for this exact file."""
    rows = conn.execute(
        f"SELECT statement_index FROM {tables.progress_name} WHERE version = %s AND checksum = %s",
        (version, checksum),
    ).fetchall()
    return {int(index) for (index,) in rows}


def record_statement_done(tables: LedgerTables, version: int, checksum: str, index: int) -> str:
    return (
        f"INSERT INTO {tables.progress_name} (version, checksum, statement_index) VALUES "
        f"({version:d}, {literal(checksum)}, {index:d}) ON CONFLICT (version, statement_index) "
        "DO UPDATE SET checksum = excluded.checksum, done_at = clock_timestamp()"
    )


def clear_progress(tables: LedgerTables, version: int) -> str:
    """Forget a file's progress: its no-transaction statements and its backfill position
    (whose table exists once a batched file ran: PL/pgSQL plans the DELETE only then)."""
    backfill = tables.backfill_name
    return (
        f"DO $sqlrunner$BEGIN DELETE FROM {tables.progress_name} WHERE version = {version:d}; "
        f"IF to_regclass({literal(backfill)}) IS NOT NULL THEN "
        f"DELETE FROM {backfill} WHERE version = {version:d}; END IF; END$sqlrunner$"
    )


def read_history(
    conn: psycopg.Connection[Any], tables: LedgerTables, limit: int
) -> list[dict[str, Any]]:
    """Newest history rows first, for ``sqlrunner history``."""
    try:
        return (
            conn.cursor(row_factory=dict_row)
            .execute(
                "SELECT at, by, client, action, kind, version, name, outcome, duration_ms, detail "
                f"FROM {tables.history_name} ORDER BY id DESC LIMIT %s",
                (limit,),
            )
            .fetchall()
        )
    except psycopg.errors.UndefinedTable:
        return []


def read_failures(conn: psycopg.Connection[Any], tables: LedgerTables) -> list[Failure]:
    """Files whose newest apply or seed history row is not a success (for ``status``):
    such a file is failed until an apply of it succeeds."""
    try:
        return (
            conn.cursor(row_factory=class_row(Failure))
            .execute(
                "SELECT kind, version, checksum, at, by, "
                "coalesce(nullif(detail, ''), outcome) AS detail "
                "FROM (SELECT DISTINCT ON (kind, version) kind, version, checksum, at, by, "
                f"outcome, detail FROM {tables.history_name} WHERE action IN ('apply', 'seed') "
                "AND kind IN ('forward', 'seed') AND version IS NOT NULL "
                "ORDER BY kind, version, id DESC) AS newest WHERE outcome <> 'ok'"
            )
            .fetchall()
        )
    except psycopg.errors.UndefinedTable:
        return []
