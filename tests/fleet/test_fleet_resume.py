"""A fleet run killed with SIGKILL mid-way, then re-run: resuming is running it again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tests.integration.conftest import wait_until

from .conftest import MakeDatabases, ledger_versions, write_targets
from .sets import FORWARD, TENANT_SET, slow


def applied_history(dsn: str) -> list[int]:
    """Every version the history says was applied with outcome ok (once each, if all is well)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT version FROM sqlrunner_ledger_history "
            "WHERE action = 'apply' AND outcome = 'ok' AND kind = 'forward' ORDER BY version"
        ).fetchall()
    return [int(r[0]) for r in rows]


def fleet_apply(sql: Path, targets: Path, parallel: int, *options: str) -> list[str]:
    """argv of ``sqlrunner [OPTIONS] fleet apply`` over ``targets``, ``parallel`` at once."""
    return [
        *(sys.executable, "-m", "sqlrunner", "--sql-dir", str(sql), *options),
        *("fleet", "apply", "--targets", str(targets), "--parallel", str(parallel)),
    ]


@contextmanager
def started(argv: list[str], **output: Any) -> Iterator[subprocess.Popen[str]]:
    """``argv`` running without a terminal; killed at the end of the block if it still runs."""
    run = subprocess.Popen(argv, stdin=subprocess.DEVNULL, text=True, **output)
    try:
        yield run
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def inside_a_file(dsn: str, names: list[str]) -> list[str]:
    """The databases among ``names`` whose migration is in a file's pg_sleep right now: the
    server holds that file's last message (the sleep, its ledger rows, COMMIT)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_stat_activity WHERE state = 'active' "
            "AND query LIKE 'SELECT pg_sleep(%%' AND datname = ANY (%s)",
            (names,),
        ).fetchall()
    return [str(name) for (name,) in rows]


def test_kill_9_mid_run_then_rerun_applies_exactly_the_missing_files(
    tmp_path, sql_set, make_databases: MakeDatabases
):
    sql = sql_set(slow(TENANT_SET, 0.15))
    dsns = make_databases(16)
    apply = fleet_apply(sql, write_targets(tmp_path, dsns), 4, "--json")
    names = [str(conninfo_to_dict(dsn)["dbname"]) for dsn in dsns]
    inside: list[str] = []

    def caught_inside_a_file() -> bool:
        inside[:] = inside_a_file(dsns[0], names)
        return bool(inside)

    with started(apply, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as run:
        wait_until(
            lambda: sum(map(len, map(ledger_versions, dsns))) >= 12,
            "12 of the 48 files applied",
            timeout=60,
        )
        wait_until(caught_inside_a_file, "a target inside a file", timeout=60)
        os.kill(run.pid, signal.SIGKILL)
        assert run.wait(10) == -signal.SIGKILL
    # the targets killed inside a file first, before their sleep ends
    first = sorted(dsns, key=lambda dsn: conninfo_to_dict(dsn)["dbname"] not in inside)
    before = {dsn: ledger_versions(dsn) for dsn in first}
    time.sleep(1)  # longer than any file's pg_sleep: what the server still ran is over
    after = {dsn: ledger_versions(dsn) for dsn in dsns}
    assert after == before, "a file committed after its run was killed"
    counts = sorted(len(v) for v in before.values())
    assert counts[0] < 3 and counts[-1] > 0, before  # killed in the middle of the fleet
    assert all(v == [1, 2, 3][: len(v)] for v in before.values())  # each ledger a prefix

    done = subprocess.run(
        apply, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)["results"]
    assert len(results) == len(dsns)
    for dsn, result in zip(dsns, results, strict=True):
        assert result["applied"] == FORWARD[len(before[dsn]) :], (result, before[dsn])
        assert ledger_versions(dsn) == [1, 2, 3]
        assert applied_history(dsn) == [1, 2, 3]  # nothing anywhere applied twice


def test_sigterm_lets_targets_in_flight_finish_and_starts_no_new_one(
    tmp_path, sql_set, make_databases: MakeDatabases
):
    sql = sql_set(slow(TENANT_SET, 0.3))
    dsns = make_databases(6)
    apply = fleet_apply(sql, write_targets(tmp_path, dsns), 2)
    with started(apply, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as run:
        wait_until(lambda: any(map(ledger_versions, dsns[:2])), "a first file applied", timeout=60)
        run.send_signal(signal.SIGTERM)
        _, stderr = run.communicate(timeout=60)
    assert run.returncode == 143, stderr
    assert "stopped: interrupted" in stderr
    after = [ledger_versions(d) for d in dsns]
    assert after[:2] == [[1, 2, 3], [1, 2, 3]]  # the two in flight finished
    assert after[2:] == [[], [], [], []]  # no new target started
    assert sum(line.startswith("[") for line in stderr.splitlines()) == 2
