"""Turn another tool's SQL into sqlrunner files without losing a statement.

``importing.py`` reads each tool's layout into ``SourceMigration`` values; this
module converts their text (psql meta-commands, transaction wrapping, a missing
last ``;``, statements that cannot run in a transaction block) and writes the
sql/ tree plus the mapping file ``adopt`` reads. Whatever it cannot convert is
kept, commented out where it would break the file, and listed as a Finding
with file:line and what to do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pglast import parser

from .errors import InvalidMigrationSet, UsageError
from .files import FILE_NAME, NO_TRANSACTION_MARK
from .sqltext import ALLOWED_BEFORE_BEGIN

MAPPING_FILE = "imported.json"
EMPTY_PLACEHOLDER = "empty placeholder: written as an empty BEGIN/COMMIT pair"
Severity = Literal["fixed", "check", "todo"]
OLD_LEDGERS = re.compile(
    r"\b(schema_migrations?|flyway_schema_history|goose_db_version|__diesel_schema_migrations|"
    r"sqitch\.(?:changes|events|tags|projects))\b",
    re.I,
)
_META = re.compile(r"^[ \t]*\\(?P<cmd>[a-zA-Z_!?]+)(?P<args>[^\n]*)$", re.M)
_OUTPUT_ONLY = frozenset({"echo", "qecho", "warn", "timing", "pset", "t", "x", "a", "unset"})
_INCLUDE = frozenset({"i", "include", "ir", "include_relative"})


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the import changed (``fixed``), wants reviewed (``check``) or could not do
    (``todo``), located in the source file."""

    where: str
    severity: Severity
    what: str
    todo: str = ""

    def __str__(self) -> str:
        tail = f": {self.todo}" if self.todo else ""
        return f"{self.where}: {self.severity}: {self.what}{tail}"


@dataclass(frozen=True, slots=True)
class SourceText:
    """One script of the source tool, with what the tool itself knows about running it."""

    path: Path
    text: str
    first_line: int = 1  # where ``text`` starts in ``path`` (dbmate and goose split one file)
    no_transaction: bool = False  # the tool was told to run it outside a transaction


@dataclass(frozen=True, slots=True)
class SourceMigration:
    """One migration as the source tool knows it; ``key`` is what its ledger records."""

    key: str
    name: str
    up: SourceText
    down: SourceText | None = None
    verify: SourceText | None = None
    kind: Literal["forward", "seed"] = "forward"
    checksum: str | None = None  # what the tool's ledger stores about the file, if anything


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What ``import_set`` wrote and everything it wants a human to know."""

    tool: str
    dest: Path
    written: tuple[Path, ...]
    findings: tuple[Finding, ...]
    kept: tuple[str, ...] = ()  # source keys already imported earlier, left as they are

    @property
    def needs_attention(self) -> bool:
        return any(f.severity == "todo" for f in self.findings)


@dataclass
class _Text:
    """Conversion state of one script: its text and what happened to it."""

    source: SourceText
    root: Path
    findings: list[Finding] = field(default_factory=list)
    shift: int = 0  # blank lines stripped from the start of the text

    def where(self, offset_line: int) -> str:
        return f"{self.source.path}:{self.source.first_line + self.shift + offset_line - 1}"

    def note(self, line: int, severity: Severity, what: str, todo: str = "") -> None:
        self.findings.append(Finding(self.where(line), severity, what, todo))


def snake_name(title: str) -> str:
    """A source title as sqlrunner's ``snake_case`` file name part."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", title)
    name = re.sub(r"[^a-z0-9]+", "_", words.lower()).strip("_")
    return name or "migration"


