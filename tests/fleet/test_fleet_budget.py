"""``fleet apply --budget`` and the standby options: each target's apply gets them, and a
target whose backfill stops on its budget is pending (exit 6), not failed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sqlrunner import UsageError, api, fleet
from tests.integration.clirun import invoke

from .conftest import MakeDatabases
from .sets import BACKFILL_SET, TENANT_SET
from .test_fleet_apply import fleet_cli, write_targets

NO_STANDBY = "no standby streams from this server: nothing to wait for"


def counters(dsn: str) -> list[tuple[int, int]]:
    """(counter, how many items) of one target: [(1, 100)] when the backfill ran once."""
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT counter, count(*) FROM items GROUP BY 1 ORDER BY 1").fetchall()


def next_key(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT next_key FROM sqlrunner_ledger_backfill").fetchone()
    assert row is not None
    return int(row[0])


def test_a_budget_leaves_every_target_pending_and_a_rerun_finishes_them(
    tmp_path: Path, sql_set: Any, make_databases: MakeDatabases
) -> None:
    """Pending is no failure: not for --on-error stop, not for a canary."""
    sql = sql_set(BACKFILL_SET)
    dsns = make_databases(3)
    targets = str(write_targets(tmp_path, dsns))
    base = ("apply", "--targets", targets, "--parallel", "1")

    code, doc, stderr = fleet_cli(
        *base, "--budget", "0.35s", "--on-error", "stop", "--canary", "1", sql=sql
    )

    assert code == 6, stderr
    assert doc["exit_code"] == 6 and doc["stopped"] is None
    for result in doc["results"]:
        assert (result["outcome"], result["exit_code"]) == ("pending", 6), result
        assert result["error_kind"] == "BackfillPending"
        assert "forward/0002_backfill.sql stopped by the budget of 0.35s" in result["error"]
        assert result["applied"] == ["forward/0001_items.sql"]
    lines = [line for line in stderr.splitlines() if line.startswith("[")]
    assert [line.split()[1:3] for line in lines] == [
        ["pending", "(canary)"],
        ["pending", doc["results"][1]["name"]],
        ["pending", doc["results"][2]["name"]],
    ]
    assert "1 applied, 0 seeded; exit 6: pending: the backfill continues" in lines[0]
    assert "0 ok, 3 pending, 0 failed, 0 not started of 3 target(s)" in stderr
    assert "3 target(s) pending: a backfill stopped by its budget" in stderr
    for dsn in dsns:
        done = next_key(dsn)
        assert 11 <= done < 101  # some batches, not all
        assert counters(dsn) == [(0, 101 - done), (1, done - 1)]

    code, doc, stderr = fleet_cli(*base, sql=sql)

    assert code == 0, stderr
    assert [(r["outcome"], r["applied"]) for r in doc["results"]] == [
        ("ok", ["forward/0002_backfill.sql"])
    ] * 3
    assert "3 ok, 0 failed, 0 not started of 3 target(s)" in stderr
    assert all(counters(dsn) == [(1, 100)] for dsn in dsns)


def test_pending_and_failed_targets_together_exit_7(
    sql_set: Any, make_databases: MakeDatabases
) -> None:
    sql = sql_set(BACKFILL_SET)
    dsns = make_databases(3)
    with psycopg.connect(dsns[1], autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int)")  # 0001 fails here: exit 4

    report = fleet.apply(dsns, sql, parallel=3, budget=0.35)

    assert [(r.outcome, r.exit_code) for r in report.results] == [
        ("pending", 6),
        ("failed", 4),
        ("pending", 6),
    ]
    assert report.exit_code == 7
    assert fleet.summary(report).startswith("fleet apply: 0 ok, 2 pending, 1 failed, 0 not started")
    line = fleet.result_line(report.results[0], 1, 3)
    assert line.startswith("[1/3] pending ") and "exit 6: pending:" in line


def test_wait_replicas_with_no_standby_is_a_no_op_on_every_target(
    tmp_path: Path, sql_set: Any, make_databases: MakeDatabases, caplog: pytest.LogCaptureFixture
) -> None:
    """Each target's warning is its own: in the service's log, in its result, and under
    its line in the CLI's output."""
    dsns = make_databases(2)
    with caplog.at_level(logging.WARNING, logger="sqlrunner"):
        report = fleet.apply(dsns, sql_set(TENANT_SET), wait_replicas=5, max_replica_lag=1 << 20)
    assert report.exit_code == 0, [r.error for r in report.results]
    # each target's apply looked for its own standbys once it had committed
    assert sum(r.getMessage().startswith(NO_STANDBY) for r in caplog.records) == 2
    for result in report.results:
        assert isinstance(result, fleet.TargetResult)
        assert [w[: len(NO_STANDBY)] for w in result.warnings] == [NO_STANDBY], result
    fresh = make_databases(1)
    run = invoke(
        *("--sql-dir", str(sql_set(TENANT_SET)), "fleet", "apply"),
        *("--targets", str(write_targets(tmp_path, fresh)), "--wait-replicas", "5"),
    )
    assert run.code == 0, run.output
    lines = run.stderr.splitlines()
    (at,) = [i for i, line in enumerate(lines) if line.startswith("[1/1] ok ")]
    assert lines[at + 1].startswith(f"    warning: {NO_STANDBY}"), lines
    assert "apply --replica DSN" in lines[at + 1], lines


