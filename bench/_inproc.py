"""In-process timing worker for peers.py.

peers.py starts this once (``python bench/_inproc.py``) and talks JSON lines
over stdin/stdout.  sqlrunner and psycopg are imported at start-up, outside
any timed region: that is what "in process" means (a web app or a test suite
that calls ``sqlrunner.apply(dsn)`` at start).

Requests:

* ``{"op": "fresh", "dsn": D, "sql_dir": S}`` -> ``{"ms": t}``: one
  ``sqlrunner.apply(D, sql_dir=S, verify=False)``.
* ``{"op": "noop", "dsn": D, "sql_dir": S, "iters": N}`` ->
  ``{"apply_ms": [...], "connect_ms": [...]}``: N rounds, each a no-op
  ``sqlrunner.apply`` and a bare ``psycopg.connect(D)`` + ``select 1`` +
  close (which goes first alternates), so both see the same machine.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> int:
    # the protocol gets its own copy of stdout; anything the library prints
    # goes to stderr instead
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        import psycopg

        import sqlrunner

        apply = sqlrunner.apply
    except Exception as e:  # reported, peers.py marks the row unavailable
        out.write(json.dumps({"ready": False, "error": f"{type(e).__name__}: {e}"}) + "\n")
        out.flush()
        return 1
    out.write(
        json.dumps({"ready": True, "version": getattr(sqlrunner, "__version__", None)}) + "\n"
    )
    out.flush()

    def bare(dsn: str) -> None:
        with psycopg.connect(dsn) as c:
            c.execute("select 1").fetchone()

    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req["op"] == "fresh":
                t0 = time.perf_counter_ns()
                apply(req["dsn"], sql_dir=req["sql_dir"], verify=False)
                resp = {"ms": (time.perf_counter_ns() - t0) / 1e6}
            elif req["op"] == "noop":
                dsn, sql_dir = req["dsn"], req["sql_dir"]
                a, b = [], []
                # one untimed round each: first use of code paths
                apply(dsn, sql_dir=sql_dir, verify=False)
                bare(dsn)
                for i in range(int(req["iters"])):
                    # alternate which goes first
                    for which in (0, 1) if i % 2 == 0 else (1, 0):
                        t0 = time.perf_counter_ns()
                        if which == 0:
                            apply(dsn, sql_dir=sql_dir, verify=False)
                        else:
                            bare(dsn)
                        (a if which == 0 else b).append((time.perf_counter_ns() - t0) / 1e6)
                resp = {"apply_ms": a, "connect_ms": b}
            elif req["op"] == "quit":
                return 0
            else:
                resp = {"error": f"unknown op {req['op']!r}"}
        except Exception as e:
            resp = {"error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(resp) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
