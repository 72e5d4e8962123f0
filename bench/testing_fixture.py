"""The per-test cost of sqlrunner.testing's ``sqlrunner_dsn`` fixture.

    python bench/testing_fixture.py [--tests 30] [--sql-dir sql] [--dsn DSN] [--write-results]

One pytest session (in process, the plugin as an application gets it) runs
``--tests`` rounds of four tests, interleaved in a rotating order so a noisy
machine hurts every variant alike:

* ``sqlrunner_dsn``: a clone of the session's migrated template;
* ``bare clone``: ``CREATE DATABASE … TEMPLATE`` + ``DROP DATABASE`` on one open
  connection, from a template migrated the same way: the floor of any clone, with
  the server's default strategy (WAL_LOG) and with ``STRATEGY FILE_COPY`` (what the
  plugin uses on its embedded server);
* ``apply per test``: ``CREATE DATABASE`` + ``sqlrunner.apply`` of the set in every test;
* ``no fixture``: pytest's own per-test overhead.

A test's cost is its setup + teardown time as pytest reports it. The first
round is left out of the medians (it pays for the session: server start,
template build) and reported on its own. Targets (issue 13): sqlrunner_dsn
≤ 1.3× the bare clone and ≥ 10× faster than applying per test.
"""

# ruff: noqa: RUF001, RUF002  (the report uses multiplication signs and en dashes)

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import statistics
import sys
import tempfile
import textwrap
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
VARIANTS = ("sqlrunner_dsn", "bare_clone", "bare_file_copy", "apply_per_test", "no_fixture")
LABELS = {
    "sqlrunner_dsn": "`sqlrunner_dsn`",
    "bare_clone": "bare `CREATE DATABASE … TEMPLATE`",
    "bare_file_copy": "bare `CREATE DATABASE … TEMPLATE … STRATEGY FILE_COPY`",
    "apply_per_test": "`sqlrunner.apply` per test",
    "no_fixture": "no fixture (pytest alone)",
}

CONFTEST = """
import itertools
import psycopg
import pytest
from psycopg import sql

import sqlrunner

SQL_DIR = {sql_dir!r}
_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def admin(sqlrunner_server):
    conn = psycopg.connect(sqlrunner_server.dsn(sqlrunner_server.maintenance_dbname),
                           autocommit=True)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def bench_template(admin, sqlrunner_server):
    admin.execute("DROP DATABASE IF EXISTS bench_template")
    admin.execute("CREATE DATABASE bench_template")
    sqlrunner.apply(sqlrunner_server.dsn("bench_template"), SQL_DIR)
    yield "bench_template"
    admin.execute("DROP DATABASE bench_template")


def _bare(admin, server, template, strategy):
    name = f"bench_bare_{{next(_numbers)}}"
    admin.execute(sql.SQL("CREATE DATABASE {{}} TEMPLATE {{}}" + strategy).format(
        sql.Identifier(name), sql.Identifier(template)))
    yield server.dsn(name)
    admin.execute(sql.SQL("DROP DATABASE {{}}").format(sql.Identifier(name)))


@pytest.fixture
def bare_clone(admin, bench_template, sqlrunner_server):
    yield from _bare(admin, sqlrunner_server, bench_template, "")


@pytest.fixture
def bare_file_copy(admin, bench_template, sqlrunner_server):
    yield from _bare(admin, sqlrunner_server, bench_template, " STRATEGY FILE_COPY")


@pytest.fixture
def apply_per_test(admin, sqlrunner_server):
    name = f"bench_apply_{{next(_numbers)}}"
    admin.execute(sql.SQL("CREATE DATABASE {{}}").format(sql.Identifier(name)))
    sqlrunner.apply(sqlrunner_server.dsn(name), SQL_DIR)
    yield sqlrunner_server.dsn(name)
    admin.execute(sql.SQL("DROP DATABASE {{}} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def no_fixture():
    return None
"""


