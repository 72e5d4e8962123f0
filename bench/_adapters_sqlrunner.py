"""The three ways the bench runs sqlrunner, and how it finds an importable sqlrunner.

* as a process: ``python -m sqlrunner ... apply --no-verify``, timed by wall
  clock like every peer;
* in process, first call: ``sqlrunner.apply`` timed inside a new process that
  has imported sqlrunner (``_inproc.py --first``): what a service pays at
  start-up;
* in process, repeated: a long-lived ``_inproc.py`` worker that applied before,
  given the directory each time or (``SqlrunnerLoaded``) the set read once.

Each has a floor its no-op is timed against, alternating, on the same
database right after the fresh apply (see ``_adapters.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from _adapters import REPO, Context, Tool, dist_version
from _timing import ToolFailed, alternate, first_line, run_cmds, run_process
from _workloads import Workload

INPROC = str(Path(__file__).resolve().parent / "_inproc.py")


def floor_code(uri: str) -> str:
    """The Python floor: a process that imports psycopg, connects and runs one query."""
    return f"import psycopg; psycopg.connect({uri!r}).execute('select 1')"


def find_sqlrunner(ctx: Context) -> None:
    """Find an importable sqlrunner (installed, else the repo's src/) and compile its bytecode."""
    code = "import sqlrunner; print(getattr(sqlrunner, '__version__', '') or '')"
    for extra in (None, REPO / "src"):
        env = dict(ctx.env)
        if extra is not None:
            if not (extra / "sqlrunner").is_dir():
                continue
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra), env.get("PYTHONPATH")]))
        r = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ctx.work
        )
        if r.returncode == 0:
            how = "installed" if extra is None else "from src/ via PYTHONPATH"
            ctx.sqlrunner_env = env
            ctx.sqlrunner_version = (
                f"sqlrunner {r.stdout.strip() or dist_version('sqlrunner')} ({how})"
            )
            compile_bytecode(ctx)
            return
        ctx.sqlrunner_error = f"not available (import failed: {first_line(r.stderr)})"


def compile_bytecode(ctx: Context) -> None:
    """Untimed: write sqlrunner's .pyc files, as ``pip install`` does for a wheel.

    An editable install has none, and with PYTHONDONTWRITEBYTECODE=1 (set on
    these machines) every process would compile sqlrunner's modules from
    source again: ~0.3 s that no installed copy pays.  The peers' Python
    packages come from wheels, compiled at install time.
    """
    assert ctx.sqlrunner_env is not None
    code = "import os, sqlrunner; print(os.path.dirname(sqlrunner.__file__))"
    env, cwd = ctx.sqlrunner_env, ctx.work
    r = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=cwd
    )
    if r.returncode == 0:
        compileall = [sys.executable, "-m", "compileall", "-q", r.stdout.strip()]
        subprocess.run(compileall, env=env, cwd=cwd, check=False, stdout=subprocess.DEVNULL)


class SqlrunnerTool(Tool):
    """Any way of running sqlrunner: available when it imports (see find_sqlrunner)."""

    product = "sqlrunner"

    def detect(self) -> None:
        self.version = self.ctx.sqlrunner_version
        self.reason = "" if self.ctx.sqlrunner_env else self.ctx.sqlrunner_error

    def env(self, db: str) -> dict[str, str]:
        assert self.ctx.sqlrunner_env is not None
        return self.ctx.sqlrunner_env

    def cwd(self, wl: Workload) -> Path | None:
        return self.ctx.work


class SqlrunnerProcess(SqlrunnerTool):
    key, label = "sqlrunner", "sqlrunner (process)"
    how = "`python -m sqlrunner --dsn DSN --sql-dir DIR apply --no-verify`"
    floor = "`python -c \"import psycopg; psycopg.connect(DSN).execute('select 1')\"`"

    def commands(self, wl: Workload, db: str) -> list[list[str]]:
        cli = [sys.executable, "-m", "sqlrunner", "--dsn", self.ctx.server.uri(db)]
        return [[*cli, "--sql-dir", str(wl.sql_dir), "apply", "--no-verify"]]

    def paired(self, wl: Workload, db: str, reps: int) -> tuple[list[float], list[float]]:
        floor = [[sys.executable, "-c", floor_code(self.ctx.server.uri(db))]]
        env, cwd = self.env(db), self.cwd(wl)
        return alternate(lambda: self.noop(wl, db), lambda: run_cmds(floor, env, cwd), reps)


