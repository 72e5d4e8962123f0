"""The workloads: the same migrations in sqlrunner's layout and in every peer's format.

* W1: ``--w1-n`` (200) tiny migrations, made by ``w1.py``;
* W2: the repo's own ``sql/`` (forward, then seed), copied first so every tool
  gets the same files even if ``sql/`` is edited meanwhile; skipped while it
  does not exist;
* warm-up: a 3-file W1 every tool runs once, untimed, so binaries and modules
  are in the page cache before anything is measured.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import _formats
import w1


@dataclass
class Workload:
    """One set of migrations, with the path each peer is pointed at."""

    key: str  # "W1", "W2", "warm"
    title: str
    sql_dir: Path | None = None
    migrations: list[_formats.Migration] = field(default_factory=list)
    formats: dict[str, Path] = field(default_factory=dict)  # tool -> its copy
    skip: str = ""  # why it is not run; "" = it is


def prepared(key: str, title: str, sql_dir: Path, work: Path, psql: str) -> Workload:
    """Read sql_dir and write every peer's format of it under work."""
    migrations = _formats.load_sql_set(sql_dir)
    formats = _formats.write_all(migrations, work / "tools", psql)
    # a user's second run finds compiled migration modules: give Alembic those
    alembic_dir = formats["alembic"].parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(alembic_dir)], check=False)
    return Workload(key, title, sql_dir, migrations, formats)


def w1_workload(work: Path, n: int, psql: str) -> Workload:
    return prepared("W1", f"W1: {n} tiny migrations", w1.generate(work, n), work, psql)


def w2_workload(work: Path, source: Path, psql: str) -> Workload:
    title = "W2: the repo's sql/ (forward, then seed)"
    forward = source / "forward"
    if not forward.is_dir() or not any(forward.glob("*.sql")):
        return Workload("W2", title, skip="skipped: sql/ not present")
    sql_dir = work / "sql"
    shutil.copytree(source, sql_dir)
    wl = prepared("W2", title, sql_dir, work, psql)
    n = len(wl.migrations)
    wl.title += f": {n} file{'s' if n != 1 else ''}"
    return wl


def warm_up_workload(work: Path, psql: str) -> Workload:
    return prepared("warm", "warm-up", w1.generate(work, 3), work, psql)


def make_workloads(
    names: list[str], work: Path, psql: str, w1_n: int, w2_source: Path
) -> list[Workload]:
    """The workloads asked for (``w1``, ``w2``), in that order."""
    out = []
    if "w1" in names:
        out.append(w1_workload(work / "w1", w1_n, psql))
    if "w2" in names:
        out.append(w2_workload(work / "w2", w2_source, psql))
    return out
