"""Read an sql/ folder into Migration values, finding every flaw of the set before anything runs;
write new files from templates (``sqlrunner init`` / ``new``). No database, no parser."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidMigrationSet, Problem, UsageError

KINDS = ("forward", "rollback", "seed", "verify")
NO_TRANSACTION_MARK = "-- sqlrunner: no-transaction"
BATCHED_MARK = re.compile(r"--\s*sqlrunner:\s*batched(?=\s|$)")  # batched.py reads the rest
FILE_NAME = re.compile(r"^(?P<version>\d+)_(?P<name>[a-z0-9]+(?:_[a-z0-9]+)*)\.sql$")
IGNORED_NAMES = frozenset({".gitkeep", ".keep"})
# The ledger's version columns are bigint.
MAX_VERSION = 2**63 - 1
# A file is parsed whole and its parse tree kept (up to ~100 bytes of tree per byte of
# dense SQL such as VALUES rows): 4 MiB bounds that at a few seconds and ~400 MB, while a
# 4 MiB schema dump parses in about a second. Bigger is a data load: COPY, not a migration.
MAX_FILE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file, read once: what it is, where it is, and what it says."""

    kind: str
    version: int
    name: str
    path: Path
    checksum: str
    text: str
    no_transaction: bool

    def __repr__(self) -> str:  # the text is the file: too long to show
        return (
            f"Migration(kind={self.kind!r}, version={self.version}, name={self.name!r}, "
            f"path={self.path!r}, checksum={self.checksum!r}, "
            f"no_transaction={self.no_transaction})"
        )

    @property
    def label(self) -> str:
        """The ``NNNN_name`` stem DBAs recognise in listings."""
        return self.path.stem

    @property
    def display_path(self) -> str:
        """``forward/0002_x.sql``: short, and the same on every machine."""
        return f"{self.kind}/{self.path.name}"

    @property
    def shown_path(self) -> str:
        """The path error messages name: see ``shown_path``."""
        return shown_path(self.path, self.display_path)


@dataclass(frozen=True, slots=True)
class MigrationSet:
    """All files of an sql/ folder, each kind sorted by version.

    A caller that applies repeatedly in one process may load it once
    (``load_migration_set``) and pass it instead of a directory.
    """

    root: Path
    forward: tuple[Migration, ...]
    rollback: tuple[Migration, ...]
    seed: tuple[Migration, ...]
    verify: tuple[Migration, ...]

    def rollback_for(self, version: int) -> Migration | None:
        return next((m for m in self.rollback if m.version == version), None)

    def forward_by_version(self, version: int) -> Migration | None:
        return next((m for m in self.forward if m.version == version), None)

    def __iter__(self) -> Iterator[Migration]:
        """Every file: forward, rollback, seed, then verify."""
        yield from (*self.forward, *self.rollback, *self.seed, *self.verify)


def shown_path(path: Path, from_root: str) -> str:
    """How messages name a file: from the working directory when the file is inside it
    (a path the user can open), else from the sql dir (``from_root``)."""
    here = os.path.relpath(path)
    return from_root if here == ".." or here.startswith("../") else here


# A directory, or a set already loaded by a caller that applies repeatedly in one process.
SqlDir = str | os.PathLike[str] | MigrationSet | None


def resolve_sql_dir(sql_dir: str | os.PathLike[str] | None) -> Path:
    """``sql_dir`` if given, else ./sql when it exists, else the set shipped in the package."""
    if sql_dir is not None:
        return Path(sql_dir)
    local = Path("sql")
    if local.is_dir():
        return local
    packaged = Path(__file__).parent / "sql"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "sql"  # an editable install of the repo


def load_files(sql_dir: SqlDir) -> MigrationSet:
    """The migration set, read before connecting (a broken set is the error to report first)."""
    if isinstance(sql_dir, MigrationSet):
        return sql_dir
    return load_migration_set(resolve_sql_dir(sql_dir))


