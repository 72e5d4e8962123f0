"""``sqlrunner fleet apply``: many real databases, one process, every guarantee per database."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import psycopg
import pytest

from sqlrunner import fleet
from tests.integration.conftest import cli

from .conftest import MakeDatabases, free_port, ledger_versions, write_targets
from .sets import FORWARD, TENANT_SET


def fleet_cli(*args: str, sql: Path, timeout: float = 120) -> tuple[int, dict, str]:
    done = cli("--sql-dir", str(sql), "--json", "fleet", *args, timeout=timeout)
    return done.returncode, json.loads(done.stdout), done.stderr


@pytest.mark.fleet_scale
@pytest.mark.timeout(180)
def test_two_hundred_databases_one_broken(tmp_path, sql_set, make_databases: MakeDatabases):
    started = time.monotonic()
    sql = sql_set(TENANT_SET)
    dsns = make_databases(200)
    broken = dsns[117]
    with psycopg.connect(broken, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id int)")
    code, doc, stderr = fleet_cli(
        "apply", "--targets", str(write_targets(tmp_path, dsns)), "--parallel", "4", sql=sql
    )
    assert code == 7, stderr
    assert doc["report"] == "fleet-apply" and doc["exit_code"] == 7 and doc["total"] == 200
    by_name = {r["name"]: r for r in doc["results"]}
    failed = [r for r in doc["results"] if r["outcome"] != "ok"]
    assert len(failed) == 1 and len(by_name) == 200
    bad = failed[0]
    assert bad["exit_code"] == 4 and bad["error_kind"] == "MigrationFailed"
    assert bad["location"].endswith("forward/0002_invoices.sql:2:1")
    assert "SQLSTATE 42P07" in bad["error"] and bad["applied"] == ["forward/0001_accounts.sql"]
    assert bad["name"].endswith(broken.split("dbname=")[1].split()[0])
    ok = [r for r in doc["results"] if r["outcome"] == "ok"]
    assert len(ok) == 199 and all(r["applied"] == FORWARD and r["exit_code"] == 0 for r in ok)
    assert ledger_versions(broken) == [1]
    assert all(ledger_versions(d) == [1, 2, 3] for d in dsns[:5] + dsns[-5:])
    lines = [line for line in stderr.splitlines() if line.startswith("[")]
    assert len(lines) == 200 and any(line.startswith("[200/200]") for line in lines)
    assert "199 ok, 1 failed, 0 not started of 200" in stderr
    print(f"200 databases: {time.monotonic() - started:.1f} s in all")


def test_targets_on_two_servers(
    tmp_path, sql_set, make_databases: MakeDatabases, pg15_server, pg_server
):
    sql = sql_set(TENANT_SET)
    dsns = make_databases(6) + make_databases(6, server=pg15_server)
    report = fleet.apply(dsns, sql, parallel=4, per_server=1)
    assert report.exit_code == 0, [r.error for r in report.results]
    assert {r.name.rsplit("/", 1)[0] for r in report.results} == {
        fleet.FleetTarget("", dsns[0]).server,
        fleet.FleetTarget("", dsns[-1]).server,
    }
    versions = set()
    for dsn in dsns:
        with psycopg.connect(dsn) as conn:
            versions.add(conn.info.server_version // 10000)
            runs = conn.execute(
                "SELECT applied_at, applied_at + duration_ms * interval '1 ms' "
                "FROM sqlrunner_ledger ORDER BY version"
            ).fetchall()
            assert len(runs) == 3
    assert 15 in versions and (len(versions) == 2 or not pg_server.embedded)  # 18 and 15
    # per_server=1: no two targets of one server were ever applied at the same time
    for group in (dsns[:6], dsns[6:]):
        spans = []
        for dsn in group:
            with psycopg.connect(dsn) as conn:
                spans.append(
                    conn.execute(
                        "SELECT min(applied_at), max(applied_at + duration_ms * interval '1 ms') "
                        "FROM sqlrunner_ledger"
                    ).fetchone()
                )
        spans.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans


def test_one_server_down(tmp_path, sql_set, make_databases: MakeDatabases):
    """Targets on a server that refuses connections fail with exit 3; the others finish."""
    sql = sql_set(TENANT_SET)
    up = make_databases(6)
    port = free_port()  # nothing listens there: a server that is down
    down = [
        f"host=127.0.0.1 port={port} dbname=tenant_{i} user=u password=s3cret" for i in range(3)
    ]
    path = write_targets(tmp_path, [*down[:1], *up[:3], *down[1:], *up[3:]])
    code, doc, stderr = fleet_cli("apply", "--targets", str(path), sql=sql)
    assert code == 7, stderr
    results = {r["name"]: r for r in doc["results"]}
    gone = [r for r in results.values() if r["name"].startswith(f"127.0.0.1:{port}/")]
    assert len(gone) == 3
    assert all(r["exit_code"] == 3 and "cannot connect" in r["error"] for r in gone)
    assert all(r["outcome"] == "ok" for r in results.values() if r not in gone)
    assert all(ledger_versions(d) == [1, 2, 3] for d in up)
    assert "s3cret" not in json.dumps(doc) + stderr
    assert all("password=***" in r["target"] for r in gone)


def test_every_target_unreachable_is_exit_3(tmp_path, sql_set):
    sql = sql_set(TENANT_SET)
    port = free_port()
    path = write_targets(tmp_path, [f"host=127.0.0.1 port={port} dbname=t{i}" for i in range(2)])
    code, doc, _ = fleet_cli("apply", "--targets", str(path), sql=sql)
    assert code == 3 and doc["exit_code"] == 3


def test_canary_failure_stops_the_rest(tmp_path, sql_set, make_databases: MakeDatabases):
    sql = sql_set(TENANT_SET)
    dsns = make_databases(8)
    with psycopg.connect(dsns[1], autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id int)")
    code, doc, stderr = fleet_cli(
        "apply", "--targets", str(write_targets(tmp_path, dsns)), "--canary", "2", sql=sql
    )
    assert code == 7
    outcomes = [r["outcome"] for r in doc["results"]]
    assert outcomes == ["ok", "failed"] + ["not started"] * 6
    assert doc["results"][0]["canary"] and doc["results"][1]["canary"]
    assert doc["stopped"].startswith("canary ")
    assert all(ledger_versions(d) == [] for d in dsns[2:])
    assert "stopped: canary" in stderr


def test_canary_is_verified_before_the_rest_start(sql_set, make_databases: MakeDatabases):
    """An up-to-date canary whose verify check fails (someone dropped the table) stops all."""
    sql = sql_set(TENANT_SET)
    dsns = make_databases(4)
    assert fleet.apply(dsns[:1], sql).exit_code == 0
    with psycopg.connect(dsns[0], autocommit=True) as conn:
        conn.execute("ALTER TABLE invoices RENAME TO invoices_old")
    report = fleet.apply(dsns, sql, canary=1)
    assert [r.outcome for r in report.results] == ["failed"] + ["not started"] * 3
    assert report.results[0].exit_code == 1 and report.results[0].error_kind == "VerificationFailed"
    assert report.exit_code == 7


def test_max_failures_starts_no_new_target(sql_set, make_databases: MakeDatabases):
    sql = sql_set(TENANT_SET)
    dsns = make_databases(8)
    for dsn in (dsns[0], dsns[2]):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE invoices (id int)")
    events: list[fleet.FleetEvent] = []
    report = fleet.apply(dsns, sql, parallel=1, max_failures=2, on_event=events.append)
    assert [r.outcome for r in report.results] == ["failed", "ok", "failed"] + ["not started"] * 5
    assert report.exit_code == 7 and "limit is 2" in (report.stopped or "")
    assert [e.kind for e in events] == ["target_finished"] * 3 + ["stopped"]
    stop_first = fleet.apply(dsns[2:], sql, parallel=1, on_error="stop")
    assert [r.outcome for r in stop_first.results] == ["failed"] + ["not started"] * 5


def test_in_flight_targets_finish_after_the_limit(sql_set, make_databases: MakeDatabases):
    """max_failures stops starting targets; the ones already running are not abandoned."""
    from .sets import slow

    sql = sql_set(slow(TENANT_SET, 0.3))
    dsns = make_databases(6)
    with psycopg.connect(dsns[0], autocommit=True) as conn:
        conn.execute("CREATE TABLE accounts (id int)")  # fails at once, the others are slow
    report = fleet.apply(dsns, sql, parallel=3, max_failures=1)
    outcomes = [r.outcome for r in report.results]
    assert outcomes == ["failed", "ok", "ok", "not started", "not started", "not started"]
    assert all(ledger_versions(d) == [1, 2, 3] for d in dsns[1:3])


def test_invalid_migration_set_touches_no_target(tmp_path, sql_set, make_databases):
    sql = sql_set({**TENANT_SET, "forward/0002_duplicate.sql": "BEGIN;\nCOMMIT;\n"})
    dsns = make_databases(2)
    done = cli(
        "--sql-dir", str(sql), "fleet", "apply", "--targets", str(write_targets(tmp_path, dsns))
    )
    assert done.returncode == 2 and "0002" in done.stderr
    assert all(ledger_versions(d) == [] for d in dsns)


def test_syntax_error_stops_at_the_first_target(tmp_path, sql_set, make_databases):
    """A file that cannot be parsed fails the same everywhere: one target finds it, and it is
    reported as an error of the set (exit 2), not 200 failures."""
    sql = sql_set({**TENANT_SET, "forward/0004_bad.sql": "BEGIN;\nSELECT :'x';\nCOMMIT;\n"})
    dsns = make_databases(5)
    report = fleet.apply(dsns, sql, parallel=1)
    assert report.exit_code == 2 and report.set_error
    assert [r.outcome for r in report.results] == ["failed"] + ["not started"] * 4
