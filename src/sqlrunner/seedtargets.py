"""Seeds in a partial apply (``apply --to V``): a seed runs once what it names exists.

Seeds normally wait for the last forward file: they target the newest schema.
With ``--to V`` that moment never comes, yet the verify files of versions up to V
may check seeded rows (verify 0003 counts the tier rules), so a staged rollout
would fail verification at every stage. Here a pending seed runs in a partial
apply as soon as every table it names, and every column it writes or qualifies,
exists; the others wait for a later apply, and the report says what they wait for.

What a seed names comes from PostgreSQL's parser (the statements are parsed
already): every table (RangeVar) except the seed's own CTEs; for the table it
writes, the INSERT column list, the ON CONFLICT target and the SET targets; and
every ``alias.column`` reference (EXCLUDED included). A seed holding anything
but INSERT, UPDATE, DELETE, MERGE and SET (a DO block, a function call, DDL)
cannot be seen through, so it keeps waiting for the last forward file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from .files import Migration, MigrationSet
from .plan import ApplyPlan, LedgerRow

if TYPE_CHECKING:  # the no-op path of apply loads no parser
    from .sqltext import Script

# (quoted table name as to_regclass reads it, column name or None for the table itself)
Need = tuple[str, str | None]
SEEN_THROUGH = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "VariableSetStmt"})

MISSING_QUERY = """
SELECT n.tbl, n.col
FROM unnest(%s::text[], %s::text[]) AS n (tbl, col)
WHERE to_regclass(n.tbl) IS NULL
   OR (n.col IS NOT NULL AND NOT EXISTS (
         SELECT FROM pg_catalog.pg_attribute AS a
         WHERE a.attrelid = to_regclass(n.tbl) AND a.attname = n.col
           AND a.attnum > 0 AND NOT a.attisdropped))
"""


def pending_seeds(files: MigrationSet, rows: Sequence[LedgerRow]) -> list[Migration]:
    """Seed files that are new or changed since the ledger recorded them."""
    recorded = {r.version: r.checksum for r in rows if r.kind == "seed"}
    return [m for m in files.seed if recorded.get(m.version) != m.checksum]


def seeds_may_run(files: MigrationSet, rows: Sequence[LedgerRow], plan: ApplyPlan) -> bool:
    """True when a partial apply has pending seeds to try, even with no forward file
    pending (a seed that waited at ``--to V`` runs on the next ``--to V``)."""
    return plan.seeds_deferred and not plan.future and bool(pending_seeds(files, rows))


def partial_seeds(
    conn: psycopg.Connection[Any],
    files: MigrationSet,
    rows: Sequence[LedgerRow],
    script: Callable[[Migration], Script],
    notes: tuple[str, ...],
) -> tuple[list[Script], tuple[str, ...]]:
    """The pending seeds a partial apply may run now (their tables exist), and the
    report's notes with the "seeds deferred" one replaced by what still waits.

    Call it after the forward files of the partial apply ran, on the same connection.
    """
    candidates = [script(m) for m in pending_seeds(files, rows)]
    needs = {s.migration.path: needed_by(s) for s in candidates}
    known = sorted(
        {n for found in needs.values() if found is not None for n in found},
        key=lambda n: (n[0], n[1] or ""),
    )
    missing: set[Need] = set()
    if known:
        found_rows = conn.execute(
            MISSING_QUERY, ([t for t, _ in known], [c for _, c in known])
        ).fetchall()
        missing = {(str(t), None if c is None else str(c)) for t, c in found_rows}
    ready: list[Script] = []
    waiting: list[str] = []
    for s in candidates:
        found = needs[s.migration.path]
        if found is None:
            waiting.append(
                f"{s.migration.display_path} (not only INSERT/UPDATE/DELETE: "
                "it waits for the last forward file)"
            )
        elif found & missing:
            absent = ", ".join(sorted(t if c is None else f"{t}.{c}" for t, c in found & missing))
            waiting.append(f"{s.migration.display_path} (needs {absent})")
        else:
            ready.append(s)
    kept = tuple(n for n in notes if not n.startswith("seeds deferred"))
    if waiting:
        kept += ("seeds deferred until what they need exists: " + "; ".join(waiting),)
    return ready, kept


def needed_by(script: Script) -> frozenset[Need] | None:
    """Every table and column the seed names, or None when it holds a statement whose
    effects the parser cannot show (it must then wait for the last forward file)."""
    needs: set[Need] = set()
    for statement in script.statements:
        if statement.kind not in SEEN_THROUGH:
            return None
        needs.update(_names(statement.fields))
    return frozenset(needs)


def _names(fields: Mapping[str, Any]) -> Iterator[Need]:
    """Tables and qualified columns of one DML statement's parse tree."""
    from .seedrows import quoted_name

    ctes = {str(c["CommonTableExpr"]["ctename"]) for c in _nodes(fields, "CommonTableExpr")}
    aliases: dict[str, str] = {}
    for rangevar in _nodes(fields, "RangeVar"):
        if not rangevar.get("schemaname") and rangevar["relname"] in ctes:
            continue
        table = quoted_name(rangevar)
        aliases[str(rangevar.get("alias", {}).get("aliasname") or rangevar["relname"])] = table
        yield table, None
    target = fields.get("relation")
    if target is not None:
        table = quoted_name(target)
        aliases["excluded"] = table
        conflict = fields.get("onConflictClause", {})
        elements = conflict.get("infer", {}).get("indexElems", ())
        written = [
            *fields.get("cols", ()),
            *fields.get("targetList", ()),
            *conflict.get("targetList", ()),
        ]
        for name in (
            *(e["IndexElem"].get("name") for e in elements),
            *(w["ResTarget"].get("name") for w in written if "ResTarget" in w),
        ):
            if name:
                yield table, str(name)
    for ref in _nodes(fields, "ColumnRef"):
        parts = [f["String"]["sval"] for f in ref.get("fields", ()) if "String" in f]
        if len(parts) == 2 and len(ref["fields"]) == 2 and parts[0] in aliases:
            yield aliases[parts[0]], str(parts[1])


def _nodes(tree: Any, kind: str) -> Iterator[Mapping[str, Any]]:
    """Every node of one type in a JSON parse tree; a RangeVar also as the bare dict a
    statement's ``relation`` field holds."""
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            if isinstance(value, Mapping) and (
                key == kind or (key, kind) == ("relation", "RangeVar")
            ):
                yield value
            yield from _nodes(value, kind)
    elif isinstance(tree, list):
        for item in tree:
            yield from _nodes(item, kind)