class Recorder:
    """setup + teardown seconds of every test, by node id (pytest's own durations)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.failed: list[str] = []
        self.started = self.collected = 0.0

    def pytest_sessionstart(self) -> None:
        self.started = time.perf_counter()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self) -> None:
        # Collection included the plugin's server start and template build.
        self.collected = time.perf_counter()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when in ("setup", "teardown"):
            self.seconds[report.nodeid] += report.duration
        if report.failed:
            self.failed.append(report.nodeid)


def write_tests(work: Path, rounds: int, sql_dir: Path) -> None:
    (work / "conftest.py").write_text(CONFTEST.format(sql_dir=str(sql_dir)))
    lines = []
    for r in range(rounds):
        shift = r % len(VARIANTS)
        for variant in VARIANTS[shift:] + VARIANTS[:shift]:
            lines.append(f"def test_{r:03d}_{variant}({variant}):\n    pass\n")
    (work / "test_bench.py").write_text("\n".join(lines))
    (work / "pytest.ini").write_text(
        f"[pytest]\nsqlrunner_sql_dir = {sql_dir}\naddopts = -p no:cacheprovider\n"
    )


def measure(rounds: int, sql_dir: Path, dsn: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sqlrunner-bench-fixture-") as tmp:
        work = Path(tmp)
        write_tests(work, rounds + 1, sql_dir)
        recorder = Recorder()
        args = ["-q", "-p", "sqlrunner.testing", "--rootdir", str(work), str(work)]
        if dsn:
            args.insert(0, f"--sqlrunner-dsn={dsn}")
        cwd = os.getcwd()
        os.chdir(work)
        try:
            code = pytest.main(args, plugins=[recorder])
        finally:
            os.chdir(cwd)
        if code != 0 or recorder.failed:
            raise SystemExit(f"the benchmark's pytest session failed ({code}): {recorder.failed}")
    per: dict[str, list[float]] = defaultdict(list)
    first: dict[str, float] = {}
    for nodeid, seconds in recorder.seconds.items():
        match = re.search(r"test_(\d{3})_(\w+)$", nodeid)
        assert match, nodeid
        if int(match[1]) == 0:
            first[match[2]] = seconds * 1000
        else:
            per[match[2]].append(seconds * 1000)
    return {
        "per": per,
        "first": first,
        "before_tests": (recorder.collected - recorder.started) * 1000,
    }


def quantiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    cut = statistics.quantiles(ordered, n=10) if len(ordered) > 1 else [ordered[0]] * 9
    return statistics.median(ordered), cut[0], cut[-1]


def table(found: dict[str, Any], rounds: int) -> str:
    per, first = found["per"], found["first"]
    bare = statistics.median(per["bare_clone"])
    dsn_ms = statistics.median(per["sqlrunner_dsn"])
    rows = [
        "| variant | per test, median [p10–p90] ms | ÷ bare clone "
        "| first test ms (+ its session fixtures) |",
        "|---|---:|---:|---:|",
    ]
    for variant in VARIANTS:
        median, low, high = quantiles(per[variant])
        rows.append(
            f"| {LABELS[variant]} | {median:.1f} [{low:.1f}–{high:.1f}] | "
            f"{median / bare:.2f}× | {first.get(variant, 0):.0f} |"
        )
    file_copy = statistics.median(per["bare_file_copy"])
    apply_ms = statistics.median(per["apply_per_test"])
    floor = min(bare, file_copy)
    reach = (
        "so the target is within reach of a clone per test"
        if apply_ms / floor >= 10
        else "so no fixture that clones a database per test can reach 10× on this set and machine"
    )
    verdict = (
        f"`sqlrunner_dsn` is {dsn_ms / bare:.2f}× the bare clone (target ≤ 1.3×; "
        f"{dsn_ms / file_copy:.2f}× the same clone with FILE_COPY) and "
        f"{apply_ms / dsn_ms:.1f}× faster than applying per test (target ≥ 10×). "
        f"The fastest bare clone itself is {apply_ms / floor:.1f}× faster than applying, {reach}. "
        f"{rounds} rounds, first round excluded. Before the first test (collection: the "
        f"embedded server's start and the template's build): {found['before_tests']:.0f} ms."
    )
    return "\n".join(rows) + "\n\n" + verdict


def write_results(text: str, sql_dir: Path, dsn: str | None, rounds: int) -> None:
    import psycopg  # noqa: F401  (its version goes in the header)

    heading = "## Testing fixture"
    header = textwrap.dedent(
        f"""\
        {heading}

        <!-- written by `python bench/testing_fixture.py --write-results`; replaced each time -->

        Command: `python bench/testing_fixture.py --tests {rounds} --write-results`, on \
{dt.date.today().isoformat()}; machine: {os.cpu_count()} cores, {platform.machine()}; \
Python {platform.python_version()}; migration set: `{_shown(sql_dir)}` \
({"existing server" if dsn else "the plugin's embedded PostgreSQL 18, fsync off"}).

        """
    )
    section = header + text + "\n"
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if heading in current:
        start = current.index(heading)
        following = current.find("\n## ", start + len(heading))
        end = len(current) if following < 0 else following + 1
        current = current[:start] + section + current[end:]
    else:
        current = current.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(current)


def _shown(sql_dir: Path) -> str:
    try:
        return str(sql_dir.relative_to(REPO)) + "/"
    except ValueError:
        return str(sql_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tests", type=int, default=30, help="rounds of the four variants")
    parser.add_argument("--sql-dir", type=Path, default=REPO / "sql")
    parser.add_argument("--dsn", help="an existing server (default: the plugin's embedded one)")
    parser.add_argument("--write-results", action="store_true", help="update bench/RESULTS.md")
    options = parser.parse_args()
    sql_dir = options.sql_dir.resolve()
    found = measure(options.tests, sql_dir, options.dsn)
    text = table(found, options.tests)
    print(text)
    if options.write_results:
        write_results(text, sql_dir, options.dsn, options.tests)


if __name__ == "__main__":
    sys.exit(main())
