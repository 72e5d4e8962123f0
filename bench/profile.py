#!/usr/bin/env python3
"""Where a ``python -m sqlrunner apply`` process spends its time, by category.

    python bench/profile.py                 # 5 profiled runs per case, medians
    python bench/profile.py --runs 9 --pg 15

Each case runs the CLI in a fresh interpreter under pyinstrument (a sampling
profiler, PyPI), started before anything is imported, so imports are in the
profile; ``python -c pass`` is timed on its own as the interpreter's start-up.
Samples are put in one category each:

* ``import psycopg`` / ``import sqlrunner`` / ``import pglast``: the time
  under the import system, by the outermost of those packages being imported
  (pglast is imported plainly, by ``sqlrunner.sqltext``, only when a file will
  be parsed: a no-op loads none of it);
* ``waiting for PostgreSQL``: psycopg blocked on its socket (the server working,
  or the network);
* ``psycopg (client)``: psycopg's own Python code (building and sending
  queries, reading results, connecting);
* ``parsing (libpg_query)``: pglast's ``parse_sql_json`` (its C extension) and
  sqlrunner's ``split_statements`` around it;
* ``sqlrunner``: sqlrunner's code, including the file scan and hashing;
* ``CLI (click)``: click, importing it and parsing the command line;
* ``other``.

Cases: W1 (``w1.py``, 200 tiny migrations) and W2 (the repo's ``sql/``), each
fresh (a new database) and no-op (the same command again).  Needs the bench
venv (``bash bench/tools/setup.sh`` installs pyinstrument).

The profiler's own cost falls on Python-heavy work (imports, sqlrunner's and
psycopg's code) far more than on waiting, so profiled totals run above
unprofiled ones: read the table for where the time goes, and peers.py for
how long things take.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import _server  # noqa: E402
import psycopg  # noqa: E402
import w1 as _w1  # noqa: E402
from psycopg import sql  # noqa: E402

CATEGORIES = (
    "interpreter start-up",
    "import psycopg",
    "import sqlrunner",
    "import pglast",
    "CLI (click)",
    "waiting for PostgreSQL",
    "psycopg (client)",
    "parsing (libpg_query)",
    "sqlrunner",
    "other",
)

# Runs in the child: profile the CLI from the first import on, then print the
# per-category totals as one JSON line, the last one on stderr.
CHILD = r"""
import json, os, runpy, sys
from pyinstrument import Profiler

WAITS = {"poll", "select", "wait", "wait_conn", "wait_c", "wait_epoll", "wait_select"}
CLI = "CLI (click)"
IMPORTED = {"psycopg": "import psycopg", "sqlrunner": "import sqlrunner",
            "pglast": "import pglast", "argparse": CLI, "click": CLI}

def package(path):
    p = (path or "").replace(os.sep, "/")
    if not p or p.startswith("<built-in"):
        return None
    for name in ("psycopg_binary", "psycopg", "pglast", "sqlrunner", "argparse", "click"):
        if f"/{name}/" in p or p.endswith(f"/{name}.py") or f"/_{name}" in p:
            return "psycopg" if name == "psycopg_binary" else name
    return "stdlib"

def walk(frame, imported, parent_pkg, parent_function, totals):
    function = frame.function or ""
    own_pkg = package(frame.file_path)
    if function == "[self]":
        function, pkg = parent_function, parent_pkg
    elif own_pkg in (None, "stdlib") and parent_pkg != "stdlib":
        pkg = parent_pkg  # the standard library working for psycopg or sqlrunner
    else:
        pkg = own_pkg or parent_pkg
    if imported is None and function in ("_find_and_load", "_handle_fromlist", "__import__"):
        imported = "?"
    if imported is not None and function == "<module>" and own_pkg:
        # psycopg's or pglast's modules (and what they import) count as theirs, even
        # when sqlrunner imports them; the standard library sqlrunner imports is sqlrunner's
        if imported in ("?", "sqlrunner") and own_pkg in ("psycopg", "pglast", "argparse", "click"):
            imported = own_pkg
        elif imported == "?":
            imported = own_pkg
    if imported not in (None, "?"):
        category = IMPORTED.get(imported, "other")
    elif pkg == "psycopg" and (function in WAITS or function.endswith((".poll", ".select"))):
        category = "waiting for PostgreSQL"
    elif function in ("split", "parse_sql_json", "split_statements"):
        category = "parsing (libpg_query)"
    elif pkg == "psycopg":
        category = "psycopg (client)"
    elif pkg in ("argparse", "click"):
        category = CLI
    elif pkg == "sqlrunner":
        category = pkg
    else:
        category = "other"
    own = frame.time - sum(child.time for child in frame.children)
    totals[category] = totals.get(category, 0.0) + max(own, 0.0)
    for child in frame.children:
        walk(child, imported, pkg, function, totals)

