"""Tool adapters: how each peer applies a workload, and how it is found.

(sqlrunner's three ways are in ``_adapters_sqlrunner.py``, on the same base.)

Each adapter has a key (the ``--skip`` name), a label (its table row), a
``how`` (printed under the table), and runs a fresh apply and, for tools that
keep state, a no-op apply (the same command again on the migrated database).
Process tools are timed by wall clock around their process or processes;
sqlrunner in process is timed inside the process (``_inproc.py``).  Adapters
with a ``floor`` also time their no-op alternating with that floor, on the
same database right after the fresh apply: the server is then still writing
out what the apply dirtied (200 tables for W1), which slows every process
started then, so a ratio needs both under the same load.  How each peer gets
the same migrations, and the same transaction shape, is in ``_formats.py``.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from _server import Server
from _timing import run_cmds
from _workloads import Workload

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TOOLS_DIR = HERE / ".tools"
SETUP_HINT = "run `bash bench/tools/setup.sh`"


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


def executable(name: str) -> str | None:
    """name from this interpreter's bin directory (the bench venv), else from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


class Context:
    """What every adapter shares: the server, the environments, the work directory."""

    def __init__(self, server: Server, work: Path, iters: int) -> None:
        self.server = server
        self.work = work
        self.iters = iters  # in-process rounds per workload and run
        # no libpq or sqlrunner settings of the caller's (the CLI reads SQLRUNNER_* and
        # DATABASE_URL as options): every tool is told its database on its command line
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PG", "SQLRUNNER_")) and k != "DATABASE_URL"
        }
        self.env.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
        self.sqlrunner_env: dict[str, str] | None = None  # set once sqlrunner imports
        self.sqlrunner_version = ""
        self.sqlrunner_error = ""


class Tool:
    """A process tool: fresh = its commands on a new database, no-op = the same again."""

    key = ""
    label = ""
    product = ""  # the name in the versions list
    how = ""
    has_noop = True
    floor = ""  # what the no-op alternates with ("": nothing)

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.version = ""
        self.reason = ""  # why it is not run; "" = it is
        self.failed: dict[str, str] = {}  # workload -> why it failed there

    @property
    def available(self) -> bool:
        return not self.reason

    def detect(self) -> None:
        """Set version, or reason when the tool cannot run here."""

    def commands(self, wl: Workload, db: str) -> list[list[str]]:
        raise NotImplementedError

    def env(self, db: str) -> dict[str, str]:
        return self.ctx.env

    def cwd(self, wl: Workload) -> Path | None:
        return None

    def fresh(self, wl: Workload, db: str) -> float:
        return run_cmds(self.commands(wl, db), self.env(db), self.cwd(wl))

    def noop(self, wl: Workload, db: str) -> float:
        return self.fresh(wl, db)

    def paired(self, wl: Workload, db: str, reps: int) -> tuple[list[float], list[float]]:
        """(no-op, floor) timings, alternating; only for tools with a floor."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop whatever the adapter started."""


class PsqlPerFile(Tool):
    key, label, product = "psql_file", "psql, per file", "psql"
    how = (
        "`psql -X -q -v ON_ERROR_STOP=1 -f FILE`, one process per file, no `-1` (the files "
        "carry their own BEGIN/COMMIT; a no-transaction file must autocommit)"
    )
    has_noop = False  # psql keeps no state: there is no no-op run

    def detect(self) -> None:
        self.version = run_version([self.ctx.server.psql, "--version"])

    def psql(self, db: str) -> list[str]:
        return [
            self.ctx.server.psql,
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            self.ctx.server.uri(db),
        ]

    def commands(self, wl: Workload, db: str) -> list[list[str]]:
        # -1 (single transaction) only for a transactional file without its own
        # BEGIN: with sqlrunner's rules (every transactional file carries
        # BEGIN/COMMIT, a no-transaction file must autocommit) it is never used
        return [
            [
                *self.psql(db),
                *(["-1"] if m.transactional and not m.has_own_begin else []),
                "-f",
                str(m.path),
            ]
            for m in wl.migrations
        ]


class PsqlOneCall(PsqlPerFile):
    key, label = "psql_one", "psql, one call"
    how = "one `psql -X -q -v ON_ERROR_STOP=1 -f f1 -f f2 …`: the physical floor"

    def commands(self, wl: Workload, db: str) -> list[list[str]]:
        return [[*self.psql(db), *(x for m in wl.migrations for x in ("-f", str(m.path)))]]


class ServerFloor(PsqlOneCall):
    key, label = "server_floor", "server floor (psql, one call, async commit)"
    how = (
        "psql in one call with `PGOPTIONS='-c synchronous_commit=off'`: the server's own "
        "time for the workload without a WAL flush per commit, which no client goes below"
    )

    def env(self, db: str) -> dict[str, str]:
        return dict(self.ctx.env, PGOPTIONS="-c synchronous_commit=off")


