"""The runner lock and the connections under real faults: a killed lock backend, a
dropped flow, transaction_timeout, PgBouncer's idle_transaction_timeout, a stopped
runner, a blackholed network, a silent server, an unprivileged role, and signals.

The "data fix" below is the issue's scenario: a migration that inserts a row must
leave exactly one row however the first runner loses its lock. It waits at a gate
the test opens, so both runners are inside it at once, deterministically.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import sqlrunner
from sqlrunner.ledger import LedgerTables

from ..conftest import REPO
from .conftest import (
    SqlSet,
    advisory_locks,
    apply_at_once,
    cli,
    finish,
    lock_holder,
    query,
    sleeping_runner,
    spawn,
    wait_until,
)
from .faults import pgbouncer, proxy_to, silent_server

BASE = """BEGIN;
CREATE TABLE gate (open boolean NOT NULL);
INSERT INTO gate VALUES (false);
CREATE TABLE fixes (note text NOT NULL, pid int NOT NULL DEFAULT pg_backend_pid());
CREATE TABLE accounts (id int PRIMARY KEY);
COMMIT;
"""

DATA_FIX = """BEGIN;
INSERT INTO fixes (note) VALUES ('data fix');
DO $$BEGIN WHILE NOT (SELECT open FROM gate) LOOP PERFORM pg_sleep(0.05); END LOOP; END$$;
COMMIT;
"""

AT_GATE = (
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE query LIKE '%DO $$BEGIN WHILE NOT%' AND pid <> pg_backend_pid()"
)
LOCK_BACKEND = "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'sqlrunner lock%'"


def at_gate(dsn: str) -> int:
    return int(query(dsn, AT_GATE)[0][0])


def lose_the_lock_inside_the_data_fix(
    dsn: str, sql_set: SqlSet, lose: Callable[[], None], *, first_dsn: str | None = None
) -> tuple[tuple[int, str], tuple[int, str]]:
    """Runner 1 (through ``first_dsn``) sits inside the data fix when ``lose()`` takes its
    lock away; runner 2 then takes the lock and enters the same data fix; the gate
    opens. Returns both (exit code, stderr)."""
    root = sql_set({"forward/0001_base.sql": BASE, "forward/0002_data_fix.sql": DATA_FIX})
    sqlrunner.apply(dsn, root, to=1)
    first = spawn("--sql-dir", str(root), "apply", dsn=first_dsn or dsn)
    second: subprocess.Popen[str] | None = None
    try:
        wait_until(lambda: at_gate(dsn) == 1, message="runner 1 inside the data fix")
        lose()
        wait_until(lambda: advisory_locks(dsn) == 0, timeout=15, message="runner 1's lock to go")
        second = spawn("--sql-dir", str(root), "apply", dsn=dsn)
        wait_until(lambda: at_gate(dsn) == 2, message="runner 2 inside the data fix")
    finally:
        query(dsn, "UPDATE gate SET open = true RETURNING 1")
    return finish(first), finish(second)


def assert_first_stopped_and_fix_ran_once(
    dsn: str, first: tuple[int, str], second: tuple[int, str]
) -> None:
    (code1, err1), (code2, err2) = first, second
    assert code1 == 5, err1
    # Stopped by its own lock check, not by the ledger's key behind it: the runner that
    # loses that race (AppliedElsewhere) says "had lost the runner lock" too.
    assert "lost the runner lock: " in err1, err1
    assert "stopped before committing forward/0002_data_fix.sql" in err1, err1
    assert "Traceback" not in err1
    assert code2 == 0, err2
    assert query(dsn, "SELECT count(*) FROM fixes") == [(1,)], "the data fix ran twice"
    assert query(dsn, "SELECT count(*) FROM sqlrunner_ledger WHERE version = 2") == [(1,)]
    assert query(
        dsn,
        "SELECT count(*) FROM sqlrunner_ledger_history WHERE kind = 'run' AND outcome = 'failed'",
    ) == [(1,)]


# --- 1. a migration never commits without the runner lock -------------------------------


def test_watchdog_killing_the_lock_backend_stops_the_run_before_a_second_apply(
    dsn: str, sql_set: SqlSet
) -> None:
    def watchdog() -> None:  # e.g. a cron job ending sessions "idle in transaction"
        query(dsn, f"SELECT pg_terminate_backend(pid) FROM ({LOCK_BACKEND}) AS lock")

    first, second = lose_the_lock_inside_the_data_fix(dsn, sql_set, watchdog)
    assert_first_stopped_and_fix_ran_once(dsn, first, second)


def test_dropped_lock_flow_stops_the_run_before_a_second_apply(dsn: str, sql_set: SqlSet) -> None:
    with proxy_to(dsn) as proxy:

        def drop() -> None:  # a NAT or firewall forgets the idle flow and resets it
            flows = proxy.named("sqlrunner lock")
            assert len(flows) == 1, [f.application_name for f in proxy.flows]
            flows[0].reset()

        first, second = lose_the_lock_inside_the_data_fix(dsn, sql_set, drop, first_dsn=proxy.dsn())
    assert_first_stopped_and_fix_ran_once(dsn, first, second)


def test_pgbouncer_idle_transaction_timeout_loses_the_lock_and_nothing_runs_twice(
    dsn: str, sql_set: SqlSet
) -> None:
    """PgBouncer ends a client idle in a transaction for longer than this, whatever
    the server allows: the runner cannot keep the lock, but it notices, exits 5, and
    commits nothing without it."""
    with pgbouncer(dsn, "idle_transaction_timeout = 1") as through:
        first, second = lose_the_lock_inside_the_data_fix(
            dsn, sql_set, lambda: None, first_dsn=through
        )
    assert_first_stopped_and_fix_ran_once(dsn, first, second)


def test_runner_lock_is_immune_to_transaction_timeout(dsn: str, sql_set: SqlSet) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.info.server_version < 170000:
            pytest.skip("transaction_timeout is new in PostgreSQL 17")
        conn.execute(
            f"ALTER DATABASE {psycopg.sql.Identifier(conninfo_to_dict(dsn)['dbname']).as_string(conn)}"
            " SET transaction_timeout = '1s'"
        )
    with psycopg.connect(dsn) as conn, pytest.raises(psycopg.errors.TransactionTimeout):
        conn.execute("SELECT pg_sleep(1.5)")  # the setting is in force for everyone else
    fixes = {
        f"forward/000{n}_fix_{n}.sql": f"BEGIN;\nINSERT INTO fixes (note) VALUES ('fix {n}');\n"
        "SELECT pg_sleep(0.4);\nCOMMIT;\n"
        for n in range(2, 8)
    }
    root = sql_set({"forward/0001_base.sql": BASE, **fixes})
    outcomes = apply_at_once(2, root, dsn, timeout=60)
    assert [code for code, _, _ in outcomes] == [0, 0], outcomes
    assert query(dsn, "SELECT note, count(*) FROM fixes GROUP BY 1 ORDER BY 1") == [
        (f"fix {n}", 1) for n in range(2, 8)
    ]


def test_no_transaction_statement_never_starts_without_the_lock(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/0001_base.sql": BASE,
            "forward/0002_fix.sql": "-- sqlrunner: no-transaction\n"
            "DO $$BEGIN WHILE NOT (SELECT open FROM gate) LOOP PERFORM pg_sleep(0.05); "
            "END LOOP; END$$;\n"
            "INSERT INTO fixes (note) VALUES ('after the gate');\n",
        }
    )
    sqlrunner.apply(dsn, root, to=1)
    runner = spawn("--sql-dir", str(root), "apply", dsn=dsn)
    try:
        wait_until(lambda: at_gate(dsn) == 1, message="the runner at the gate")
        query(dsn, f"SELECT pg_terminate_backend(pid) FROM ({LOCK_BACKEND}) AS lock")
    finally:
        query(dsn, "UPDATE gate SET open = true RETURNING 1")
    code, err = finish(runner)
    assert code == 5, err
    assert "lost the runner lock" in err and "0002_fix.sql:3" in err, err
    assert query(dsn, "SELECT count(*) FROM fixes") == [(0,)]


def test_lock_lost_while_retrying_a_lock_timeout_stops_at_once(dsn: str, sql_set: SqlSet) -> None:
    """The runner is retrying an ALTER behind an application's lock when its lock flow
    is reset: it stops with exit 5 at the next attempt instead of retrying for a minute
    (and perhaps committing after another runner took over)."""
    root = sql_set({"forward/0001_base.sql": BASE, "forward/0002_stalls.sql": STALLS})
    sqlrunner.apply(dsn, root, to=1)
    # ACCESS SHARE, idle in transaction
    with lock_holder(dsn, "SELECT count(*) FROM accounts", "report-job"), proxy_to(dsn) as proxy:
        runner = spawn(
            "--sql-dir", str(root), "apply", "--lock-timeout", "100ms",
            "--lock-retries", "100", dsn=proxy.dsn(),
        )  # fmt: skip
        waiting = (
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'accounts'::regclass"
        )
        wait_until(lambda: query(dsn, waiting)[0][0] == 1, message="the ALTER to queue")
        proxy.named("sqlrunner lock")[0].reset()
        started = time.monotonic()
        code, err = finish(runner, timeout=30)
        took = time.monotonic() - started
    assert code == 5 and "lost the runner lock" in err, err
    assert took < 5, f"kept retrying for {took:.1f}s without the lock"
    assert query(dsn, "SELECT count(*) FROM sqlrunner_ledger WHERE version = 2") == [(0,)]


def test_file_recorded_by_someone_else_meanwhile_is_rolled_back_not_overwritten(
    dsn: str, sql_set: SqlSet
) -> None:
    """Another writer records the data fix while the runner is inside it (a runner that
    lost its lock, or a hand repair): the runner's plain INSERT fails on the ledger's key
    and it says so, instead of upserting over the other row and committing a second copy."""
    root = sql_set({"forward/0001_base.sql": BASE, "forward/0002_data_fix.sql": DATA_FIX})
    sqlrunner.apply(dsn, root, to=1)
    runner = spawn("--sql-dir", str(root), "apply", dsn=dsn)
    try:
        wait_until(lambda: at_gate(dsn) == 1, message="the runner inside the data fix")
        query(
            dsn,
            "INSERT INTO sqlrunner_ledger (kind, version, name, checksum, duration_ms, "
            "sqlrunner_version) VALUES ('forward', 2, 'data_fix', 'elsewhere', 0, 'x') RETURNING 1",
        )
    finally:
        query(dsn, "UPDATE gate SET open = true RETURNING 1")
    code, err = finish(runner)
    assert code == 5, err
    assert "another sqlrunner applied and recorded this file" in err and "0002_data_fix" in err
    assert query(dsn, "SELECT count(*) FROM fixes") == [(0,)]
    assert query(dsn, "SELECT checksum FROM sqlrunner_ledger WHERE version = 2") == [("elsewhere",)]


def test_seed_rewrite_cannot_be_recorded_twice(dsn: str, sql_set: SqlSet) -> None:
    """The seed ledger write updates a row only from another checksum: a second runner
    recording the same seed content fails instead of overwriting."""
    from sqlrunner import ledger
    from sqlrunner.ledger import RunContext

    tables, ctx = LedgerTables(), RunContext.new()
    root = sql_set(
        {"forward/0001_base.sql": BASE, "seed/0001_s.sql": "BEGIN;\nSELECT 1;\nCOMMIT;\n"}
    )
    sqlrunner.apply(dsn, root)
    write = ledger.record_applied(tables, "seed", 1, "s", "new", "0", ctx)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(write)  # another checksum before: updated
        assert conn.execute(
            "SELECT checksum FROM sqlrunner_ledger WHERE kind = 'seed'"
        ).fetchall() == [("new",)]
        with pytest.raises(psycopg.errors.UniqueViolation) as caught:
            conn.execute(write)  # the same content again: refused
        assert ledger.is_duplicate(caught.value, tables)


# --- 2. a stalled or partitioned runner never holds locks for long -----------------------

STALLS = """BEGIN;
ALTER TABLE accounts ADD COLUMN note text;
SELECT pg_sleep(1);
ALTER TABLE accounts ADD COLUMN note2 text;
COMMIT;
"""
IN_SLEEP = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(1)%'"


def application_query_seconds(dsn: str) -> float:
    """How long an application's read of the migrated table takes (at most 20 s)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET statement_timeout = '20s'")
        started = time.monotonic()
        conn.execute("SELECT count(*) FROM accounts")
        return time.monotonic() - started


