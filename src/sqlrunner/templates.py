"""``sqlrunner new``: the next forward + rollback pair, written from a template."""

from __future__ import annotations

from pathlib import Path

from .errors import UsageError
from .files import FILE_NAME, NO_TRANSACTION_MARK, load_migration_set

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


KINDS = ("forward", "rollback", "seed", "verify")
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
