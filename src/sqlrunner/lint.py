"""``sqlrunner lint``: squawk on the files about to run (or the files given).

squawk (https://squawkhq.com, the ``lint`` extra) knows which DDL blocks
writers, rewrites tables or cannot be re-run; it reads its inline
``-- squawk-ignore rule`` comments and its ``.squawk.toml`` itself. sqlrunner
chooses the files, passes the project's rule set, and tells squawk the truth
about transactions: every file is linted as it is written, never with
``--assume-in-transaction``: a transactional file carries its own
``BEGIN … COMMIT`` (squawk would call the pair nested), and a no-transaction
file runs one statement at a time in autocommit.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from .errors import SqlRunnerError, UsageError
from .ledger import LedgerTables

NOT_INSTALLED = (
    "squawk is not installed: pip install 'sqlrunner[lint]' (the squawk-cli package), "
    "or put squawk on PATH"
)


@dataclass(frozen=True, slots=True)
class Finding:
    """One squawk finding, 1-based like every other position sqlrunner prints."""

    file: str
    line: int
    column: int
    rule: str
    message: str
    help: str | None = None
    level: str = "warning"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column} {self.rule} {self.message}"


@dataclass(frozen=True, slots=True)
class LintReport:
    """The files linted, what squawk found, and why these files (pending, all, given)."""

    files: tuple[str, ...]
    findings: tuple[Finding, ...]
    chosen: str
    excluded_rules: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.findings


def squawk_path() -> str:
    """squawk on PATH, else beside this interpreter (a venv used without activating it)."""
    found = shutil.which("squawk") or shutil.which("squawk", path=str(Path(sys.executable).parent))
    if found is None:
        raise UsageError(NOT_INSTALLED)
    return found


def squawk_config_rules(start: Path) -> tuple[Path | None, tuple[str, ...]]:
    """The ``.squawk.toml`` squawk would read (this directory or a parent) and its
    excluded rules: a ``--exclude`` on squawk's command line replaces them, so sqlrunner
    passes the union."""
    for directory in (start, *start.parents):
        candidate = directory / ".squawk.toml"
        if candidate.is_file():
            try:
                with candidate.open("rb") as f:
                    rules = tomllib.load(f).get("excluded_rules", [])
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise UsageError(f"{candidate}: not readable as TOML: {exc}") from None
            return candidate, tuple(str(r) for r in rules)
    return None, ()


def lint_files(
    files: Sequence[str],
    *,
    chosen: str = "the files given",
    excluded_rules: Sequence[str] = (),
    pg_version: str | None = None,
) -> LintReport:
    """Run squawk once over ``files``; findings become ``Finding`` values."""
    if not files:
        return LintReport((), (), chosen, tuple(excluded_rules))
    squawk = squawk_path()
    config, from_config = squawk_config_rules(Path.cwd())
    rules = tuple(dict.fromkeys([*from_config, *excluded_rules]))
    argv = [squawk, "--reporter", "json", "--no-assume-in-transaction"]
    if config is not None:
        argv.append(f"--config={config}")
    if rules:
        argv.append("--exclude=" + ",".join(rules))
    if pg_version:
        argv.append(f"--pg-version={pg_version}")
    done = subprocess.run(
        [*argv, *files], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300
    )
    try:
        if done.returncode not in (0, 1):  # 1: findings
            raise ValueError(done.returncode)
        rows: list[dict[str, Any]] = json.loads(done.stdout or "[]")
    except ValueError:  # json.JSONDecodeError is one
        first = next((x for x in done.stderr.splitlines() if x.strip()), "no output")
        raise SqlRunnerError(f"squawk failed (exit {done.returncode}): {first}") from None
    findings = tuple(
        Finding(
            str(row.get("file", "")),
            int(row.get("line", 0)) + 1,  # squawk counts lines and columns from 0
            int(row.get("column", 0)) + 1,
            str(row.get("rule_name", "")),
            " ".join(str(row.get("message", "")).split()),
            row.get("help"),
            str(row.get("level", "warning")).lower(),
        )
        for row in rows
    )
    return LintReport(tuple(files), findings, chosen, rules)


def choose_files(
    dsn: str | None,
    sql_dir: str | None,
    tables: LedgerTables,
    every: bool,
    wait: float = 0,
) -> tuple[list[str], str, str | None]:
    """(paths, why these, server version): the pending forward files and their rollback
    files when the database answers; every forward and rollback file with ``every``, without
    a database, or when it cannot be reached (the reason is the second item)."""
    from . import ledger
    from .errors import ConnectionFailed
    from .files import load_files
    from .session import connect

    files = load_files(sql_dir)
    everything = [m.shown_path for m in (*files.forward, *files.rollback)]
    if every:
        return everything, "every forward and rollback file (--all)", None
    if dsn is None:
        return everything, "every forward and rollback file (no database given)", None
    try:
        with connect(dsn, wait=wait) as conn:
            rows = ledger.read_rows(conn, tables, when=False)
            number = conn.info.server_version
    except ConnectionFailed as exc:
        return everything, f"every forward and rollback file (database not reachable: {exc})", None
    applied = {r.version for r in rows if r.kind == "forward"}
    pending = [m for m in files.forward if m.version not in applied]
    undo = [r for r in map(files.rollback_for, (m.version for m in pending)) if r]
    paths = [m.shown_path for m in (*pending, *undo)]
    return (
        paths,
        "the pending forward files and their rollback files",
        (f"{number // 10000}.{number % 10000}"),
    )