def expand_psql(text: str, state: _Text, variables: dict[str, str] | None = None) -> str:
    """psql meta-commands rewritten as plain SQL: ``\\i`` inlined, ``\\set`` substituted,
    output-only commands dropped; anything else commented out and listed as todo."""
    variables = {} if variables is None else variables
    out: list[str] = []
    for number, line in enumerate(text.split("\n"), 1):
        match = _META.match(line)
        if match is None:
            out.append(_substitute(line, variables, state, number))
            continue
        cmd, args = match["cmd"], match["args"].strip()
        if cmd in _INCLUDE:
            base = state.source.path.parent if cmd in ("ir", "include_relative") else state.root
            included = base / args.strip("'\"")
            try:
                body = included.read_text(encoding="utf-8")
            except OSError as exc:
                state.note(number, "todo", f"\\{cmd} {args}: cannot read", str(exc.strerror))
                out.append(f"-- {line.strip()}")
                continue
            state.note(number, "fixed", f"\\{cmd} {args}: inlined")
            out.append(expand_psql(body.rstrip("\n"), state, variables))
        elif cmd == "set" and args:
            name, _, value = args.partition(" ")
            variables[name] = _unquote(value.strip())
            state.note(number, "fixed", f"\\set {name}: substituted where used")
        elif cmd in _OUTPUT_ONLY:
            state.note(number, "fixed", f"\\{cmd}: psql output setting, dropped")
        else:
            state.note(
                number,
                "todo",
                f"psql meta-command \\{cmd} kept as a comment",
                "rewrite it as SQL (sqlrunner runs files through the server, not psql)",
            )
            out.append(f"-- [import: psql only] {line.strip()}")
    return "\n".join(out)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    return value


# psql substitutes :x, :'x' and :"x" outside quotes, comments and dollar quotes; one
# alternation scans them all left to right, so a quoted ':' is never taken for a variable.
_LEXEME = re.compile(
    r"(?<![:\w]):(?:'(?P<literal>\w+)'|\"(?P<ident>\w+)\"|(?P<raw>[A-Za-z_]\w*))"
    r"|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$(?P<tag>\w*)\$.*?\$(?P=tag)\$|--[^\n]*|/\*.*?\*/",
    re.S,
)


def _substitute(line: str, variables: dict[str, str], state: _Text, number: int) -> str:
    if ":" not in line:
        return line

    def one(match: re.Match[str]) -> str:
        literal, identifier, raw = match["literal"], match["ident"], match["raw"]
        name = literal or identifier or raw
        if name is None:  # a string, identifier, comment or dollar quote: as it is
            return match[0]
        if name not in variables:
            if raw is None:
                state.note(
                    number,
                    "todo",
                    f"psql variable {match[0]} is never set",
                    "replace it with its value",
                )
            return match[0]
        value = variables[name]
        if literal:
            return "'" + value.replace("'", "''") + "'"
        if identifier:
            return '"' + value.replace('"', '""') + '"'
        return value

    return _LEXEME.sub(one, line)


@dataclass(frozen=True, slots=True)
class _Parsed:
    kinds: tuple[str, ...]  # parse node type per statement
    fields: tuple[dict[str, Any], ...]
    slices: tuple[slice, ...]
    last_token_end: int  # offset after the last non-comment token, -1 when none
    ends_with_semicolon: bool
    semicolons: tuple[int, ...]  # offsets of top-level-or-not ';' tokens


def _parse(text: str) -> _Parsed:
    nodes = json.loads(parser.parse_sql_json(text))["stmts"]
    slices = tuple(parser.split(text, only_slices=True))
    tokens = [t for t in parser.scan(text) if t.name not in ("SQL_COMMENT", "C_COMMENT")]
    kinds, fields = [], []
    for raw in nodes:
        ((kind, body),) = raw["stmt"].items()
        kinds.append(kind)
        fields.append(body)
    end = tokens[-1].end + 1 if tokens else -1
    return _Parsed(
        tuple(kinds),
        tuple(fields),
        slices,
        end,
        bool(tokens) and tokens[-1].name == "ASCII_59",
        tuple(t.start for t in tokens if t.name == "ASCII_59"),
    )


