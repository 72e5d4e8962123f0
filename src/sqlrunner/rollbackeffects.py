"""What rollback files do to data, read from their parse trees alone (no database):
the objects each ``DROP`` and ``ALTER ... DROP COLUMN | ATTRIBUTE`` names, the tables
each ``TRUNCATE`` names, and the statements whose effect cannot be read at all.

The data-loss check (dataloss.py) then asks the catalog what those reach and counts
what they hold; keeping the reading apart keeps it testable without a server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .seedrows import quoted_name
from .session import identifier
from .sqltext import Script, Statement

# removeType of a DropStmt -> how its objects are named and found in the catalog
_BY_REGCLASS = frozenset(
    {"OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_SEQUENCE", "OBJECT_FOREIGN_TABLE"}
)
_BY_REGTYPE = frozenset({"OBJECT_TYPE", "OBJECT_DOMAIN"})

# Statements whose effect cannot be read from their text: confirmed like a data loss.
UNCHECKED = {
    "DoStmt": "a DO block runs SQL that cannot be checked for data loss",
    "CallStmt": "CALL runs a procedure that cannot be checked for data loss",
    "DropOwnedStmt": "DROP OWNED drops whatever a role owns: not checked for data loss",
}


@dataclass(frozen=True, slots=True)
class Origin:
    """A rollback statement that drops or empties something, and where it is."""

    where: str  # rollback/0003_app.sql:4
    text: str  # DROP SCHEMA app CASCADE
    named: bool = False  # the statement names the table or column itself: no "why" needed

    def why(self, verb: str) -> str:
        return f"{verb} by {self.text} at {self.where}"


@dataclass(frozen=True, slots=True)
class Drop:
    """One object a statement names: its catalog lookup, and whether CASCADE applies."""

    lookup: str  # regclass | regtype | regnamespace | extension | column
    name: str  # quoted, as to_regclass() and friends read it
    column: str | None
    cascade: bool
    origin: int


@dataclass(frozen=True, slots=True)
class Truncate:
    """One table a TRUNCATE names; ``inh``: its inheritance children too (no ONLY)."""

    name: str
    inh: bool
    cascade: bool
    origin: int


@dataclass
class RollbackEffects:
    """What the rollback files do, as read from their parse trees (no database)."""

    origins: list[Origin] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)
    truncates: list[Truncate] = field(default_factory=list)
    attributes: list[Drop] = field(default_factory=list)  # ALTER TYPE ... DROP ATTRIBUTE
    unchecked: list[str] = field(default_factory=list)


def read_effects(scripts: Sequence[Script]) -> RollbackEffects:
    """Every drop, truncate and unchecked statement of the files, in file order."""
    effects = RollbackEffects()
    for script in scripts:
        for statement in script.statements:
            where = f"{script.migration.display_path}:{statement.line}"
            _read_statement(effects, statement, where)
    return effects


def _read_statement(effects: RollbackEffects, statement: Statement, where: str) -> None:
    fields = statement.fields
    kind = statement.kind
    unchecked = UNCHECKED.get(kind)
    if unchecked is not None:
        effects.unchecked.append(f"{where}: {unchecked}")
        return
    origin = len(effects.origins)
    cascade = fields.get("behavior") == "DROP_CASCADE"
    summary = " ".join(statement.text.split())[:80]
    if kind == "DropStmt":
        remove = fields.get("removeType")
        for obj in fields.get("objects", ()):
            lookup_name = _drop_target(str(remove), obj)
            if lookup_name is not None:
                effects.drops.append(Drop(*lookup_name, None, cascade, origin))
        effects.origins.append(Origin(where, summary))
    elif kind == "TruncateStmt":
        for relation in fields.get("relations", ()):
            rangevar = relation["RangeVar"]
            effects.truncates.append(
                Truncate(quoted_name(rangevar), bool(rangevar.get("inh")), cascade, origin)
            )
        effects.origins.append(Origin(where, summary))
    elif kind == "AlterTableStmt" and fields.get("objtype") in ("OBJECT_TABLE", "OBJECT_TYPE"):
        table = quoted_name(fields["relation"])
        dropped = effects.drops if fields["objtype"] == "OBJECT_TABLE" else effects.attributes
        for command in fields.get("cmds", ()):
            cmd = command.get("AlterTableCmd", {})
            if cmd.get("subtype") == "AT_DropColumn":
                column_cascade = cmd.get("behavior") == "DROP_CASCADE"
                dropped.append(Drop("column", table, str(cmd["name"]), column_cascade, origin))
        effects.origins.append(Origin(where, summary))


def _strings(items: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(item["String"]["sval"]) for item in items]


def _drop_target(remove: str, obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(catalog lookup, quoted name) of one object of a DROP, or None when it holds no data."""
    if remove in _BY_REGCLASS:
        return "regclass", identifier(*_strings(obj["List"]["items"]))
    if remove in _BY_REGTYPE:
        return "regtype", identifier(*_strings(obj["TypeName"]["names"]))
    if remove == "OBJECT_SCHEMA":
        return "regnamespace", identifier(obj["String"]["sval"])
    if remove == "OBJECT_EXTENSION":
        return "extension", str(obj["String"]["sval"])
    return None
