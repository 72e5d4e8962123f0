"""The table locks a statement takes, read from its parse tree (no database).

PostgreSQL documents the lock each statement takes in the table of
https://www.postgresql.org/docs/current/explicit-locking.html (13.3.1,
"Table-Level Locks") and, per ALTER TABLE subcommand, on the ALTER TABLE page;
``AlterTableGetLockLevel`` in tablecmds.c is the same table in code. This
module is that table, applied to pglast's parse tree (the JSON nodes sqltext.py
already holds), so ``apply --dry-run --sql`` can say what a file will block
before it runs. It names the locks a statement asks for on the tables it
names; a ``DO`` block, ``CALL`` or a ``CASCADE`` reaches further than its
text shows, and says so.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# PostgreSQL's lock modes, weakest first (LockStmt's ``mode`` is the 1-based index).
MODES = (
    "ACCESS SHARE",
    "ROW SHARE",
    "ROW EXCLUSIVE",
    "SHARE UPDATE EXCLUSIVE",
    "SHARE",
    "SHARE ROW EXCLUSIVE",
    "EXCLUSIVE",
    "ACCESS EXCLUSIVE",
)
ACCESS_SHARE, ROW_SHARE, ROW_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE = MODES[:4]
SHARE, SHARE_ROW_EXCLUSIVE, EXCLUSIVE, ACCESS_EXCLUSIVE = MODES[4:]

# ALTER TABLE / ALTER INDEX subcommands below ACCESS EXCLUSIVE (the ALTER TABLE page:
# "An ACCESS EXCLUSIVE lock is acquired unless explicitly noted").
SUBCOMMAND_MODES = {
    "AT_SetStatistics": SHARE_UPDATE_EXCLUSIVE,
    "AT_ClusterOn": SHARE_UPDATE_EXCLUSIVE,
    "AT_DropCluster": SHARE_UPDATE_EXCLUSIVE,
    "AT_SetOptions": SHARE_UPDATE_EXCLUSIVE,  # ALTER COLUMN SET (n_distinct = ...)
    "AT_ResetOptions": SHARE_UPDATE_EXCLUSIVE,
    "AT_ValidateConstraint": SHARE_UPDATE_EXCLUSIVE,
    "AT_AttachPartition": SHARE_UPDATE_EXCLUSIVE,  # on the parent
    "AT_DetachPartitionFinalize": SHARE_UPDATE_EXCLUSIVE,
    **dict.fromkeys(
        (
            "AT_EnableTrig",
            "AT_EnableAlwaysTrig",
            "AT_EnableReplicaTrig",
            "AT_EnableTrigAll",
            "AT_EnableTrigUser",
            "AT_DisableTrig",
            "AT_DisableTrigAll",
            "AT_DisableTrigUser",
        ),
        SHARE_ROW_EXCLUSIVE,
    ),
}
# Storage parameters SET (...) may change under SHARE UPDATE EXCLUSIVE; any other
# (security_barrier, user_catalog_table, ...) needs ACCESS EXCLUSIVE.
LIGHT_RELOPTIONS = (
    "fillfactor",
    "autovacuum_",
    "toast.",
    "toast_tuple_target",
    "parallel_workers",
    "vacuum_",
    "log_autovacuum_min_duration",
)
RELATION_OBJECTS = frozenset(
    {
        "OBJECT_TABLE",
        "OBJECT_INDEX",
        "OBJECT_VIEW",
        "OBJECT_MATVIEW",
        "OBJECT_SEQUENCE",
        "OBJECT_FOREIGN_TABLE",
    }
)
# Objects dropped with the lock on the table they belong to: DROP TRIGGER t ON tab.
TABLE_MEMBERS = frozenset({"OBJECT_TRIGGER", "OBJECT_RULE", "OBJECT_POLICY"})
# Statements that lock no table: they change other objects, or the session.
NO_TABLE = frozenset(
    {
        "CreateFunctionStmt",
        "AlterFunctionStmt",
        "CreateSchemaStmt",
        "CreateExtensionStmt",
        "AlterExtensionStmt",
        "CreateDomainStmt",
        "AlterDomainStmt",
        "DefineStmt",
        "CompositeTypeStmt",
        "CreateEnumStmt",
        "AlterEnumStmt",
        "CreateRangeStmt",
        "CreateSeqStmt",
        "VariableSetStmt",
        "VariableShowStmt",
        "CreateRoleStmt",
        "AlterRoleStmt",
        "DropRoleStmt",
        "TransactionStmt",
        "NotifyStmt",
        "ListenStmt",
        "CreateCastStmt",
        "CreateConversionStmt",
        "CreateOpClassStmt",
    }
)
UNREADABLE = {
    "DoStmt": "a DO block takes the locks of what it runs: not readable in advance",
    "CallStmt": "a procedure takes the locks of what it runs: not readable in advance",
}


@dataclass(frozen=True, slots=True)
class Lock:
    """One table-level lock: its mode and the table as the statement names it."""

    mode: str
    table: str

    def __str__(self) -> str:
        return f"{self.mode} on {self.table}"


@dataclass(frozen=True, slots=True)
class StatementLocks:
    """The locks one statement takes, strongest first, and what the table cannot say."""

    locks: tuple[Lock, ...]
    note: str = ""

    def __str__(self) -> str:
        shown = ", ".join(map(str, self.locks))
        if self.note:
            return f"{shown}; {self.note}" if shown else self.note
        return shown or "no table lock"


def strongest(*modes: str) -> str:
    return max(modes, key=MODES.index)


def table_name(range_var: Mapping[str, Any]) -> str:
    """``schema.table`` as written (no schema: as the search_path finds it)."""
    parts = (range_var.get("catalogname"), range_var.get("schemaname"), range_var["relname"])
    return ".".join(str(p) for p in parts if p)


def _names(node: Mapping[str, Any]) -> list[str]:
    """The dotted name of a List of String nodes (DROP, COMMENT ON)."""
    return [str(item["String"]["sval"]) for item in node["List"]["items"] if "String" in item]


def _range_vars(node: Any) -> Iterator[Mapping[str, Any]]:
    """Every table a (sub)tree reads: RangeVar nodes, anywhere in it."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "RangeVar":
                yield value
            else:
                yield from _range_vars(value)
    elif isinstance(node, list):
        for item in node:
            yield from _range_vars(item)