profiler = Profiler(interval=0.0005)
profiler.start()
sys.argv = ["sqlrunner", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("sqlrunner", run_name="__main__")
except SystemExit as exit:
    code = exit.code or 0
profiler.stop()
totals = {}
walk(profiler.last_session.root_frame(), None, "stdlib", "", totals)
result = {"code": code, "ms": {k: v * 1000 for k, v in totals.items()}}
sys.stderr.write("\nPROFILE " + json.dumps(result) + "\n")
"""


def startup_ms(env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
    return (time.perf_counter() - t0) * 1000


def profiled(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *argv], env=env, capture_output=True, text=True
    )
    tail = done.stderr.rsplit("PROFILE ", 1)
    if len(tail) != 2:
        raise SystemExit(f"profiled run failed: {done.stderr.strip()[-400:]}")
    result = json.loads(tail[1])
    if result["code"] != 0:
        raise SystemExit(f"sqlrunner exited {result['code']}: {done.stderr.strip()[-400:]}")
    return result["ms"]


Rows = dict[str, dict[str, list[float]]]  # case -> category -> ms per run


def profile_run(
    server: _server.Server,
    admin: psycopg.Connection,
    run: int,
    cases: dict[str, Path],
    env: dict[str, str],
    rows: Rows,
) -> None:
    """One run: each case on a new database, fresh then no-op, profiled into rows."""
    for key, sql_dir in cases.items():
        db = f"p{run}_{key.lower()}"
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(db)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
        # the command the bench times (no -q: click tries a short flag as a long one first,
        # and the NoSuchOption it raises and catches imports difflib, ~5 ms)
        cli = ["--dsn", server.uri(db), "--sql-dir", str(sql_dir), "apply"]
        for what in ("fresh", "no-op"):
            ms = profiled([*cli, "--no-verify"], env)
            ms["interpreter start-up"] = startup_ms(env)
            case = rows.setdefault(f"{key} {what}", {})
            for category in CATEGORIES:
                case.setdefault(category, []).append(ms.get(category, 0.0))
        admin.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(db)))


def print_table(rows: Rows, runs: int) -> None:
    names = list(rows)
    print(f"| category (ms, median of {runs}) | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for category in CATEGORIES:
        cells = [f"{statistics.median(rows[n][category]):.1f}" for n in names]
        print(f"| {category} | " + " | ".join(cells) + " |")
    totals = [
        f"{statistics.median([sum(v[i] for v in rows[n].values()) for i in range(runs)]):.0f}"
        for n in names
    ]
    print("| **total** | " + " | ".join(totals) + " |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="profiled runs per case (default 5)")
    ap.add_argument("--pg", default="embedded", help="embedded, or a Debian major version")
    a = ap.parse_args(argv)
    try:
        import pyinstrument  # noqa: F401
    except ImportError:
        print("pyinstrument is missing: bash bench/tools/setup.sh", file=sys.stderr)
        return 2
    import sqlrunner

    package_dir = Path(sqlrunner.__file__).parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package_dir)], check=False)
    # the CLI reads SQLRUNNER_* and DATABASE_URL as options: none of the caller's
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SQLRUNNER_", "DATABASE_URL"))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = _server.start_server(a.pg)
    work = Path(tempfile.mkdtemp(prefix="sqlrunner-profile-"))
    cases = {"W1": _w1.generate(work / "w1", 200), "W2": REPO / "sql"}
    rows: Rows = {}
    admin = psycopg.connect(server.uri("postgres"), autocommit=True)
    try:
        for run in range(a.runs):
            profile_run(server, admin, run, cases, env, rows)
            print(f"run {run + 1}/{a.runs} done", file=sys.stderr)
    finally:
        admin.close()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows, a.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
