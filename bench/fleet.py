#!/usr/bin/env python3
"""Fleets (issue 16): one `sqlrunner fleet apply` against a shell loop and a serial loop.

    python bench/fleet.py [--tenants 500] [--sample 20] [--parallel 4] [--databases 10]
                          [--scaling 100,500,1000] [--write-results]

The fleet: ``--tenants`` tenant schemas spread over ``--databases`` databases of a
throwaway embedded PostgreSQL 18 with stock settings (fsync on), each a target of
its own (search_path and ledger in the tenant's schema), and a small set: three
forward files, their rollbacks, one verify file. Every variant gets fresh tenant
names, so each "fresh" run really creates everything.

Measured, all in one run (ratios of numbers taken minutes apart on the same machine):

* fresh, ``sqlrunner fleet apply --parallel N`` as one process (wall clock);
* fresh, a shell loop of ``sqlrunner apply`` per target: ``--sample`` targets are
  timed and the total extrapolated to the whole fleet (the loop is linear: one
  process per target; running all 500 would take minutes and say nothing more);
* fresh, a serial loop of ``sqlrunner.apply`` in one process (the set loaded once);
* no-op ``sqlrunner fleet status`` (and ``fleet apply``) of the migrated fleet, as a
  process, against the floor (targets × a bare psycopg connect + ``SELECT 1``)
  ÷ parallelism, measured in this process;
* peak memory (``ru_maxrss`` of the fleet process, from ``os.wait4``);
* scaling: fresh and no-op at each size of ``--scaling``.

Targets (issue 16): fresh ≥ 20× faster than the shell loop and ≥ 2× faster than the
serial in-process loop; no-op status ≤ 1.5× the floor; peak memory ≤ 100 MB.
"""

# ruff: noqa: RUF001, RUF002  (the report uses multiplication signs)

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import Server, start_server

from sqlrunner.fleet import FleetTarget

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SET = {
    "forward/0001_accounts.sql": (
        "BEGIN;\nCREATE TABLE accounts (id bigint PRIMARY KEY, name text NOT NULL);\nCOMMIT;\n"
    ),
    "rollback/0001_accounts.sql": "BEGIN;\nDROP TABLE accounts;\nCOMMIT;\n",
    "forward/0002_invoices.sql": (
        "BEGIN;\nCREATE TABLE invoices (id bigint PRIMARY KEY,\n"
        "    account_id bigint NOT NULL REFERENCES accounts (id));\nCOMMIT;\n"
    ),
    "rollback/0002_invoices.sql": "BEGIN;\nDROP TABLE invoices;\nCOMMIT;\n",
    "forward/0003_invoice_total.sql": (
        "BEGIN;\nALTER TABLE invoices ADD COLUMN total numeric NOT NULL DEFAULT 0;\nCOMMIT;\n"
    ),
    "rollback/0003_invoice_total.sql": "BEGIN;\nALTER TABLE invoices DROP COLUMN total;\nCOMMIT;\n",
    "verify/0002_invoices.sql": (
        "SELECT 'invoices exists', to_regclass('invoices') IS NOT NULL, 'the table is there';\n"
    ),
}
SERIAL_LOOP = """
import sys
from sqlrunner import api, fleet
files = api.load_files(sys.argv[2])
for t in fleet.read_targets(sys.argv[1]):
    api.apply(t.conninfo, files, ledger_schema=t.schema)
"""
SQLRUNNER = [sys.executable, "-m", "sqlrunner"]


@dataclass
class Fleet:
    """One variant's tenants: fresh schema names, and their target list on disk."""

    targets: list[FleetTarget]
    path: Path