@pytest.fixture
def stalling_set(dsn: str, sql_set: SqlSet) -> Iterator[str]:
    root = sql_set({"forward/0001_base.sql": BASE, "forward/0002_stalls.sql": STALLS})
    sqlrunner.apply(dsn, root, to=1)
    yield str(root)
    # Whatever happened, the next run finishes the job.
    result = cli("--sql-dir", str(root), "apply", dsn=dsn)
    assert result.returncode == 0, result.stderr
    assert query(dsn, "SELECT count(*) FROM sqlrunner_ledger WHERE version = 2") == [(1,)]


def test_stopped_runner_releases_its_table_within_seconds(dsn: str, stalling_set: str) -> None:
    runner = spawn("--sql-dir", stalling_set, "apply", dsn=dsn)
    try:
        wait_until(lambda: query(dsn, IN_SLEEP)[0][0] == 1, message="the migration's sleep")
        runner.send_signal(signal.SIGSTOP)  # a frozen VM, a debugger, a swapped-out host
        assert application_query_seconds(dsn) < 10
    finally:
        runner.send_signal(signal.SIGCONT)
    code, err = finish(runner)
    assert code != 0 and "Traceback" not in err, err
    assert query(dsn, "SELECT count(*) FROM sqlrunner_ledger WHERE version = 2") == [(0,)]