def _cte_names(fields: Mapping[str, Any]) -> set[str]:
    ctes = fields.get("withClause", {}).get("ctes", [])
    return {str(c["CommonTableExpr"]["ctename"]) for c in ctes if "CommonTableExpr" in c}


def _read(tree: Any, skip: set[str], mode: str = ACCESS_SHARE) -> list[Lock]:
    """ACCESS SHARE (or ``mode``) on every table the tree reads, CTE names left out."""
    found = []
    for rv in _range_vars(tree):
        name = table_name(rv)
        if name not in skip:
            found.append(Lock(mode, name))
    return found


def _dml(kind: str, fields: Mapping[str, Any]) -> list[Lock]:
    """INSERT/UPDATE/DELETE/MERGE: ROW EXCLUSIVE on the target, ACCESS SHARE on the rest."""
    target = table_name(fields["relation"])
    rest = {k: v for k, v in fields.items() if k != "relation"}
    return [Lock(ROW_EXCLUSIVE, target), *_read(rest, _cte_names(fields) | {target})]


def _select(fields: Mapping[str, Any]) -> list[Lock]:
    """ACCESS SHARE on what it reads; FOR UPDATE/SHARE: ROW SHARE on the tables it locks."""
    mode = ROW_SHARE if fields.get("lockingClause") else ACCESS_SHARE
    return _read(fields, _cte_names(fields), mode)