def test_fleet_apply_passes_budget_and_standby_options_to_each_target(
    tmp_path: Path, sql_set: Any, make_databases: MakeDatabases, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flags as each target's ``api.apply`` receives them (the real one runs)."""
    received: list[dict[str, Any]] = []
    real_apply = api.apply

    def recording_apply(*args: Any, **options: Any) -> Any:
        received.append(options)
        return real_apply(*args, **options)

    monkeypatch.setattr(api, "apply", recording_apply)
    dsns = make_databases(2)
    run = invoke(
        *("--sql-dir", str(sql_set(TENANT_SET)), "fleet", "apply"),
        *("--targets", str(write_targets(tmp_path, dsns))),
        *("--budget", "10m", "--wait-replicas", "5", "--max-replica-lag", "64MB"),
        *("--replica-wait", "7"),
    )
    assert run.code == 0, run.output
    assert len(received) == 2
    for options in received:
        given = {k: options[k] for k in ("budget", "wait_replicas", "max_replica_lag")}
        assert given == {"budget": 600.0, "wait_replicas": 5.0, "max_replica_lag": 64 << 20}
        assert options["replica_wait"] == 7.0 and "replicas" not in options


def test_the_fleet_takes_no_standby_dsns(tmp_path: Path, sql_set: Any) -> None:
    """A standby follows one server: one --replica list cannot be right for every target."""
    sql = sql_set(TENANT_SET)
    with pytest.raises(UsageError, match="a standby follows one server"):
        fleet.apply(["dbname=a", "dbname=b"], sql, replicas=["host=standby"])
    targets = str(write_targets(tmp_path, ["dbname=a"]))
    run = invoke("--sql-dir", str(sql), "fleet", "apply", "--targets", targets, "--replica", "x")
    assert run.code == 2 and run.errors == [
        "sqlrunner: error: fleet apply does not take --replica: a standby follows one server, "
        "so one list cannot serve every target (--wait-replicas and --max-replica-lag watch "
        "each target's own standbys)"
    ]
    help_text = " ".join(invoke("fleet", "apply", "--help").stdout.split())
    assert "--replica is not taken: a standby follows one server" in help_text


def test_a_budget_in_sqlrunner_toml_reaches_fleet_apply_too(
    tmp_path: Path, sql_set: Any, make_databases: MakeDatabases
) -> None:
    sql = sql_set(BACKFILL_SET)
    (tmp_path / "sqlrunner.toml").write_text(f'budget = "0.35s"\nsql_dir = "{sql}"\n')
    dsns = make_databases(1)
    targets = str(write_targets(tmp_path, dsns))
    run = invoke("fleet", "apply", "--targets", targets, cwd=tmp_path)
    assert run.code == 6, run.output
    assert "0 ok, 1 pending, 0 failed" in run.output
    assert 11 <= next_key(dsns[0]) < 101