def outside_transaction(kind: str, fields: dict[str, Any]) -> str | None:
    """Why PostgreSQL refuses this statement inside a transaction block, or None."""
    if kind in ("IndexStmt", "DropStmt") and fields.get("concurrent"):
        return "CONCURRENTLY"
    if kind == "ReindexStmt" and any(
        p.get("DefElem", {}).get("defname") == "concurrently" for p in fields.get("params", ())
    ):
        return "REINDEX CONCURRENTLY"
    if kind == "VacuumStmt" and fields.get("is_vacuumcmd"):
        return "VACUUM"
    if kind == "AlterTableStmt" and any(
        c.get("AlterTableCmd", {}).get("def", {}).get("PartitionCmd", {}).get("concurrent")
        for c in fields.get("cmds", ())
    ):
        return "DETACH PARTITION CONCURRENTLY"
    if kind == "CreateSubscriptionStmt":
        return "CREATE SUBSCRIPTION"
    return {
        "AlterSystemStmt": "ALTER SYSTEM",
        "CreatedbStmt": "CREATE DATABASE",
        "DropdbStmt": "DROP DATABASE",
        "CreateTableSpaceStmt": "CREATE TABLESPACE",
        "DropTableSpaceStmt": "DROP TABLESPACE",
    }.get(kind)


def _transaction(kind: str, fields: dict[str, Any]) -> str | None:
    if kind != "TransactionStmt":
        return None
    return str(fields["kind"]).removeprefix("TRANS_STMT_")


def convert_script(
    source: SourceText, root: Path, role: Literal["forward", "rollback", "seed"]
) -> tuple[str, list[Finding]]:
    """One sqlrunner forward, rollback or seed file from a source script.

    Wrapped in BEGIN/COMMIT unless it already is, or the tool ran it outside a
    transaction, or it holds a statement PostgreSQL refuses in a transaction
    block (then it becomes a ``-- sqlrunner: no-transaction`` file).
    """
    state = _Text(source, root)
    text = _stripped(expand_psql(source.text, state), state)
    try:
        parsed = _parse(text)
    except parser.ParseError as exc:
        offset = exc.args[1] if len(exc.args) > 1 else 0
        state.note(
            text.count("\n", 0, offset) + 1,
            "todo",
            f"syntax error: {exc.args[0]}",
            "fix the SQL; the file was written unchanged",
        )
        return f"BEGIN;\n{text}\nCOMMIT;\n", state.findings
    if parsed.last_token_end >= 0 and not parsed.ends_with_semicolon:
        text = text[: parsed.last_token_end] + ";" + text[parsed.last_token_end :]
        state.note(text.count("\n", 0, parsed.last_token_end) + 1, "fixed", "added the last ';'")
    _notes(state, text, parsed, role)
    control = [
        (i, c)
        for i, c in enumerate(
            _transaction(k, f) for k, f in zip(parsed.kinds, parsed.fields, strict=True)
        )
        if c is not None
    ]
    blockers = [
        (i, why)
        for i, (k, f) in enumerate(zip(parsed.kinds, parsed.fields, strict=True))
        if (why := outside_transaction(k, f)) is not None
    ]
    if not parsed.kinds:
        state.note(1, "fixed", EMPTY_PLACEHOLDER)
        return (f"{text}\n" if text else "") + "BEGIN;\nCOMMIT;\n", state.findings
    if control:
        return _own_transaction(text, parsed, control, blockers, state), state.findings
    if source.no_transaction or blockers:
        return _no_transaction(text, parsed, blockers, source, state), state.findings
    return f"BEGIN;\n{text}\nCOMMIT;\n", state.findings