def line_and_column(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset of ``text``."""
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


def checksum_of(raw: bytes) -> str:
    """SHA-256 with CRLF/CR normalised to LF, so a Windows checkout is not drift."""
    normalised = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return hashlib.sha256(normalised).hexdigest()


def load_migration_set(root: Path) -> MigrationSet:
    """Discover and validate every file under ``root``; raise InvalidMigrationSet listing
    every flaw found."""
    files, problems = read_migration_set(root)
    if problems:
        raise InvalidMigrationSet.listing(problems)
    return files


def editor_leftover(name: str) -> bool:
    """Files editors and systems leave beside the ones being edited (vim's .swp, emacs's
    ``~`` backups and ``.#`` locks, any dotfile such as .DS_Store): never migrations, so
    ignored rather than refused; any other unknown name stays an error."""
    return name.startswith(".") or name.endswith(("~", ".swp", ".swo"))


def read_migration_set(root: Path) -> tuple[MigrationSet, tuple[Problem, ...]]:
    """Every file that could be read, and every problem of the set (for ``check``)."""
    if not root.is_dir():
        empty = MigrationSet(root, (), (), (), ())
        return empty, (Problem(None, None, None, f"sql directory not found: {root}"),)
    problems: list[Problem] = []
    by_kind: dict[str, tuple[Migration, ...]] = {}
    for kind in KINDS:
        by_kind[kind], found = _read_kind(root, kind)
        problems.extend(found)
    problems.extend(
        Problem(shown_path(p, p.name), None, None, "SQL file outside forward/rollback/seed/verify")
        for p in sorted(root.iterdir())
        if p.name not in KINDS
        and p.name not in IGNORED_NAMES
        and not p.name.startswith(".")
        and p.suffix == ".sql"
    )
    forward_labels = {(m.version, m.name) for m in by_kind["forward"]}
    problems.extend(
        Problem(m.shown_path, None, None, f"rollback without a forward file forward/{m.path.name}")
        for m in by_kind["rollback"]
        if (m.version, m.name) not in forward_labels
    )
    forward_versions = {version for version, _ in forward_labels}
    problems.extend(
        Problem(
            m.shown_path,
            None,
            None,
            f"verify file without a forward file of version {m.version:04d}: it would never run",
        )
        for m in by_kind["verify"]
        if m.version not in forward_versions
    )
    return MigrationSet(root=root, **by_kind), tuple(problems)


def _read_kind(root: Path, kind: str) -> tuple[tuple[Migration, ...], list[Problem]]:
    folder = root / kind
    if not folder.exists():
        return (), []
    if not folder.is_dir():
        return (), [Problem(shown_path(folder, kind), None, None, "expected a directory")]
    migrations: list[Migration] = []
    problems: list[Problem] = []
    for path in sorted(p for p in folder.iterdir() if not editor_leftover(p.name)):
        read = _read_file(kind, path)
        if isinstance(read, Problem):
            problems.append(read)
        else:
            migrations.append(read)
    migrations.sort(key=lambda m: m.version)
    seen: dict[int, Migration] = {}
    for migration in migrations:
        twin = seen.setdefault(migration.version, migration)
        if twin is not migration:
            problems.append(
                Problem(
                    f"{shown_path(folder, kind)}/",
                    None,
                    None,
                    f"duplicate version {migration.version:04d}: "
                    f"{twin.path.name} and {migration.path.name}",
                )
            )
    return tuple(migrations), problems


def _read_file(kind: str, path: Path) -> Migration | Problem:
    shown = shown_path(path, f"{kind}/{path.name}")
    match = FILE_NAME.match(path.name)
    if match is None:
        return Problem(shown, None, None, "unknown file; expected NNNN_snake_case_name.sql")
    version = int(match["version"])
    if version > MAX_VERSION:
        return Problem(
            shown,
            None,
            None,
            f"version {version} is too large: the ledger stores versions as bigint "
            f"(at most {MAX_VERSION}, e.g. a 14-digit timestamp)",
        )
    try:  # a directory or a broken symlink named like a migration is unreadable, not unknown
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return Problem(
                shown,
                None,
                None,
                f"{size:,} bytes is over the limit of {MAX_FILE_BYTES:,} "
                f"({MAX_FILE_BYTES // 2**20} MiB) for one file: split it, or load bulk data "
                "with COPY outside migrations",
            )
        raw = path.read_bytes()
    except OSError as exc:
        return Problem(shown, None, None, f"cannot read: {exc.strerror}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Problem(shown, None, None, f"not UTF-8 (byte {exc.start}: {raw[exc.start]:#04x})")
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        return _nul_problem(shown, text)
    first_line = text[: text.find("\n")] if "\n" in text else text
    return Migration(
        kind,
        version,
        match["name"],
        path,
        checksum_of(raw),
        text,
        first_line.strip() == NO_TRANSACTION_MARK,
    )


def _nul_problem(shown: str, text: str) -> Problem:
    """PostgreSQL's parser and libpq read C strings: the SQL would silently end at a NUL."""
    line, column = line_and_column(text, text.index("\x00"))
    utf16 = " (UTF-16? save the file as UTF-8)" if text.count("\x00") * 4 > len(text) else ""
    return Problem(
        shown,
        line,
        column,
        "NUL byte (0x00): PostgreSQL would silently cut the file here, and nothing after it "
        f"would run{utf16}; remove it",
    )


# --- templates for `sqlrunner init` and `sqlrunner new` ------------------------------------

TRANSACTIONAL = """\
-- {label}: {purpose}
-- Run by hand: psql -X -v ON_ERROR_STOP=1 -f {kind}/{label}.sql
-- Checklist: IF [NOT] EXISTS everywhere, named constraints and indexes, statements
-- on busy existing tables last; `sqlrunner lint` checks it (README, "Files").
SET lock_timeout = '5s';

BEGIN;

COMMIT;
"""

NO_TRANSACTION = f"""\
{NO_TRANSACTION_MARK}
-- {{label}}: {{purpose}}
-- Runs one statement at a time in autocommit (CREATE INDEX CONCURRENTLY, VALIDATE
-- CONSTRAINT). Every statement must be safe to re-run after a crash at any point.
"""

KEEP = ".gitkeep"  # git keeps no empty folder; the loader ignores this name


def create_skeleton(sql_dir: Path) -> list[Path]:
    """``sqlrunner init``: the four folders of a migration set, each kept by git."""
    created = []
    for kind in KINDS:
        keep = sql_dir / kind / KEEP
        if not (sql_dir / kind).exists():
            keep.parent.mkdir(parents=True)
            keep.touch()
            created.append(keep.parent)
    return created


def create_pair(sql_dir: Path, name: str, no_transaction: bool) -> list[Path]:
    """Write forward/NNNN_name.sql and rollback/NNNN_name.sql with the next version."""
    files = load_migration_set(sql_dir) if sql_dir.exists() else None
    version = max((m.version for m in files.forward), default=0) + 1 if files else 1
    label = f"{version:04d}_{name}"
    if FILE_NAME.match(f"{label}.sql") is None:
        raise UsageError(f"{name!r} is not a snake_case name (lower-case letters, digits, _)")
    template = NO_TRANSACTION if no_transaction else TRANSACTIONAL
    created = []
    for kind, purpose in (("forward", "describe the change"), ("rollback", f"undo {label}")):
        path = sql_dir / kind / f"{label}.sql"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            raise UsageError(f"{path} already exists")
        path.write_text(template.format(label=label, purpose=purpose, kind=kind), encoding="utf-8")
        created.append(path)
    return created


def is_batched(migration: Migration) -> bool:
    """Whether the file's first line marks it batched (forward files only run batched)."""
    return migration.kind == "forward" and BATCHED_MARK.match(migration.text) is not None