def _reloption_mode(command: Mapping[str, Any]) -> str:
    items = command.get("def", {}).get("List", {}).get("items", [])
    names = [
        str(i["DefElem"].get("defnamespace", "") or "") + str(i["DefElem"]["defname"])
        for i in items
        if "DefElem" in i
    ]
    light = all(n.startswith(LIGHT_RELOPTIONS) for n in names)
    return SHARE_UPDATE_EXCLUSIVE if light else ACCESS_EXCLUSIVE


def _alter_table(fields: Mapping[str, Any]) -> list[Lock]:
    """The strongest lock of its subcommands on the table, plus what the subcommands
    lock elsewhere: the referenced table of a foreign key, the partition attached."""
    table = table_name(fields["relation"])
    mode = SHARE_UPDATE_EXCLUSIVE  # AlterTableGetLockLevel's starting point
    others: list[Lock] = []
    for item in fields.get("cmds", ()):
        command = item.get("AlterTableCmd", {})
        subtype = str(command.get("subtype", ""))
        definition = command.get("def", {})
        constraint = definition.get("Constraint", {})
        if subtype == "AT_AddConstraint" and constraint.get("contype") == "CONSTR_FOREIGN":
            mode = strongest(mode, SHARE_ROW_EXCLUSIVE)
            others.append(Lock(SHARE_ROW_EXCLUSIVE, table_name(constraint["pktable"])))
        elif subtype in ("AT_SetRelOptions", "AT_ResetRelOptions"):
            mode = strongest(mode, _reloption_mode(command))
        elif subtype == "AT_DetachPartition":
            concurrent = definition.get("PartitionCmd", {}).get("concurrent")
            detach = SHARE_UPDATE_EXCLUSIVE if concurrent else ACCESS_EXCLUSIVE
            mode = strongest(mode, detach)
            others.append(Lock(detach, table_name(definition["PartitionCmd"]["name"])))
        elif subtype == "AT_AttachPartition":
            mode = strongest(mode, SHARE_UPDATE_EXCLUSIVE)
            partition = table_name(definition["PartitionCmd"]["name"])
            others.append(Lock(ACCESS_EXCLUSIVE, partition))
        else:
            mode = strongest(mode, SUBCOMMAND_MODES.get(subtype, ACCESS_EXCLUSIVE))
    return [Lock(mode, table), *others]


def _create_table(fields: Mapping[str, Any]) -> list[Lock]:
    """A new table locks nothing existing, except its parent and the tables it references:
    PARTITION OF takes ACCESS EXCLUSIVE on the parent, INHERITS SHARE UPDATE EXCLUSIVE,
    REFERENCES SHARE ROW EXCLUSIVE (as ADD FOREIGN KEY does)."""
    parent_mode = ACCESS_EXCLUSIVE if fields.get("partbound") else SHARE_UPDATE_EXCLUSIVE
    locks = [Lock(parent_mode, table_name(rv["RangeVar"])) for rv in fields.get("inhRelations", ())]
    for constraint in _constraints(fields.get("tableElts", ())):
        if constraint.get("contype") == "CONSTR_FOREIGN" and "pktable" in constraint:
            locks.append(Lock(SHARE_ROW_EXCLUSIVE, table_name(constraint["pktable"])))
    return locks


