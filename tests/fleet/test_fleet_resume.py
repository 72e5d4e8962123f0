"""A fleet run killed with SIGKILL mid-way, then re-run: resuming is running it again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psycopg

from .conftest import MakeDatabases, ledger_versions
from .sets import FORWARD, TENANT_SET, slow


def applied_history(dsn: str) -> list[int]:
    """Every version the history says was applied with outcome ok (once each, if all is well)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT version FROM sqlrunner_ledger_history "
            "WHERE action = 'apply' AND outcome = 'ok' AND kind = 'forward' ORDER BY version"
        ).fetchall()
    return [int(r[0]) for r in rows]


def test_kill_9_mid_run_then_rerun_applies_exactly_the_missing_files(
    tmp_path, sql_set, make_databases: MakeDatabases
):
    sql = sql_set(slow(TENANT_SET, 0.15))
    dsns = make_databases(16)
    targets = tmp_path / "targets.txt"
    targets.write_text("\n".join(dsns) + "\n", encoding="utf-8")
    argv = [sys.executable, "-m", "sqlrunner", "--sql-dir", str(sql), "--json", "fleet"]
    run = subprocess.Popen(
        [*argv, "apply", "--targets", str(targets), "--parallel", "4"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while sum(map(len, map(ledger_versions, dsns))) < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(run.pid, signal.SIGKILL)
        assert run.wait(10) == -signal.SIGKILL
    finally:
        if run.poll() is None:
            run.kill()
    before = {dsn: ledger_versions(dsn) for dsn in dsns}
    counts = sorted(len(v) for v in before.values())
    assert counts[0] < 3 and counts[-1] > 0, before  # killed in the middle of the fleet
    assert all(v == [1, 2, 3][: len(v)] for v in before.values())  # each ledger a prefix

    done = subprocess.run(
        [*argv, "apply", "--targets", str(targets), "--parallel", "4"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
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
    targets = tmp_path / "targets.txt"
    targets.write_text("\n".join(dsns) + "\n", encoding="utf-8")
    argv = [sys.executable, "-m", "sqlrunner", "--sql-dir", str(sql), "fleet", "apply"]
    run = subprocess.Popen(
        [*argv, "--targets", str(targets), "--parallel", "2"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(map(ledger_versions, dsns[:2])) and time.monotonic() < deadline:
            time.sleep(0.05)
        run.send_signal(signal.SIGTERM)
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 143, stderr
    assert "stopped: interrupted" in stderr
    after = [ledger_versions(d) for d in dsns]
    assert after[:2] == [[1, 2, 3], [1, 2, 3]]  # the two in flight finished
    assert after[2:] == [[], [], [], []]  # no new target started
    assert sum(line.startswith("[") for line in stderr.splitlines()) == 2