class Dbmate(Tool):
    key, label, product = "dbmate", "dbmate", "dbmate"
    how = (
        "its Go binary, `dbmate --no-dump-schema migrate` (the database exists already); "
        "BEGIN/COMMIT stripped, dbmate wraps each migration; a no-transaction file is split "
        "into one `transaction:false` migration per statement"
    )
    binary = ""

    def detect(self) -> None:
        arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64"}.get(
            platform.machine().lower(), platform.machine().lower()
        )
        found = sorted(TOOLS_DIR.glob("node_modules/@dbmate/*/bin/dbmate"))
        mine = [c for c in found if c.parent.parent.name == f"{sys.platform}-{arch}"]
        self.binary = os.environ.get("DBMATE_BIN") or str(next(iter(mine or found), ""))
        if not self.binary or not Path(self.binary).exists():
            self.reason = f"skipped: dbmate not installed in bench/.tools ({SETUP_HINT})"
        else:
            self.version = run_version([self.binary, "--version"])

    def commands(self, wl: Workload, db: str) -> list[list[str]]:
        url = self.ctx.server.dbmate_url(db)
        dirs = ["--migrations-dir", str(wl.formats["dbmate"])]
        return [[self.binary, "--url", url, "--no-dump-schema", *dirs, "migrate"]]


class PythonPeer(Tool):
    """A peer installed as a Python console script (yoyo, Alembic)."""

    exe = ""  # its console script
    dist = ""  # its distribution, for the version
    binary = ""

    def detect(self) -> None:
        self.binary = executable(self.exe) or ""
        if not self.binary:
            self.reason = f"skipped: {self.exe} not installed ({SETUP_HINT})"
        else:
            self.version = f"{self.dist} {dist_version(self.dist)} ({self.depends()})"

    def depends(self) -> str:
        return f"psycopg {dist_version('psycopg')}"


class Yoyo(PythonPeer):
    key, label, product = "yoyo", "yoyo-migrations", "yoyo-migrations"
    exe, dist = "yoyo", "yoyo-migrations"
    how = (
        "`yoyo apply --batch`, SQL migrations with BEGIN/COMMIT stripped, "
        "`-- transactional: false` for a no-transaction file"
    )

    def commands(self, wl: Workload, db: str) -> list[list[str]]:
        url = self.ctx.server.yoyo_url(db)
        return [
            [
                self.binary,
                "apply",
                "--batch",
                "--no-config-file",
                "--database",
                url,
                str(wl.formats["yoyo"]),
            ]
        ]


class Alembic(PythonPeer):
    key, label, product = "alembic", "Alembic", "Alembic"
    exe, dist = "alembic", "alembic"
    how = (
        "`alembic upgrade head`, env.py as `alembic init` makes it (one transaction for the "
        "whole upgrade), one `op.execute` of each file's SQL; `autocommit_block()` and one "
        "`op.execute` per statement for a no-transaction file"
    )

    def depends(self) -> str:
        return f"SQLAlchemy {dist_version('sqlalchemy')}, {super().depends()}"

    def env(self, db: str) -> dict[str, str]:
        return dict(self.ctx.env, BENCH_ALEMBIC_URL=self.ctx.server.sqlalchemy_url(db))

    def commands(self, wl: Workload, db: str) -> list[list[str]]:
        return [[self.binary, "-c", str(wl.formats["alembic"]), "upgrade", "head"]]


class Sqitch(Tool):
    key, label, product = "sqitch", "Sqitch", "Sqitch"
    how = (
        "`sqitch deploy`, the files as deploy scripts unchanged (Sqitch runs each with psql); "
        "registry in the target database"
    )
    binary = ""

    def detect(self) -> None:
        self.binary = shutil.which("sqitch") or ""
        if not self.binary:
            self.reason = f"skipped: sqitch not installed ({SETUP_HINT})"
            return
        dbd = ["perl", "-MDBD::Pg", "-e", "print $DBD::Pg::VERSION"]
        r = subprocess.run(dbd, capture_output=True, text=True)
        if r.returncode != 0:
            self.reason = f"skipped: Perl DBD::Pg missing ({SETUP_HINT})"
        else:
            self.version = f"{run_version([self.binary, '--version'])} (DBD::Pg {r.stdout.strip()})"

    def env(self, db: str) -> dict[str, str]:
        return dict(
            self.ctx.env,
            **self.ctx.server.libpq_env(),
            SQITCH_USER_CONFIG=str(self.ctx.work / "sqitch-user.conf"),
            SQITCH_SYSTEM_CONFIG=str(self.ctx.work / "sqitch-system.conf"),
        )

    def cwd(self, wl: Workload) -> Path | None:
        return wl.formats["sqitch"]

    def commands(self, wl: Workload, db: str) -> list[list[str]]:
        return [[self.binary, "deploy", "--target", f"db:pg:{db}"]]


class Flyway(Tool):
    key, label, product = "flyway", "Flyway", "Flyway"

    def detect(self) -> None:
        self.reason = (
            "skipped: not obtainable from PyPI, npm or Debian (Flyway is a Java program "
            "distributed outside those registries; the npm wrappers such as node-flywaydb "
            "download it from elsewhere when run; Debian has no flyway package)"
        )
        if shutil.which("flyway"):
            self.reason = "skipped: a flyway binary is on PATH, but the bench has no Flyway adapter"
