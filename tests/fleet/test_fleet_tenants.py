"""Schema-per-tenant fleets, ``fleet status``, shards, and the target list on the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from sqlrunner import fleet
from tests.integration.conftest import cli

from .conftest import MakeDatabases, free_port, ledger_versions
from .sets import TENANT_SET


def tenant_list(dsn: str, n: int) -> str:
    return "".join(
        f'[[target]]\nname = "tenant-{i:02d}"\ndsn = "{dsn}"\nschema = "tenant_{i:02d}"\n\n'
        for i in range(n)
    )


def test_fifty_tenant_schemas_in_one_database(tmp_path, sql_set, dsn):
    sql = sql_set(TENANT_SET)
    path = tmp_path / "tenants.toml"
    path.write_text(tenant_list(dsn, 50), encoding="utf-8")
    done = cli("--sql-dir", str(sql), "--json", "fleet", "apply", "--targets", str(path))
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert [r["schema"] for r in doc["results"]] == [f"tenant_{i:02d}" for i in range(50)]
    with psycopg.connect(dsn) as conn:
        tables = conn.execute(
            "SELECT table_schema, count(*) FROM information_schema.tables "
            "WHERE table_schema LIKE 'tenant\\_%' GROUP BY 1 ORDER BY 1"
        ).fetchall()
        # accounts, invoices and sqlrunner's three tables, in every tenant's own schema
        assert tables == [(f"tenant_{i:02d}", 5) for i in range(50)]
        assert conn.execute("SELECT to_regclass('public.sqlrunner_ledger')").fetchone() == (None,)
        assert conn.execute("SELECT to_regclass('public.accounts')").fetchone() == (None,)
    assert ledger_versions(dsn, "tenant_07") == [1, 2, 3]
    status = cli("--sql-dir", str(sql), "fleet", "status", "--targets", str(path))
    assert status.returncode == 0, status.stderr
    assert "50 up to date of 50 target(s)" in status.stdout


def test_tenant_schema_with_a_space_and_a_quote(sql_set, dsn):
    sql = sql_set(TENANT_SET)
    odd = fleet.FleetTarget("odd", dsn, 'Tenant "A" b')
    report = fleet.apply([odd], sql)
    assert report.exit_code == 0, report.results[0].error
    assert ledger_versions(dsn, 'Tenant "A" b') == [1, 2, 3]
    with psycopg.connect(dsn) as conn:
        found = conn.execute("SELECT to_regclass(%s)", ['"Tenant ""A"" b".invoices']).fetchone()
        assert found is not None and found[0] is not None


def test_fleet_status_states_and_exit_codes(tmp_path, sql_set, make_databases: MakeDatabases):
    sql = sql_set(TENANT_SET)
    current, behind, edited = make_databases(3)
    fleet.apply([current, edited], sql)
    fleet.apply([behind], sql, to=1)
    down = f"host=127.0.0.1 port={free_port()} dbname=gone"
    report = fleet.status([current, behind], sql)
    assert [r.state for r in report.results] == ["up to date", "pending"]
    assert report.results[1].pending == 2 and report.exit_code == 6
    assert fleet.status([current], sql).exit_code == 0
    with_down = fleet.status([current, down], sql)
    assert [r.state for r in with_down.results] == ["up to date", "unreachable"]
    assert with_down.results[1].exit_code == 3 and with_down.exit_code == 7
    with psycopg.connect(edited, autocommit=True) as conn:
        conn.execute("UPDATE sqlrunner_ledger SET checksum = 'x' WHERE version = 2")
    path = tmp_path / "t.txt"
    path.write_text(f"{current}\n{behind}\n{edited}\n{down}\n", encoding="utf-8")
    done = cli("--sql-dir", str(sql), "--json", "fleet", "status", "--targets", str(path))
    assert done.returncode == 1, done.stderr  # drift wins, as in status --exit-code
    states = [r["state"] for r in json.loads(done.stdout)["results"]]
    assert states == ["up to date", "pending", "drifted", "unreachable"]
    lines = [line for line in done.stderr.splitlines() if line.startswith("[")]
    assert len(lines) == 4 and any("2 pending" in line for line in lines)


def test_shard_slices_cover_the_list_exactly_once():
    targets = [fleet.FleetTarget(f"db-{i}", f"dbname=db_{i}") for i in range(1000)]
    for count in (1, 2, 3, 7, 16):
        slices = [
            {t.name for t in targets if fleet.Shard(k, count).holds(t)} for k in range(1, count + 1)
        ]
        assert sum(map(len, slices)) == len(targets)
        assert set().union(*slices) == {t.name for t in targets}
        assert all(len(s) > len(targets) / count / 2 for s in slices)  # roughly even
    # stable: the same slice on every machine and in every Python process (no salted hash())
    script = (
        "from sqlrunner.fleet import FleetTarget, Shard; "
        "print([k for k in range(1, 5) if Shard(k, 4).holds(FleetTarget('tenant-42', ''))])"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env={"PYTHONHASHSEED": str(seed), **_env()},
        ).stdout
        for seed in (1, 2)
    }
    assert len(runs) == 1 and runs.pop().strip() == str(
        [k for k in range(1, 5) if fleet.Shard(k, 4).holds(fleet.FleetTarget("tenant-42", ""))]
    )


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_shards_on_the_cli_apply_each_target_once(tmp_path, sql_set, make_databases):
    sql = sql_set(TENANT_SET)
    dsns = make_databases(12)
    path = tmp_path / "t.txt"
    path.write_text("\n".join(dsns), encoding="utf-8")
    names: list[str] = []
    for k in (1, 2, 3):
        done = cli(
            "--sql-dir",
            str(sql),
            "--json",
            "fleet",
            "apply",
            "--targets",
            str(path),
            "--shard",
            f"{k}/3",
        )
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        assert doc["shard"] == f"{k}/3"
        assert all(r["applied"] for r in doc["results"])
        names += [r["name"] for r in doc["results"]]
    assert len(names) == len(set(names)) == 12
    assert all(ledger_versions(d) == [1, 2, 3] for d in dsns)


@pytest.mark.parametrize("shard", ["0/4", "5/4", "1", "a/b", "1/0"])
def test_bad_shard_is_exit_2(tmp_path, sql_set, shard):
    path = tmp_path / "t.txt"
    path.write_text("dbname=x\n", encoding="utf-8")
    done = cli(
        "--sql-dir",
        str(sql_set(TENANT_SET)),
        "fleet",
        "apply",
        "--targets",
        str(path),
        "--shard",
        shard,
    )
    assert done.returncode == 2 and "--shard" in done.stderr


def test_targets_from_stdin(sql_set, make_databases):
    sql = sql_set(TENANT_SET)
    dsns = make_databases(3)
    argv = [sys.executable, "-m", "sqlrunner", "--sql-dir", str(sql), "fleet", "apply"]
    done = subprocess.run(
        [*argv, "--targets", "-", "--json"],
        input="# printed by a command\n" + "\n".join(dsns) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["results"]) == 3
    assert all(ledger_versions(d) == [1, 2, 3] for d in dsns)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# nothing here\n\n", "no targets"),
        ("dbname=a\ndbname=a\n", "listed twice"),
        ("host=x password='s3cret\n", "cannot parse"),
        ('[[target]]\nname = "a"\n', "needs dsn"),
        ('[[target]]\ndsn = "dbname=a"\nshema = "t"\n', "unknown key"),
        ("[[target]]\ndsn = \n", "not valid TOML"),
    ],
)
def test_bad_target_list_is_exit_2_and_touches_nothing(tmp_path, sql_set, text, message):
    path = tmp_path / "targets"
    path.write_text(text, encoding="utf-8")
    done = cli(
        "--sql-dir", str(sql_set(TENANT_SET)), "--json", "fleet", "apply", "--targets", str(path)
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "s3cret" not in done.stderr + done.stdout
    assert json.loads(done.stdout)["exit_code"] == 2


def test_missing_target_file_is_exit_2(tmp_path: Path, sql_set):
    done = cli(
        "--sql-dir",
        str(sql_set(TENANT_SET)),
        "fleet",
        "status",
        "--targets",
        str(tmp_path / "nope"),
    )
    assert done.returncode == 2 and "cannot read the target list" in done.stderr


def test_quiet_prints_only_failures(tmp_path, sql_set, make_databases):
    sql = sql_set(TENANT_SET)
    dsns = make_databases(3)
    with psycopg.connect(dsns[2], autocommit=True) as conn:
        conn.execute("CREATE TABLE accounts (id int)")
    path = tmp_path / "t.txt"
    path.write_text("\n".join(dsns), encoding="utf-8")
    done = cli("--sql-dir", str(sql), "-q", "fleet", "apply", "--targets", str(path))
    assert done.returncode == 7
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "FAILED" in lines[0] and "forward/0001_accounts.sql:2:1" in lines[0]


def test_settings_file_reaches_fleet_apply(tmp_path, sql_set, make_databases):
    """sqlrunner.toml's options apply to `fleet apply` as to `apply` (here: strict)."""
    full = sql_set(TENANT_SET)
    dsns = make_databases(2)
    fleet.apply(dsns, full)
    older = tmp_path / "older"
    for relative, text in TENANT_SET.items():
        if "0003" not in relative:
            (older / relative).parent.mkdir(parents=True, exist_ok=True)
            (older / relative).write_text(text, encoding="utf-8")
    (tmp_path / "t.txt").write_text("\n".join(dsns), encoding="utf-8")
    argv = [sys.executable, "-m", "sqlrunner", "--sql-dir", str(older), "--json", "fleet"]
    run = [*argv, "apply", "--targets", "t.txt"]
    lenient = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert lenient.returncode == 0, lenient.stderr  # a future version: a warning
    (tmp_path / "sqlrunner.toml").write_text("strict = true\n", encoding="utf-8")
    strict = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert strict.returncode == 7, strict.stderr
    errors = {r["error_kind"] for r in json.loads(strict.stdout)["results"]}
    assert errors == {"FutureVersions"}