class SqlrunnerFirstCall(SqlrunnerTool):
    key, label = "sqlrunner_first", "sqlrunner (in process, first call)"
    how = (
        "`sqlrunner.apply(DSN, DIR, verify=False)` timed inside a new process that has "
        "imported sqlrunner (`python bench/_inproc.py --first apply`): what a service pays "
        "at start-up"
    )
    floor = "the first `psycopg.connect(DSN)` + `select 1` in such a process"

    def first(self, wl: Workload, db: str, what: str) -> float:
        cmd = [sys.executable, INPROC, "--first", what, self.ctx.server.uri(db), str(wl.sql_dir)]
        _, out = run_process(cmd, self.env(db), self.cwd(wl), stdout=True)
        return float(json.loads(out)["ms"])

    def fresh(self, wl: Workload, db: str) -> float:
        return self.first(wl, db, "apply")

    def paired(self, wl: Workload, db: str, reps: int) -> tuple[list[float], list[float]]:
        return alternate(
            lambda: self.first(wl, db, "apply"), lambda: self.first(wl, db, "connect"), reps
        )


class SqlrunnerInProcess(SqlrunnerTool):
    key, label = "sqlrunner_inproc", "sqlrunner (in process, repeated)"
    how = (
        "`sqlrunner.apply(DSN, DIR, verify=False)` in a long-lived process "
        "(`python bench/_inproc.py`) that has imported sqlrunner and applied before"
    )
    floor = "a bare `psycopg.connect(DSN)` + `select 1` in the same process"
    loaded = False  # pass the directory; see SqlrunnerLoaded
    worker: subprocess.Popen[str] | None = None
    log: IO[str] | None = None

    def detect(self) -> None:
        super().detect()
        if self.available:
            self.start()

    def start(self) -> None:
        self.log = open(self.ctx.work / f"{self.key}.log", "w")  # noqa: SIM115 (closed in close())
        self.worker = subprocess.Popen(
            [sys.executable, INPROC],
            env=self.ctx.sqlrunner_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            cwd=self.ctx.work,
        )
        try:
            self.ask(None)
        except ToolFailed as e:
            self.reason = f"not available ({e})"

    def ask(self, req: dict[str, Any] | None) -> dict[str, Any]:
        """Send req (None: only read the greeting) and return the worker's answer."""
        assert self.worker is not None and self.worker.stdin and self.worker.stdout
        if req is not None:
            self.worker.stdin.write(json.dumps(req) + "\n")
            self.worker.stdin.flush()
        line = self.worker.stdout.readline()
        if not line:
            assert self.log is not None
            self.log.flush()
            tail = (self.ctx.work / f"{self.key}.log").read_text(errors="replace")
            raise ToolFailed(f"in-process worker died: {first_line(tail)}")
        resp: dict[str, Any] = json.loads(line)
        if "error" in resp:
            raise ToolFailed(resp["error"])
        return resp

    def request(self, op: str, wl: Workload, db: str) -> dict[str, Any]:
        uri, sql_dir = self.ctx.server.uri(db), str(wl.sql_dir)
        return {"op": op, "dsn": uri, "sql_dir": sql_dir, "loaded": self.loaded}

    def fresh(self, wl: Workload, db: str) -> float:
        return float(self.ask(self.request("apply", wl, db))["ms"])

    def paired(self, wl: Workload, db: str, reps: int) -> tuple[list[float], list[float]]:
        r = self.ask({**self.request("rounds", wl, db), "iters": self.ctx.iters})
        return r["apply_ms"], r["connect_ms"]

    def close(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            try:
                assert self.worker.stdin is not None
                self.worker.stdin.write('{"op": "quit"}\n')
                self.worker.stdin.close()
                self.worker.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.worker.kill()
        if self.log is not None:
            self.log.close()


class SqlrunnerLoaded(SqlrunnerInProcess):
    """Repeated calls given the set read once: the way the library offers to such callers.

    Reading 200 files costs more than a connection on this machine; a service that
    applies repeatedly in one process may load them once and pass the set in.
    """

    key, label = "sqlrunner_loaded", "sqlrunner (in process, repeated, files loaded once)"
    how = (
        "`sqlrunner.apply(DSN, files, verify=False)` in its own long-lived worker, `files` "
        "read once before timing (`sqlrunner.files.load_migration_set(DIR)`)"
    )
    loaded = True