def _constraints(node: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "Constraint":
                yield value
            yield from _constraints(value)
    elif isinstance(node, list):
        for item in node:
            yield from _constraints(item)


def _drop(fields: Mapping[str, Any]) -> StatementLocks:
    kind = str(fields.get("removeType", ""))
    objects = [_names(o) for o in fields.get("objects", ()) if "List" in o]
    cascade = fields.get("behavior") == "DROP_CASCADE"
    note = "CASCADE also takes ACCESS EXCLUSIVE on every dependent object" if cascade else ""
    if kind in RELATION_OBJECTS:
        mode = SHARE_UPDATE_EXCLUSIVE if fields.get("concurrent") else ACCESS_EXCLUSIVE
        return StatementLocks(tuple(Lock(mode, ".".join(o)) for o in objects), note)
    if kind in TABLE_MEMBERS:  # the last name is the trigger / rule / policy
        return StatementLocks(
            tuple(Lock(ACCESS_EXCLUSIVE, ".".join(o[:-1])) for o in objects), note
        )
    return StatementLocks((), note or "no table lock (dropping no table)")


def _rename(fields: Mapping[str, Any]) -> list[Lock]:
    """ALTER INDEX ... RENAME takes SHARE UPDATE EXCLUSIVE (PostgreSQL 12+); renaming a
    table, a column or a constraint takes ACCESS EXCLUSIVE."""
    if "relation" not in fields:
        return []
    kind = fields.get("renameType")
    mode = SHARE_UPDATE_EXCLUSIVE if kind == "OBJECT_INDEX" else ACCESS_EXCLUSIVE
    return [Lock(mode, table_name(fields["relation"]))]


def _comment(fields: Mapping[str, Any]) -> list[Lock]:
    """COMMENT ON takes SHARE UPDATE EXCLUSIVE on the table (of a column: its table)."""
    kind = str(fields.get("objtype", ""))
    node = fields.get("object", {})
    if "List" not in node or kind not in RELATION_OBJECTS | {"OBJECT_COLUMN"}:
        return []
    name = _names(node)
    return [Lock(SHARE_UPDATE_EXCLUSIVE, ".".join(name[:-1] if kind == "OBJECT_COLUMN" else name))]


def _maintenance(kind: str, fields: Mapping[str, Any]) -> StatementLocks:
    """VACUUM, ANALYZE, CLUSTER, REINDEX, REFRESH MATERIALIZED VIEW."""
    options = {
        str(o["DefElem"]["defname"])
        for o in fields.get("options", fields.get("params", ()))
        if "DefElem" in o
    }
    if kind == "VacuumStmt":
        full = fields.get("is_vacuumcmd") and "full" in options
        mode = ACCESS_EXCLUSIVE if full else SHARE_UPDATE_EXCLUSIVE
        tables = [table_name(r["VacuumRelation"]["relation"]) for r in fields.get("rels", ())]
        return StatementLocks(
            tuple(Lock(mode, t) for t in tables),
            "" if tables else f"{mode} on every table of the database, one at a time",
        )
    if kind == "ClusterStmt":
        if "relation" not in fields:
            return StatementLocks((), "ACCESS EXCLUSIVE on every clustered table, one at a time")
        return StatementLocks((Lock(ACCESS_EXCLUSIVE, table_name(fields["relation"])),))
    if kind == "RefreshMatViewStmt":
        mode = EXCLUSIVE if fields.get("concurrent") else ACCESS_EXCLUSIVE
        return StatementLocks((Lock(mode, table_name(fields["relation"])),))
    # REINDEX: SHARE on the table and ACCESS EXCLUSIVE on the index being rebuilt;
    # CONCURRENTLY: SHARE UPDATE EXCLUSIVE on both.
    concurrent = "concurrently" in options
    if "relation" not in fields:
        return StatementLocks((), "locks every index it rebuilds, one table at a time")
    name = table_name(fields["relation"])
    if fields.get("kind") == "REINDEX_OBJECT_INDEX":
        mode = SHARE_UPDATE_EXCLUSIVE if concurrent else ACCESS_EXCLUSIVE
        return StatementLocks(
            (Lock(mode, name),),
            "and the same on its table" if concurrent else "and SHARE on its table",
        )
    if concurrent:
        return StatementLocks((Lock(SHARE_UPDATE_EXCLUSIVE, name),), "and on each of its indexes")
    return StatementLocks((Lock(SHARE, name),), "ACCESS EXCLUSIVE on each of its indexes")


def _locks(kind: str, fields: Mapping[str, Any]) -> StatementLocks | list[Lock]:
    """Data statements and the DDL of tables; the rest in ``_other_locks``."""
    if kind in ("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"):
        return _dml(kind, fields)
    if kind == "SelectStmt":
        return _select(fields)
    if kind == "IndexStmt":
        mode = SHARE_UPDATE_EXCLUSIVE if fields.get("concurrent") else SHARE
        return [Lock(mode, table_name(fields["relation"]))]
    if kind == "AlterTableStmt":
        return _alter_table(fields)
    if kind == "CreateStmt":
        return _create_table(fields)
    if kind == "DropStmt":
        return _drop(fields)
    if kind == "TruncateStmt":
        tables = [table_name(r["RangeVar"]) for r in fields.get("relations", ())]
        cascade = fields.get("behavior") == "DROP_CASCADE"
        note = "CASCADE also truncates the tables referencing them" if cascade else ""
        return StatementLocks(tuple(Lock(ACCESS_EXCLUSIVE, t) for t in tables), note)
    if kind == "LockStmt":
        mode = MODES[int(fields.get("mode", len(MODES))) - 1]
        return [Lock(mode, table_name(r["RangeVar"])) for r in fields.get("relations", ())]
    if kind == "RenameStmt":
        return _rename(fields)
    if kind == "CommentStmt":
        return _comment(fields)
    return _other_locks(kind, fields)


def _other_locks(kind: str, fields: Mapping[str, Any]) -> StatementLocks | list[Lock]:
    """Triggers, sequences, policies, statistics, maintenance, views, and what has none."""
    if kind in ("CreateTrigStmt", "AlterSeqStmt"):  # CREATE [OR REPLACE] TRIGGER, ALTER SEQUENCE
        relation = fields.get("relation") or fields.get("sequence")
        return [Lock(SHARE_ROW_EXCLUSIVE, table_name(relation))] if relation else []
    if kind in ("CreatePolicyStmt", "AlterPolicyStmt", "RuleStmt"):
        return [
            Lock(ACCESS_EXCLUSIVE, table_name(fields["table" if "table" in fields else "relation"]))
        ]
    if kind == "CreateStatsStmt":
        return [
            Lock(SHARE_UPDATE_EXCLUSIVE, table_name(r["RangeVar"]))
            for r in fields.get("relations", ())
            if "RangeVar" in r
        ]
    if kind in ("VacuumStmt", "ClusterStmt", "ReindexStmt", "RefreshMatViewStmt"):
        return _maintenance(kind, fields)
    if kind == "ViewStmt":  # OR REPLACE of an existing view: ACCESS EXCLUSIVE on it
        view = table_name(fields["view"])
        reads = _read(fields.get("query", {}), _cte_names(fields.get("query", {})))
        return [Lock(ACCESS_EXCLUSIVE, view), *reads] if fields.get("replace") else reads
    if kind == "CreateTableAsStmt":
        return _read(fields.get("query", {}), set())
    if kind in UNREADABLE:
        return StatementLocks((), UNREADABLE[kind])
    if kind in NO_TABLE:
        return StatementLocks(())
    return StatementLocks((), "not in PostgreSQL's lock table: see the statement's reference page")


def statement_locks(kind: str, fields: Mapping[str, Any]) -> StatementLocks:
    """The table locks of one statement (its parse node's type and fields), strongest
    first, each table once at its strongest mode."""
    found = _locks(kind, fields)
    if isinstance(found, StatementLocks):
        locks, note = found.locks, found.note
    else:
        locks, note = tuple(found), ""
    best: dict[str, str] = {}
    for lock in locks:
        best[lock.table] = strongest(best.get(lock.table, lock.mode), lock.mode)
    ordered = sorted(best.items(), key=lambda item: -MODES.index(item[1]))
    return StatementLocks(tuple(Lock(mode, table) for table, mode in ordered), note)