def _own_transaction(
    text: str,
    parsed: _Parsed,
    control: list[tuple[int, str]],
    blockers: list[tuple[int, str]],
    state: _Text,
) -> str:
    """A script with its own transaction control: kept when it is one outer BEGIN ...
    COMMIT (SETs before it moved inside), every other shape a todo."""
    first, last = control[0], control[-1]
    wrapped = (
        len(control) == 2
        and first[1] in ("BEGIN", "START")
        and last[1] == "COMMIT"
        and last[0] == len(parsed.kinds) - 1
    )
    if not wrapped:
        line = _line_of(text, parsed.slices[first[0]])
        state.note(
            line,
            "todo",
            "transaction control other than one outer BEGIN ... COMMIT",
            "split the file so each part is one BEGIN ... COMMIT or a no-transaction file",
        )
    elif parsed.fields[first[0]].get("options"):
        state.note(
            _line_of(text, parsed.slices[first[0]]),
            "todo",
            "BEGIN with options (isolation level, read only)",
            "remove them: sqlrunner runs the body in its own transaction",
        )
    elif first[0] > 0:
        text = _sets_into_transaction(text, parsed, first[0], state)
    for index, why in blockers:
        state.note(
            _line_of(text, parsed.slices[index]),
            "todo",
            f"{why} inside BEGIN ... COMMIT fails in PostgreSQL",
            "move it to its own no-transaction migration",
        )
    return text + "\n"


def _no_transaction(
    text: str,
    parsed: _Parsed,
    blockers: list[tuple[int, str]],
    source: SourceText,
    state: _Text,
) -> str:
    """A script the tool ran outside a transaction, or that PostgreSQL refuses in one."""
    if blockers and not source.no_transaction:
        state.note(
            _line_of(text, parsed.slices[blockers[0][0]]),
            "fixed",
            f"{blockers[0][1]} cannot run in a transaction block: written as no-transaction",
        )
    if len(parsed.kinds) > 1:
        state.note(
            1,
            "check",
            "no-transaction file with several statements",
            "each must be safe to re-run after a crash (IF NOT EXISTS / IF EXISTS)",
        )
    return f"{NO_TRANSACTION_MARK}\n{text}\n"


def _sets_into_transaction(text: str, parsed: _Parsed, begin: int, state: _Text) -> str:
    """Sqitch scripts often ``SET client_min_messages`` before BEGIN; sqlrunner allows only
    the two timeouts there, so the SETs move just after BEGIN (same effect for the file)."""
    before = range(begin)
    odd = next((i for i in before if parsed.kinds[i] != "VariableSetStmt"), None)
    if odd is not None:
        state.note(
            _line_of(text, parsed.slices[odd]),
            "todo",
            "statement before BEGIN",
            "move it inside BEGIN ... COMMIT, or into its own migration",
        )
        return text
    if all(parsed.fields[i].get("name") in ALLOWED_BEFORE_BEGIN for i in before):
        return text
    head = parsed.slices[0].start or 0
    start = parsed.slices[begin].start or 0
    while text[start].isspace():
        start += 1
    end = next(p for p in parsed.semicolons if p >= (parsed.slices[begin].stop or 0)) + 1
    state.note(_line_of(text, parsed.slices[0]), "fixed", "SET before BEGIN moved after it")
    return text[:head] + text[start:end] + "\n" + text[head:start].rstrip() + text[end:]


def _stripped(text: str, state: _Text) -> str:
    """The text without surrounding blank lines; findings keep pointing at source lines."""
    body = text.lstrip("\n")
    state.shift = len(text) - len(body)
    return body.rstrip("\n")


def _line_of(text: str, part: slice) -> int:
    start = part.start or 0
    while start < len(text) and text[start].isspace():
        start += 1
    return text.count("\n", 0, start) + 1


def _notes(state: _Text, text: str, parsed: _Parsed, role: str) -> None:
    for part, kind, body in zip(parsed.slices, parsed.kinds, parsed.fields, strict=True):
        statement = text[part]
        ledger = OLD_LEDGERS.search(re.sub(r"--[^\n]*", "", statement))
        if ledger:
            state.note(
                _line_of(text, part),
                "todo",
                f"refers to the old tool's ledger {ledger[0]}",
                "sqlrunner keeps its own ledger; remove or rewrite this statement",
            )
        if (
            role == "forward"
            and kind == "InsertStmt"
            and body.get("selectStmt", {}).get("SelectStmt", {}).get("valuesLists")
        ):
            table = body["relation"]["relname"]
            state.note(
                _line_of(text, part),
                "check",
                f"INSERT INTO {table} looks like reference data",
                "move it to sql/seed/ if it is; rows a forward file adds count as data "
                "at risk when a rollback drops the table",
            )


