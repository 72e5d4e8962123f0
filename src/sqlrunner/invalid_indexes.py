"""INVALID indexes a failed ``CREATE INDEX CONCURRENTLY`` left behind, found and dropped.

A concurrent build that fails (or whose runner dies) leaves its index INVALID;
the re-run's ``IF NOT EXISTS`` would then skip the build and keep an index that
PostgreSQL never uses. Before a no-transaction file resumes, the INVALID ones
among the indexes it builds are dropped, unless another session builds one now.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from .errors import UsageError
from .files import Migration
from .report import Event, Listener
from .session import identifier
from .sqltext import Statement, concurrent_index

# Any INVALID index in the database at all? Almost never: a cold backend answers this
# in well under a millisecond, the query below takes several.
ANY_INVALID_INDEX_QUERY = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index WHERE NOT indisvalid)"

# INVALID indexes among those a no-transaction file builds concurrently, with their
# schema and whether some session is building one right now: one query per file.
INVALID_INDEXES_QUERY = """
SELECT c.relname,
       n.nspname,
       EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid)
FROM unnest(%s::text[], %s::text[]) AS wanted(index_name, table_name)
JOIN pg_class c
  ON c.relname = wanted.index_name
 AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = to_regclass(wanted.table_name))
JOIN pg_index i ON i.indexrelid = c.oid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid
"""


def invalid_leftovers(
    conn: psycopg.Connection[Any], statements: Sequence[Statement]
) -> dict[str, tuple[str, bool]]:
    """Index name -> (schema, being built now) for each INVALID index the file would build."""
    targets = [t for t in map(concurrent_index, statements) if t is not None]
    if not targets:
        return {}
    row = conn.execute(ANY_INVALID_INDEX_QUERY).fetchone()
    if row is None or not row[0]:
        return {}
    tables = [identifier(*(p for p in (schema, table) if p)) for schema, table, _ in targets]
    rows = conn.execute(
        INVALID_INDEXES_QUERY, ([index for _, _, index in targets], tables)
    ).fetchall()
    return {str(name): (str(schema), bool(building)) for name, schema, building in rows}


def drop_invalid_leftover(
    conn: psycopg.Connection[Any],
    emit: Listener,
    m: Migration,
    statement: Statement,
    index: str,
    schema: str,
    building: bool,
) -> None:
    """An INVALID index left by a failed concurrent build would satisfy IF NOT EXISTS."""
    if building:
        raise UsageError(
            f"{m.shown_path}:{statement.line}: index {index} is being built by another "
            "session right now (see pg_stat_progress_create_index); wait for it, then re-run"
        )
    emit(
        Event(
            "note",
            f"{m.display_path}:{statement.line}: dropping INVALID index "
            f"{schema}.{index} left by a failed concurrent build",
            migration=m,
        )
    )
    # Sent alone (it cannot run in a transaction block) and without a lock_timeout of
    # ours: SHARE UPDATE EXCLUSIVE blocks no writer, and a session SET would outlive it.
    conn.execute(
        sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(schema, index))
    )