class Bench:
    def __init__(self, server: Server, work: Path, databases: int, parallel: int) -> None:
        self.server = server
        self.work = work
        self.databases = [f"fleet_bench_{i:02d}" for i in range(databases)]
        self.parallel = parallel
        self.sql_dir = work / "sql"
        for relative, text in SET.items():
            path = self.sql_dir / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        with psycopg.connect(server.uri(), autocommit=True) as conn:
            for name in self.databases:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._fleets = 0

    def fleet(self, n: int) -> Fleet:
        """``n`` tenants never applied before, written as a TOML target list."""
        self._fleets += 1
        prefix = f"v{self._fleets:02d}"
        targets = [
            FleetTarget(
                f"{prefix}-t{i:04d}",
                self.server.uri(self.databases[i % len(self.databases)]),
                f"{prefix}_t{i:04d}",
            )
            for i in range(n)
        ]
        path = self.work / f"{prefix}.toml"
        path.write_text(
            "".join(
                f'[[target]]\nname = "{t.name}"\ndsn = "{t.dsn}"\nschema = "{t.schema}"\n\n'
                for t in targets
            ),
            encoding="utf-8",
        )
        return Fleet(targets, path)

    def fleet_cli(self, action: str, fleet: Fleet) -> tuple[float, float]:
        """(seconds, peak MB) of one ``sqlrunner fleet ACTION`` process."""
        argv = [*SQLRUNNER, "--sql-dir", str(self.sql_dir), "-q", "fleet", action]
        return timed([*argv, "--targets", str(fleet.path), "--parallel", str(self.parallel)])

    def serial_loop(self, fleet: Fleet) -> float:
        return timed([sys.executable, "-c", SERIAL_LOOP, str(fleet.path), str(self.sql_dir)])[0]

    def shell_loop(self, fleet: Fleet, sample: int) -> float:
        """Seconds for ``sample`` targets, one ``sqlrunner apply`` process each."""
        started = time.monotonic()
        for t in fleet.targets[:sample]:
            argv = [*SQLRUNNER, "--dsn", t.conninfo, "--sql-dir", str(self.sql_dir)]
            subprocess.run(
                [*argv, "--ledger-schema", str(t.schema), "-q", "apply"],
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
        return time.monotonic() - started

    def floor(self, fleet: Fleet) -> float:
        """Seconds for a bare connect + one query per target, serially, in this process."""
        started = time.monotonic()
        for t in fleet.targets:
            with psycopg.connect(t.conninfo, autocommit=True) as conn:
                conn.execute("SELECT 1").fetchone()
        return time.monotonic() - started

    def parallel_floor(self, fleet: Fleet) -> float:
        """The same bare connects on ``parallel`` threads: what this machine really allows."""
        from concurrent.futures import ThreadPoolExecutor

        def bare(t: FleetTarget) -> None:
            with psycopg.connect(t.conninfo, autocommit=True) as conn:
                conn.execute("SELECT 1").fetchone()

        started = time.monotonic()
        with ThreadPoolExecutor(self.parallel) as pool:
            list(pool.map(bare, fleet.targets))
        return time.monotonic() - started

    def check(self, fleet: Fleet, applied: int) -> None:
        """Every tenant of ``fleet`` has its three files in its own ledger (or ``applied``)."""
        prefix = fleet.targets[0].name.split("-")[0]
        total = 0
        for name in self.databases:
            with psycopg.connect(self.server.uri(name)) as conn:
                schemas = conn.execute(
                    "SELECT schemaname FROM pg_tables WHERE tablename = 'sqlrunner_ledger' "
                    "AND schemaname LIKE %s",
                    (f"{prefix}\\_%",),
                ).fetchall()
                for (schema,) in schemas:
                    query = sql.SQL("SELECT count(*) FROM {}").format(
                        sql.Identifier(schema, "sqlrunner_ledger")
                    )
                    row = conn.execute(query).fetchone()
                    total += int(row[0]) if row else 0
        if total != applied:
            raise SystemExit(f"{prefix}: {total} ledger rows, expected {applied}")


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of one process that must succeed."""
    started = time.monotonic()
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.monotonic() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])} ... exited {child.returncode}")
    return seconds, usage.ru_maxrss / 1024  # Linux: kilobytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tenants", type=int, default=500)
    parser.add_argument("--sample", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--databases", type=int, default=10)
    parser.add_argument("--scaling", default="100,500,1000")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.scaling.split(",") if s]
    server = start_server("embedded")
    work = Path(tempfile.mkdtemp(prefix="sqlrunner-bench-fleet-"))
    bench = Bench(server, work, args.databases, args.parallel)
    n, files, version = args.tenants, 3, server.version()
    print(
        f"fleet bench: {n} tenants over {args.databases} databases, PostgreSQL {version}, "
        f"parallel {args.parallel}",
        file=sys.stderr,
    )
    warm = bench.fleet(4)
    bench.fleet_cli("apply", warm)  # bytecode compiled, server caches warm: not timed

    main_fleet = bench.fleet(n)
    fresh, fresh_mb = bench.fleet_cli("apply", main_fleet)
    bench.check(main_fleet, files * n)
    shell_fleet = bench.fleet(args.sample)
    shell_sample = bench.shell_loop(shell_fleet, args.sample)
    bench.check(shell_fleet, files * args.sample)
    shell = shell_sample * n / args.sample
    serial_fleet = bench.fleet(n)
    serial = bench.serial_loop(serial_fleet)
    bench.check(serial_fleet, files * n)
    status, status_mb = bench.fleet_cli("status", main_fleet)
    noop_apply, _ = bench.fleet_cli("apply", main_fleet)
    floor = bench.floor(main_fleet) / args.parallel
    threaded_floor = bench.parallel_floor(main_fleet)
    scaling = []
    for size in sizes:
        if size == n:
            scaling.append((size, fresh, status, max(fresh_mb, status_mb)))
            continue
        f = bench.fleet(size)
        s_fresh, mb_fresh = bench.fleet_cli("apply", f)
        bench.check(f, files * size)
        s_status, mb_status = bench.fleet_cli("status", f)
        scaling.append((size, s_fresh, s_status, max(mb_fresh, mb_status)))
    server.stop()

    rows = [
        ("`sqlrunner fleet apply` (one process), fresh", fresh, ""),
        (
            f"shell loop of `sqlrunner apply`, fresh (extrapolated from {args.sample})",
            shell,
            f"{shell / fresh:.1f}× the fleet",
        ),
        (
            "serial `sqlrunner.apply` loop in one process, fresh",
            serial,
            f"{serial / fresh:.1f}× the fleet",
        ),
        (
            "`sqlrunner fleet status` (one process), no-op",
            status,
            f"{status / floor:.2f}× the floor",
        ),
        (
            "`sqlrunner fleet apply` (one process), no-op",
            noop_apply,
            f"{noop_apply / floor:.2f}× the floor",
        ),
        (f"floor: {n} × (bare connect + SELECT 1) ÷ {args.parallel}", floor, ""),
        (
            f"the same {n} bare connects on {args.parallel} threads (measured)",
            threaded_floor,
            f"{threaded_floor / floor:.2f}× the floor; status is {status / threaded_floor:.2f}× it",
        ),
    ]
    verdicts = [
        ("fresh ≥ 20× faster than the shell loop", shell / fresh, shell / fresh >= 20),
        ("fresh ≥ 2× faster than the serial in-process loop", serial / fresh, serial / fresh >= 2),
        ("no-op status ≤ 1.5× the floor", status / floor, status / floor <= 1.5),
    ]
    peak = max(m for *_, m in scaling)
    lines = [
        f"Command: `python bench/fleet.py --tenants {n} --sample {args.sample} "
        f"--parallel {args.parallel} --databases {args.databases} --scaling {args.scaling}`, "
        f"on {dt.date.today()}; machine: {os.cpu_count()} cores, {platform.machine()}, shared "
        f"with other jobs while it ran; Python {platform.python_version()}; embedded "
        f"PostgreSQL {version} with stock settings (fsync on). {n} tenant "
        f"schemas over {args.databases} databases, each its own target (search_path and "
        f"ledger in its schema); the set: 3 forward files, 3 rollbacks, 1 verify file.",
        "",
        f"| {n} targets | seconds | ratio |",
        "|---|---:|---:|",
        *(f"| {label} | {seconds:.2f} | {ratio} |" for label, seconds, ratio in rows),
        "",
        "| target (issue 16) | measured | met |",
        "|---|---:|---|",
        *(f"| {label} | {value:.2f}× | {'yes' if ok else 'no'} |" for label, value, ok in verdicts),
        f"| peak memory ≤ 100 MB | {peak:.0f} MB | {'yes' if peak <= 100 else 'no'} |",
        "",
        "| targets | fresh `fleet apply` s | per target ms | no-op `fleet status` s "
        "| per target ms | peak MB |",
        "|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {size} | {f:.2f} | {1000 * f / size:.1f} | {s:.2f} | {1000 * s / size:.1f} "
            f"| {mb:.0f} |"
            for size, f, s, mb in scaling
        ),
    ]
    text = "\n".join(lines)
    print(text)
    if args.write_results:
        write_section(text)


def write_section(body: str) -> None:
    """Replace (or add) the 'Fleets' section of RESULTS.md, keeping its 'What we learned'."""
    marker = "<!-- written by `python bench/fleet.py --write-results`; replaced each time -->"
    current = RESULTS.read_text(encoding="utf-8")
    learned = ""
    found = re.search(r"\n## Fleets\n.*?(?=\n## |\Z)", current, flags=re.S)
    if found:
        kept = re.search(r"\n### What we learned\n.*", found.group(0), flags=re.S)
        learned = kept.group(0) if kept else ""
        current = current[: found.start()] + current[found.end() :]
    section = f"\n## Fleets\n\n{marker}\n\n{body}\n{learned}"
    RESULTS.write_text(current.rstrip("\n") + "\n" + section.rstrip("\n") + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