def convert_verify(source: SourceText, root: Path, name: str) -> tuple[str, list[Finding]]:
    """A Sqitch-style verify script (fails by raising) as sqlrunner checks.

    Each SELECT becomes one ``(check, ok, detail)`` row whose query still runs the
    original in full (``count(q)`` reads every column, so no expression that would
    raise is optimised away); other statements (DO blocks) stay as they are: an
    error fails verification in sqlrunner too. Transaction control is dropped.
    """
    state = _Text(source, root)
    text = _stripped(expand_psql(source.text, state), state)
    try:
        parsed = _parse(text)
    except parser.ParseError as exc:
        state.note(1, "todo", f"syntax error: {exc.args[0]}", "fix the verify script")
        return "", state.findings
    out = [f"-- converted from {source.path.name}: each check passes when its query runs"]
    number = 0
    for part, kind, body in zip(parsed.slices, parsed.kinds, parsed.fields, strict=True):
        statement = text[part].strip()
        if _transaction(kind, body) is not None:
            continue
        if kind == "SelectStmt":
            number += 1
            label = f"{name} #{number} (line {_line_of(text, part)})".replace("'", "''")
            out.append(
                f"SELECT '{label}' AS check, true AS ok, count(q)::text || ' row(s)' AS detail\n"
                f"FROM (\n{statement}\n) AS q;"
            )
        else:
            out.append(statement + ";")
    state.note(1, "fixed", "verify script converted to (check, ok, detail) rows")
    return "\n".join(out) + "\n", state.findings


@dataclass(frozen=True, slots=True)
class _Planned:
    path: Path
    text: str


def import_set(
    tool: str,
    migrations: Sequence[SourceMigration],
    source_root: Path,
    dest: Path,
    *,
    verify: Literal["convert", "skip"] = "convert",
    extra: Iterable[Finding] = (),
    project: str | None = None,
) -> ImportReport:
    """Write ``migrations`` (in source order) as an sql/ tree under ``dest``, plus the mapping.

    Nothing is written until every file converted. A dest that already holds forward
    files must hold the mapping of an earlier import from the same tool: source keys
    it lists keep their versions and files, new ones are numbered after the newest.
    """
    _refuse_duplicates(migrations)
    mapping = _read_mapping(dest, tool)
    taken = {k: {int(e["version"]) for e in mapping[k].values()} for k in ("forward", "seed")}
    next_version = {k: max(v, default=0) + 1 for k, v in taken.items()}
    findings = list(extra)
    planned: list[_Planned] = []
    kept: list[str] = []
    for migration in migrations:
        entries = mapping[migration.kind]
        if migration.key in entries:
            kept.append(migration.key)
            if migration.checksum not in (None, entries[migration.key].get("checksum")):
                findings.append(
                    Finding(
                        f"{migration.up.path}:1",
                        "check",
                        "changed since the last import; its sqlrunner file was left as it was",
                        "port the change by hand as a new migration",
                    )
                )
            continue
        version = next_version[migration.kind]
        next_version[migration.kind] += 1
        name = snake_name(migration.name)
        stem = f"{version:04d}_{name}.sql"
        assert FILE_NAME.match(stem), stem
        planned.extend(_convert_one(migration, stem, source_root, dest, verify, findings))
        entries[migration.key] = {
            "version": version,
            "name": name,
            "source": str(migration.up.path.relative_to(source_root)),
            "checksum": migration.checksum,
        }
    mapping["tool"] = tool
    if project is not None:
        mapping["project"] = project
    path = _write(planned, mapping, dest)
    return ImportReport(
        tool, dest, (*(p.path for p in planned), path), tuple(findings), tuple(kept)
    )


