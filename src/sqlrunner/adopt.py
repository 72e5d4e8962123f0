"""Take over a database another tool migrated: read its ledger, mark sqlrunner's versions applied.

Also the two hand repairs a switch needs: ``mark_applied`` for a list (or range)
of versions and ``baseline`` (in ``baseline.py``). Every path marks versions in
one transaction under the runner lock, with a history row per version, through
the ledger's own statements (``ledger.record_applied`` / ``record_history``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from . import ledger
from .conversion import read_mapping
from .errors import AdoptionRefused, UsageError
from .files import Migration, MigrationSet, load_migration_set, resolve_sql_dir
from .ledger import LedgerTables, RunContext
from .locking import runner_lock
from .session import Options, Target, open_session

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .session import OptionValues


@dataclass(frozen=True, slots=True)
class AdoptReport:
    """What was marked applied (``NNNN_name`` labels) and what already was."""

    target: str
    action: str
    marked: tuple[str, ...]
    already: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def parse_versions(spec: str) -> list[int]:
    """``"1-42,50"`` -> [1, ..., 42, 50] (``repair --mark-applied 1-42``)."""
    versions: list[int] = []
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None:
            raise UsageError(f"invalid version list {spec!r}: use e.g. 7, 1-42 or 1-3,5")
        low, high = int(match[1]), int(match[2] or match[1])
        if high < low:
            raise UsageError(f"invalid range {part.strip()!r}: {high} is below {low}")
        versions.extend(range(low, high + 1))
    return sorted(set(versions))


@dataclass(frozen=True, slots=True)
class Mark:
    migration: Migration
    detail: str


def record_marks(
    target: Target,
    marks: Sequence[Mark],
    action: str,
    options: Options,
    *,
    check: Callable[[psycopg.Connection[Any], set[tuple[str, int]]], list[str]] | None = None,
) -> AdoptReport:
    """Record ``marks`` as applied in one transaction, holding the runner lock.

    ``check(conn, ledger_rows)`` ((kind, version) pairs) may refuse (return reasons)
    once the lock is held and the ledger re-read: nothing changes between check and write.
    """
    ctx = RunContext.new()
    tables = LedgerTables.of(options)
    name = f"sqlrunner lock ({ctx.client})"
    with (
        open_session(target, options.wait) as (conn, conninfo, shown),
        runner_lock(conninfo, options, name),
    ):
        ledger.create_tables(conn, tables)
        rows = {(r.kind, r.version) for r in ledger.read_rows(conn, tables, when=False)}
        done = [m for m in marks if (m.migration.kind, m.migration.version) in rows]
        applied = [m.migration.label for m in done]
        reasons = check(conn, rows) if check else []
        if reasons:
            raise AdoptionRefused(f"{action} refused: " + "; ".join(reasons), reasons)
        todo = [m for m in marks if (m.migration.kind, m.migration.version) not in rows]
        statements = ["BEGIN"]
        for mark in todo:
            m = mark.migration
            statements.append(
                ledger.record_applied(tables, m.kind, m.version, m.name, m.checksum, "0", ctx)
            )
            if m.kind == "forward":
                statements.append(ledger.clear_progress(tables, m.version))
            statements.append(
                ledger.record_file_history(tables, ctx, action, "ok", m, detail=mark.detail)
            )
        if todo:
            statements.append(
                ledger.record_history(
                    tables,
                    ctx,
                    action,
                    "ok",
                    kind="run",
                    detail=f"{len(todo)} file(s) marked applied without running them",
                )
            )
            conn.execute("; ".join([*statements, "COMMIT"]))
    return AdoptReport(shown, action, tuple(m.migration.label for m in todo), tuple(applied))


def mark_applied(
    target: Target,
    versions: Sequence[int],
    sql_dir: str | os.PathLike[str] | None = None,
    **options: Unpack[OptionValues],
) -> AdoptReport:
    """Record forward files as applied without running them (a DBA ran them with psql).

    CLI: ``sqlrunner repair --mark-applied 1-42`` (also ``7`` or ``1-3,5``; parse with
    ``parse_versions``). Every version asked for must have a forward file: a typo such
    as ``1-420`` for ``1-42`` is refused whole, naming the versions without one, before
    connecting. Versions already applied are left as they are and reported; when all
    of them are, it is refused (as ``repair(mark_applied=V)`` refuses). Exit codes:
    0 done; 2 bad list, no such file or all already applied; 3 cannot connect;
    5 another runner holds the lock.
    """
    files = load_migration_set(resolve_sql_dir(sql_dir))
    wanted = set(versions)
    chosen = [m for m in files.forward if m.version in wanted]
    lacking = sorted(wanted - {m.version for m in chosen})
    if not wanted or lacking:
        raise UsageError(
            f"no forward file with version {spans(lacking) or '(none given)'}: nothing was marked"
        )

    def check(conn: psycopg.Connection[Any], rows: set[tuple[str, int]]) -> list[str]:
        if all(("forward", m.version) in rows for m in chosen):
            return [f"{m.display_path} is already applied" for m in chosen[:3]] + (
                [f"{len(chosen) - 3} more"] if len(chosen) > 3 else []
            )
        return []

    return record_marks(
        target,
        [Mark(m, "marked applied by hand (repair --mark-applied)") for m in chosen],
        "mark-applied",
        Options(**options),
        check=check,
    )


def spans(versions: Sequence[int]) -> str:
    """[1, 2, 3, 7] -> "0001-0003, 0007": a long list of versions said in one short line."""
    runs: list[list[int]] = []
    for version in sorted(versions):
        if runs and version == runs[-1][1] + 1:
            runs[-1][1] = version
        else:
            runs.append([version, version])
    return ", ".join(f"{a:04d}" if a == b else f"{a:04d}-{b:04d}" for a, b in runs)


# --- other tools' ledgers: each returns {source key: checksum or None} and refusals ---

Applied = dict[str, str | None]


def _table(schema: str | None, name: str) -> sql.Composable:
    return sql.Identifier(schema, name) if schema else sql.Identifier(name)


def _query(conn: psycopg.Connection[Any], query: sql.Composed, what: str) -> list[Any]:
    try:
        return list(conn.execute(query).fetchall())
    except psycopg.errors.UndefinedTable:
        raise AdoptionRefused(f"no {what} in this database: nothing to adopt", [what]) from None


def _golang_migrate(
    conn: Any, schema: str | None, mapping: dict[str, Any]
) -> tuple[Applied, list[str]]:
    rows = _query(
        conn,
        sql.SQL("SELECT version, dirty FROM {}").format(_table(schema, "schema_migrations")),
        "golang-migrate ledger schema_migrations",
    )
    if not rows:
        return {}, []
    version, dirty = rows[0]
    if dirty:
        return {}, [
            f"golang-migrate marks version {version} dirty (it failed half-way): repair the "
            f"schema by hand, run `migrate force {version}` (or the version before), then adopt"
        ]
    keys = {k for k in mapping["forward"] if int(k) <= int(version)}
    if str(version) not in mapping["forward"]:
        return {}, [f"version {version} is applied but not in the mapping"]
    return dict.fromkeys(keys), []


def _versions(table: str, column: str = "version") -> Callable[..., tuple[Applied, list[str]]]:
    def read(conn: Any, schema: str | None, mapping: dict[str, Any]) -> tuple[Applied, list[str]]:
        query = sql.SQL("SELECT {} FROM {}").format(sql.Identifier(column), _table(schema, table))
        rows = _query(conn, query, f"ledger {table}")
        return {str(r[0]): None for r in rows}, []

    return read


def _goose(conn: Any, schema: str | None, mapping: dict[str, Any]) -> tuple[Applied, list[str]]:
    query = sql.SQL(
        "SELECT DISTINCT ON (version_id) version_id, is_applied FROM {} "
        "ORDER BY version_id, id DESC"
    ).format(_table(schema, "goose_db_version"))
    rows = _query(conn, query, "goose ledger goose_db_version")
    return {str(v): None for v, is_applied in rows if is_applied and v != 0}, []


def _flyway(conn: Any, schema: str | None, mapping: dict[str, Any]) -> tuple[Applied, list[str]]:
    query = sql.SQL(
        "SELECT version, type, script, checksum, success FROM {} ORDER BY installed_rank"
    ).format(_table(schema, "flyway_schema_history"))
    rows = _query(conn, query, "Flyway ledger flyway_schema_history")
    applied: Applied = {}
    reasons: list[str] = []
    for version, kind, script, checksum, success in rows:
        if not success:
            reasons.append(
                f"Flyway recorded a failed migration {script} (version {version}): fix the "
                "schema by hand and run `flyway repair`, then adopt"
            )
        elif kind == "BASELINE":
            below = [k for k in mapping["forward"] if _dotted(k) <= _dotted(version)]
            applied.update(dict.fromkeys(below))
        elif kind in ("UNDO_SQL", "DELETE") and version is not None:
            applied.pop(version, None)
        elif kind == "SCHEMA":
            continue
        elif version is None:  # repeatable: the newest row per script wins
            applied["seed:" + _flyway_title(script)] = None if checksum is None else str(checksum)
        else:
            applied[version] = None if checksum is None else str(checksum)
    return applied, reasons


def _dotted(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.split(r"[._]", version) if p.isdigit())


def _flyway_title(script: str) -> str:
    name = Path(script).name
    return name.split("__", 1)[1].removesuffix(".sql") if "__" in name else name


def _sqitch(conn: Any, schema: str | None, mapping: dict[str, Any]) -> tuple[Applied, list[str]]:
    query = sql.SQL("SELECT change, script_hash FROM {} WHERE project = %s ORDER BY committed_at")
    rows = _query_params(
        conn, query.format(_table(schema or "sqitch", "changes")), (mapping.get("project"),)
    )
    applied: Applied = {}
    reasons = []
    for change, script_hash in rows:
        candidates = [k for k in mapping["forward"] if k == change or k.startswith(change + "@")]
        same = [k for k in candidates if mapping["forward"][k]["checksum"] == script_hash]
        key = (same or candidates or [change])[0]
        applied[key] = script_hash
        if not candidates:
            reasons.append(f"Sqitch change {change} is deployed but not in the mapping")
    return applied, reasons


def _query_params(conn: Any, query: sql.Composed, params: tuple[Any, ...]) -> list[Any]:
    try:
        return list(conn.execute(query, params).fetchall())
    except psycopg.errors.UndefinedTable:
        raise AdoptionRefused("no Sqitch registry in this database", ["sqitch.changes"]) from None


LEDGERS: dict[str, Callable[..., tuple[Applied, list[str]]]] = {
    "golang-migrate": _golang_migrate,
    "dbmate": _versions("schema_migrations"),
    "flyway": _flyway,
    "sqitch": _sqitch,
    "diesel": _versions("__diesel_schema_migrations"),
    "goose": _goose,
    "pop": _versions("schema_migration"),
}
CHECKSUMS_COMPARED = frozenset({"flyway", "sqitch"})


def adopt(
    target: Target,
    sql_dir: str | os.PathLike[str] | None = None,
    *,
    tool: str,
    tool_schema: str | None = None,
    **options: Unpack[OptionValues],
) -> AdoptReport:
    """Mark applied what the other tool's ledger says it applied, through sql_dir's mapping.

    CLI: ``sqlrunner adopt --from TOOL [--tool-schema S]`` after ``sqlrunner import``.
    The other tool's ledger is only read, never changed (switching back stays
    possible). All versions are marked in one transaction with a history row each
    (action ``adopt``), or none: it refuses when golang-migrate's dirty flag is set,
    Flyway recorded a failed migration, the database holds a version the mapping
    lacks, or a checksum Flyway or Sqitch recorded differs from the imported file's.
    Exit codes: 0 done (or nothing new to mark); 2 refused (every reason listed) or
    no mapping; 3 cannot connect; 5 another runner holds the lock.
    """
    reader = LEDGERS.get(tool)
    if reader is None:
        raise UsageError(f"unknown tool {tool!r}: choose one of {', '.join(LEDGERS)}")
    root = resolve_sql_dir(sql_dir)
    mapping = read_mapping(root)
    if mapping.get("tool") != tool:
        raise UsageError(f"{root} was imported from {mapping.get('tool')}, not {tool}")
    opts = Options(**options)
    files = load_migration_set(root)
    with open_session(target, opts.wait) as (conn, _conninfo, _shown):
        applied, reasons = reader(conn, tool_schema, mapping)
    marks = _marks(tool, files, mapping, applied, reasons)
    if reasons:
        raise AdoptionRefused(f"adopt from {tool} refused: " + "; ".join(reasons), reasons)
    return record_marks(target, marks, "adopt", opts)


def _marks(
    tool: str,
    files: MigrationSet,
    mapping: dict[str, Any],
    applied: Applied,
    reasons: list[str],
) -> list[Mark]:
    """sqlrunner files for the other tool's applied keys; appends to ``reasons`` what blocks."""
    marks = []
    for key, checksum in sorted(applied.items()):
        kind = "seed" if key.startswith("seed:") else "forward"
        entry = mapping[kind].get(key.removeprefix("seed:"))
        if entry is None:
            reasons.append(
                f"{tool} applied {key.removeprefix('seed:')}, which the mapping lacks "
                "(import the files it came from first)"
            )
            continue
        if tool in CHECKSUMS_COMPARED and checksum is not None and entry["checksum"] != checksum:
            if kind == "seed":  # a changed repeatable simply runs again, as in Flyway
                continue
            reasons.append(
                f"{tool} recorded checksum {checksum} for {key} but the imported file "
                f"{entry['source']} has {entry['checksum']}: the database ran another version "
                "of it; re-import from the files that were deployed"
            )
            continue
        pool = files.forward if kind == "forward" else files.seed
        migration = next((m for m in pool if m.version == int(entry["version"])), None)
        if migration is None:
            reasons.append(f"{kind}/{int(entry['version']):04d}_{entry['name']}.sql is missing")
            continue
        marks.append(Mark(migration, f"adopted from {tool} {key.removeprefix('seed:')}"))
    return sorted(marks, key=lambda m: (m.migration.kind, m.migration.version))
