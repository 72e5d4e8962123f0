"""sqlrunner in process, timed from inside: a long-lived worker, or one first call.

    python bench/_inproc.py                           # the worker, JSON lines on stdin/stdout
    python bench/_inproc.py --first apply DSN SQL_DIR  # one timed first apply, prints {"ms": t}
    python bench/_inproc.py --first connect DSN        # one timed first bare connect + select 1

Both modes import psycopg and sqlrunner before anything is timed: that is what
"in process" means (a service or a test suite that imported sqlrunner and
calls ``sqlrunner.apply(dsn, ...)``).  ``--first`` times the first call in a
fresh process (what a service pays at start-up: it includes whatever
sqlrunner loads on first use, such as lazily resolved names); the worker times
repeated calls.  Worker requests:

* ``{"op": "apply", "dsn": D, "sql_dir": S}`` -> ``{"ms": t}``: one apply;
* ``{"op": "rounds", "dsn": D, "sql_dir": S, "iters": N}`` ->
  ``{"apply_ms": [...], "connect_ms": [...]}``: after one untimed round, N
  rounds of a no-op apply and a bare connect + ``select 1``, taking turns to
  go first;
* ``{"op": "quit"}``.

With ``"loaded": true`` an apply is given the migration set read once,
untimed, before it (``load_migration_set``), instead of the directory: what
a caller that applies repeatedly in one process may do (issue 11, 3).

Errors come back as ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import psycopg

import sqlrunner


def apply(dsn: str, sql_dir: Any) -> None:
    """The one call site of the library: its current public API."""
    sqlrunner.apply(dsn, sql_dir, verify=False)


def source(req: dict[str, Any]) -> Any:
    """What the apply is given: the directory, or the set read from it once (untimed)."""
    if not req.get("loaded"):
        return req["sql_dir"]
    from sqlrunner.files import load_migration_set

    return load_migration_set(Path(req["sql_dir"]))


def bare_connect(dsn: str) -> None:
    """The floor: what any client of PostgreSQL pays for one query."""
    with psycopg.connect(dsn) as c:
        c.execute("select 1").fetchone()


def timed(fn: Any, *args: Any) -> float:
    t0 = time.perf_counter_ns()
    fn(*args)
    return (time.perf_counter_ns() - t0) / 1e6


def rounds(dsn: str, sql_dir: Any, iters: int) -> dict[str, list[float]]:
    apply(dsn, sql_dir)  # one untimed round each: first use of code paths
    bare_connect(dsn)
    applies: list[float] = []
    connects: list[float] = []
    for i in range(iters):
        if i % 2 == 0:
            applies.append(timed(apply, dsn, sql_dir))
            connects.append(timed(bare_connect, dsn))
        else:
            connects.append(timed(bare_connect, dsn))
            applies.append(timed(apply, dsn, sql_dir))
    return {"apply_ms": applies, "connect_ms": connects}


def answer(req: dict[str, Any]) -> dict[str, Any]:
    if req["op"] == "apply":
        return {"ms": timed(apply, req["dsn"], source(req))}
    if req["op"] == "rounds":
        return rounds(req["dsn"], source(req), int(req["iters"]))
    return {"error": f"unknown op {req['op']!r}"}


def serve(out: TextIO) -> int:
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "quit":
            break
        try:
            resp = answer(req)
        except Exception as e:  # the bench shows it as the tool's failure
            resp = {"error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(resp) + "\n")
        out.flush()
    return 0


def first_call(what: str, dsn: str, sql_dir: str = "") -> int:
    ms = timed(apply, dsn, sql_dir) if what == "apply" else timed(bare_connect, dsn)
    sys.stdout.write(json.dumps({"ms": ms}) + "\n")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--first"]:
        return first_call(*argv[1:])
    # the protocol gets its own copy of stdout; anything else printed goes to stderr
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return serve(out)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