def _write(planned: list[_Planned], mapping: dict[str, Any], dest: Path) -> Path:
    """Every planned file, refused whole if one exists, then the mapping (its path)."""
    for item in planned:
        if item.path.exists():
            raise UsageError(f"{item.path} already exists; import into an empty sql directory")
    for item in planned:
        item.path.parent.mkdir(parents=True, exist_ok=True)
        item.path.write_text(item.text, encoding="utf-8")
    path = dest / MAPPING_FILE
    path.write_text(json.dumps(mapping, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def _convert_one(
    migration: SourceMigration,
    stem: str,
    source_root: Path,
    dest: Path,
    verify: Literal["convert", "skip"],
    findings: list[Finding],
) -> list[_Planned]:
    """The sqlrunner files of one source migration (its up, down and verify scripts),
    adding what a human must know to ``findings``."""
    text, notes = convert_script(migration.up, source_root, migration.kind)
    findings.extend(notes)
    planned = [_Planned(dest / migration.kind / stem, text)]
    if migration.down is not None:
        text, notes = convert_script(migration.down, source_root, "rollback")
        findings.extend(notes)
        planned.append(_Planned(dest / "rollback" / stem, text))
    elif migration.kind == "forward":
        planned.extend(_without_down(migration, notes, dest / "rollback" / stem, findings))
    if migration.verify is None:
        return planned
    if verify == "skip":
        findings.append(
            Finding(
                f"{migration.verify.path}:1",
                "check",
                "verify script not imported (verify='skip')",
                "write sql/verify/" + stem + " by hand if you want it",
            )
        )
        return planned
    text, notes = convert_verify(migration.verify, source_root, migration.name)
    findings.extend(notes)
    if text:
        planned.append(_Planned(dest / "verify" / stem, text))
    return planned


def _refuse_duplicates(migrations: Sequence[SourceMigration]) -> None:
    """Two source files with one ledger key: the tool itself refuses them, and keeping one
    would drop the other's statements without a word."""
    seen: dict[tuple[str, str], SourceMigration] = {}
    for migration in migrations:
        first = seen.setdefault((migration.kind, migration.key), migration)
        if first is not migration:
            raise InvalidMigrationSet(
                f"{first.up.path} and {migration.up.path} have the same version "
                f"{migration.key}: rename one (nothing was written)"
            )


def _without_down(
    migration: SourceMigration, up_notes: list[Finding], path: Path, findings: list[Finding]
) -> list[_Planned]:
    """A forward migration the source has no down script for.

    An empty placeholder gets an empty rollback: golang-migrate, goose and dbmate roll
    back past a missing down as a no-op, and an irreversible placeholder would stop every
    sqlrunner rollback in front of it. Anything else stays irreversible, said out loud.
    """
    if any(f.what == EMPTY_PLACEHOLDER for f in up_notes):
        findings.append(
            Finding(
                f"{migration.up.path}:1",
                "fixed",
                "no down script for an empty placeholder: written an empty rollback",
            )
        )
        return [_Planned(path, "BEGIN;\nCOMMIT;\n")]
    findings.append(
        Finding(
            f"{migration.up.path}:1",
            "check",
            "no down script: irreversible in sqlrunner (rollback stops in front of it)",
            f"write rollback/{path.name} if it can be undone",
        )
    )
    return []


def read_mapping(sql_dir: Path) -> dict[str, Any]:
    """The mapping an import wrote (source key -> sqlrunner version, per kind)."""
    path = sql_dir / MAPPING_FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"{path} not found: run `sqlrunner import --from TOOL SRC` first"
        ) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable mapping file: {exc}") from None
    return data


def _read_mapping(dest: Path, tool: str) -> dict[str, Any]:
    if not (dest / MAPPING_FILE).exists():
        if any((dest / "forward").glob("*.sql")):
            raise UsageError(
                f"{dest}/forward already holds files and no {MAPPING_FILE}: "
                "import into an empty sql directory"
            )
        return {"tool": tool, "forward": {}, "seed": {}}
    mapping = read_mapping(dest)
    if mapping.get("tool") != tool:
        raise UsageError(
            f"{dest} was imported from {mapping.get('tool')}, not {tool}: use another --sql-dir"
        )
    mapping.setdefault("forward", {})
    mapping.setdefault("seed", {})
    return mapping
