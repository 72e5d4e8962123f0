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

Errors come back as ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, TextIO

import psycopg

import sqlrunner


def apply(dsn: str, sql_dir: str) -> None:
    """The one call site of the library: its current public API."""
    sqlrunner.apply(dsn, sql_dir, verify=False)


def bare_connect(dsn: str) -> None:
    """The floor: what any client of PostgreSQL pays for one query."""
    with psycopg.connect(dsn) as c:
        c.execute("select 1").fetchone()


def timed(fn: Any, *args: str) -> float:
    t0 = time.perf_counter_ns()
    fn(*args)
    return (time.perf_counter_ns() - t0) / 1e6


def rounds(dsn: str, sql_dir: str, iters: int) -> dict[str, list[float]]:
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
        return {"ms": timed(apply, req["dsn"], req["sql_dir"])}
    if req["op"] == "rounds":
        return rounds(req["dsn"], req["sql_dir"], int(req["iters"]))
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