def test_blackholed_runner_releases_its_table_within_seconds(dsn: str, stalling_set: str) -> None:
    with proxy_to(dsn) as proxy:
        runner = spawn("--sql-dir", stalling_set, "apply", dsn=proxy.dsn())
        try:
            wait_until(lambda: query(dsn, IN_SLEEP)[0][0] == 1, message="the migration's sleep")
            proxy.blackhole()
            assert application_query_seconds(dsn) < 10
        finally:
            runner.kill()
            runner.wait(timeout=10)
    wait_until(lambda: advisory_locks(dsn) == 0, timeout=15, message="the runner lock to go")


def unix_dsn(dsn: str) -> str:
    """``dsn`` over the server's Unix socket, which a network namespace cannot cut off."""
    if str(conninfo_to_dict(dsn).get("host", "")).startswith("/"):
        return dsn
    with psycopg.connect(dsn) as conn:
        directories = str(conn.execute("SHOW unix_socket_directories").fetchone()[0])  # type: ignore[index]
        port = str(conn.execute("SHOW port").fetchone()[0])  # type: ignore[index]
    if not directories:
        pytest.fail("the test server has no Unix socket (unix_socket_directories is empty)")
    return make_conninfo(dsn, host=directories.split(",")[0].strip(), port=port)


def test_partitioned_runner_exits_instead_of_hanging_and_frees_its_table(
    dsn: str, stalling_set: str
) -> None:
    """A real partition: the runner and a proxy in their own network namespace, whose
    loopback goes down mid-migration. The server frees the table within seconds; the
    runner's keepalives and tcp_user_timeout end its wait with an error."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.fail("needs unshare(1) and ip(8) (util-linux, iproute2)")
    if os.geteuid() != 0:
        pytest.skip("a network namespace needs root (CI runs as root)")
    argv = ["unshare", "-n", sys.executable, "-m", "tests.integration.faults", unix_dsn(dsn)]
    runner = subprocess.Popen(
        [*argv, "--sql-dir", stalling_set, "apply"],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: query(dsn, IN_SLEEP)[0][0] == 1, message="the migration's sleep")
        runner.send_signal(signal.SIGUSR1)  # the partition
        started = time.monotonic()
        assert application_query_seconds(dsn) < 10
        code, err = finish(runner, timeout=40)
        took = time.monotonic() - started
    finally:
        runner.kill()
    assert code not in (0, None) and "Traceback" not in err, err
    assert "timed out" in err.lower(), err
    assert took < 30, f"the runner hung for {took:.0f}s"


# --- 11. connecting has a timeout -----------------------------------------------------------


def test_server_that_never_answers_does_not_hang_wait(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_base.sql": BASE})
    with silent_server() as port:
        silent = make_conninfo(dsn, host="127.0.0.1", port=str(port))
        started = time.monotonic()
        result = cli("--sql-dir", str(root), "apply", "--wait", "3", dsn=silent, timeout=30)
        took = time.monotonic() - started
    assert result.returncode == 3, result.stderr
    assert "cannot connect" in result.stderr and "timeout" in result.stderr.lower()
    assert took < 10, f"took {took:.1f}s"


# --- 16. blockers named for an unprivileged role --------------------------------------------


@pytest.fixture
def unprivileged(dsn: str) -> Iterator[str]:
    """A DSN for a fresh role without pg_read_all_stats that may create in ``dsn``'s db."""
    name = "sqlr_" + conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{name}" LOGIN')
        conn.execute(f'GRANT CREATE ON SCHEMA public TO "{name}"')
        conn.execute(f'GRANT CREATE ON DATABASE "{conninfo_to_dict(dsn)["dbname"]}" TO "{name}"')
    try:
        yield make_conninfo(dsn, user=name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{name}"')
        with psycopg.connect(make_conninfo(dsn, dbname="postgres"), autocommit=True) as conn:
            conn.execute(
                f'REVOKE ALL ON DATABASE "{conninfo_to_dict(dsn)["dbname"]}" FROM "{name}"'
            )
            conn.execute(f'DROP ROLE "{name}"')


def test_table_lock_blocker_hidden_from_the_role_is_named_with_the_privilege(
    dsn: str, unprivileged: str, sql_set: SqlSet
) -> None:
    root = sql_set({"forward/0001_base.sql": BASE, "forward/0002_stalls.sql": STALLS})
    sqlrunner.apply(unprivileged, root, to=1)
    # ACCESS SHARE, idle in transaction
    with lock_holder(dsn, "SELECT count(*) FROM accounts", "report-job"):
        result = cli(
            "--sql-dir",
            str(root),
            "apply",
            "--lock-timeout",
            "100ms",
            "--lock-retries",
            "2",
            dsn=unprivileged,
        )
    assert result.returncode == 5, result.stderr
    assert "report-job" in result.stderr and "pg_read_all_stats" in result.stderr
    assert "None" not in result.stderr and "unknown state" not in result.stderr


def test_runner_lock_holder_hidden_from_the_role_is_named_with_the_privilege(
    dsn: str, unprivileged: str, sql_set: SqlSet
) -> None:
    root = sql_set({"forward/0001_base.sql": BASE})
    runner_lock = f"SELECT pg_advisory_xact_lock({LedgerTables().lock_key:d})"
    with lock_holder(dsn, runner_lock, "sqlrunner lock (other host)"):
        result = cli("--sql-dir", str(root), "apply", "--runner-wait", "0.5", dsn=unprivileged)
    assert result.returncode == 5, result.stderr
    assert "sqlrunner lock (other host)" in result.stderr and "pg_read_all_stats" in result.stderr
    assert "None" not in result.stderr and "since ?" not in result.stderr


# --- 18. interrupted runs are in the history -----------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_writes_a_history_row(
    dsn: str, sql_set: SqlSet, signum: signal.Signals
) -> None:
    root = sql_set(
        {
            "forward/0001_base.sql": BASE,
            "forward/0002_slow.sql": "BEGIN;\nSELECT pg_sleep(30);\nCOMMIT;\n",
        }
    )
    runner = sleeping_runner(root, dsn)
    runner.send_signal(signum)
    code, err = finish(runner, timeout=20)
    assert code == 128 + signum, err
    assert "Traceback" not in err
    assert query(
        dsn,
        "SELECT action, outcome, detail FROM sqlrunner_ledger_history WHERE kind = 'run'",
    ) == [
        (
            "apply",
            "interrupted",
            "interrupted (KeyboardInterrupt)"
            if signum == signal.SIGINT
            else "interrupted (Terminated)",
        )
    ]
    assert query(dsn, "SELECT version FROM sqlrunner_ledger") == [(1,)]
