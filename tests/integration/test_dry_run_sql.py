"""``apply --dry-run --sql`` (issue 12 item 16): the SQL a run would send, in order, the
runner's own statements marked, each file statement with the table locks it takes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
from psycopg import pq

import sqlrunner
from sqlrunner.files import is_batched, load_migration_set
from sqlrunner.session import SEPARATOR
from sqlrunner.sqltext import script_for, split_statements

from .clirun import invoke
from .conftest import SqlSet

REPO = Path(__file__).resolve().parents[2]
MARK = "-- sqlrunner:"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def user_tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in rows.fetchall()}


def file_statements(sql_dir: Path) -> list[str]:
    """Every statement of the forward, seed and verify files in apply order, read with the
    parser, less the outer BEGIN/COMMIT pair (the runner sends its own in their place)."""
    files = load_migration_set(sql_dir)
    expected = []
    for m in (*files.forward, *files.seed, *files.verify):
        statements = script_for(m).statements if is_batched(m) else split_statements(m)
        if not m.no_transaction and m.kind != "verify":
            statements = tuple(s for s in statements if s.kind != "TransactionStmt")
        expected += [s.text + ";" for s in statements]
    return expected


def unmarked(sql: str) -> str:
    """The script less its ``-- sqlrunner:`` lines."""
    return "\n".join(line for line in sql.splitlines() if not line.startswith(MARK))


def test_the_shipped_set_printed_less_the_runner_lines_is_exactly_its_statements(
    dsn: str,
) -> None:
    run = invoke("--dsn", dsn, "--sql-dir", str(REPO / "sql"), "apply", "--dry-run", "--sql")
    assert run.code == 0, run.output
    assert unmarked(run.stdout) == "\n".join(file_statements(REPO / "sql"))
    assert user_tables(dsn) == set()  # a dry run: not even the ledger was created
    assert "would apply" in run.stderr  # the summary went to stderr, stdout is the script


def test_the_runner_statements_come_in_the_order_they_are_sent(dsn: str, sql_set: SqlSet) -> None:
    sql_dir = sql_set(
        {
            "forward/0001_items.sql": "BEGIN;\nCREATE TABLE items (id int PRIMARY KEY);\n"
            "ALTER TABLE items ADD COLUMN name text;\nCOMMIT;\n",
        }
    )
    run = invoke("--dsn", dsn, "--sql-dir", str(sql_dir), "apply", "--dry-run", "--sql")
    assert run.code == 0, run.output
    lines = run.stdout.splitlines()

    def at(fragment: str) -> int:
        return next(i for i, line in enumerate(lines) if fragment in line)

    assert lines[at("pg_try_advisory_xact_lock")].startswith(MARK)
    assert at("pg_try_advisory_xact_lock") < at(f"{MARK} BEGIN") < at("SET LOCAL lock_timeout")
    assert at("SET LOCAL lock_timeout") < at("CREATE TABLE items") < at("ADD COLUMN name")
    assert at("ADD COLUMN name") < at("RESET ALL") < at('INSERT INTO "public"."sqlrunner_ledger"')
    history = 'INSERT INTO "public"."sqlrunner_ledger_history"'
    assert at('INSERT INTO "public"."sqlrunner_ledger" ') < at(history) < at(f"{MARK} COMMIT")
    assert lines[at("ADD COLUMN name") - 1] == f"{MARK} line 3: locks ACCESS EXCLUSIVE on items"
    assert lines[at("CREATE TABLE items") - 1] == f"{MARK} line 2: no table lock"


def test_each_statement_names_the_lock_it_takes_on_which_table(dsn: str, sql_set: SqlSet) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE accounts (id int PRIMARY KEY); CREATE TABLE orders (a int)")
    sql_dir = sql_set(
        {
            "forward/0001_fk.sql": "BEGIN;\nALTER TABLE orders ADD CONSTRAINT orders_a_fkey "
            "FOREIGN KEY (a) REFERENCES accounts (id) NOT VALID;\nINSERT INTO orders VALUES (1);\n"
            "COMMIT;\n",
            "forward/0002_index.sql": "-- sqlrunner: no-transaction\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_a ON orders (a);\n"
            "ALTER TABLE orders VALIDATE CONSTRAINT orders_a_fkey;\n",
        }
    )
    run = invoke("--dsn", dsn, "--sql-dir", str(sql_dir), "apply", "--dry-run", "--sql")
    assert run.code == 0, run.output
    for expected in (
        "line 2: locks SHARE ROW EXCLUSIVE on orders, SHARE ROW EXCLUSIVE on accounts",
        "line 3: locks ROW EXCLUSIVE on orders",
        "line 2: locks SHARE UPDATE EXCLUSIVE on orders",
        "line 3: locks SHARE UPDATE EXCLUSIVE on orders",
    ):
        assert f"{MARK} {expected}" in run.stdout.splitlines(), run.stdout
    # the concurrent build runs alone, after a lock check and without our SET LOCALs
    lines = run.stdout.splitlines()
    build = next(i for i, line in enumerate(lines) if line.startswith("CREATE INDEX CONC"))
    assert "SET LOCAL" not in lines[build - 2] and "advisory key" in lines[build - 2]
    assert "sqlrunner_ledger_progress" in lines[build + 4]  # after SET LOCAL auth/role
    assert user_tables(dsn) == {"accounts", "orders"}


def test_json_lists_every_statement_with_who_sends_it_and_its_locks(
    dsn: str, sql_set: SqlSet
) -> None:
    sql_dir = sql_set(
        {"forward/0001_items.sql": "BEGIN;\nCREATE INDEX ON pg_class_copy (x);\nCOMMIT;\n"}
    )
    run = invoke("--dsn", dsn, "--sql-dir", str(sql_dir), "--json", "apply", "--dry-run", "--sql")
    assert run.code == 0, run.output
    document = json.loads(run.stdout)
    assert document["dry_run"] is True
    ours = [s for s in document["statements"] if s["by"] == "file"]
    assert ours == [
        {
            "sql": "CREATE INDEX ON pg_class_copy (x)",
            "by": "file",
            "file": "forward/0001_items.sql",
            "line": 2,
            "locks": [{"mode": "SHARE", "table": "pg_class_copy"}],
            "lock_note": "",
        }
    ]
    runner = [s["sql"] for s in document["statements"] if s["by"] == "sqlrunner"]
    assert "SET LOCAL lock_timeout = '200ms'" in runner
    assert any(q.startswith('INSERT INTO "public"."sqlrunner_ledger" ') for q in runner)
    assert runner[-1].startswith("(lock connection)")


def test_sql_without_dry_run_is_refused_and_nothing_pending_says_so(
    dsn: str, sql_set: SqlSet
) -> None:
    sql_dir = sql_set({"forward/0001_items.sql": "BEGIN;\nCREATE TABLE items (id int);\nCOMMIT;\n"})
    refused = invoke("--dsn", dsn, "--sql-dir", str(sql_dir), "apply", "--sql")
    assert refused.code == 2
    assert refused.errors == [
        "sqlrunner: error: --sql shows what a dry run would send: add --dry-run"
    ]
    assert user_tables(dsn) == set()
    assert invoke("--dsn", dsn, "--sql-dir", str(sql_dir), "apply").code == 0
    idle = invoke("--dsn", dsn, "--sql-dir", str(sql_dir), "apply", "--dry-run", "--sql")
    assert idle.code == 0
    assert idle.stdout.splitlines()[-1] == f"{MARK} nothing to apply"


def sent_parts(trace: bytes) -> list[str]:
    """Every statement sent in a simple-query message, from libpq's trace of the connection
    (a message's length field says where its text ends, quotes and newlines included)."""
    parts = []
    for found in re.finditer(rb'^F\t(\d+)\tQuery\t "', trace, re.M):
        text = trace[found.end() : found.end() + int(found[1]) - 5].decode()
        parts += text.split(SEPARATOR)
    return parts


def normal(statement: str) -> str:
    return UUID.sub("<uuid>", statement)


# what only the run knows, shown in the preview as <name> or <words> (a batch's bounds: the
# file's :lo and :hi): any text in its place
PLACEHOLDER = re.compile(r"<[a-z_ ]+>|:lo\b|:hi\b")


def shape(statement: str) -> re.Pattern[str]:
    """The statement, its placeholders matching whatever the run put there."""
    pieces = PLACEHOLDER.split(statement)
    return re.compile(".+?".join(map(re.escape, pieces)), re.S)


def sent_as(shown: str, part: str) -> bool:
    """Whether ``part`` is what the preview's ``shown`` stands for (the lock check is
    described, "DO: ...": it stands for the DO block sent there)."""
    if shown.startswith("DO: "):
        return part.startswith("DO $")
    return shape(shown).fullmatch(part) is not None


def first_not_sent(wanted: list[str], sent: list[str]) -> str | None:
    """The first of ``wanted`` not sent after the ones before it; None when all were."""
    remaining = iter(sent)
    return next((w for w in wanted if not any(sent_as(w, p) for p in remaining)), None)


def test_the_preview_is_what_the_run_then_sends_in_the_same_order(
    dsn: str, sql_set: SqlSet, tmp_path: Path
) -> None:
    """The preview is built apart from the executor: this holds the two together. Each
    statement of the preview (not its descriptions of the lock connection and the lock
    check) is sent by the real run, in that order; its placeholders (a duration, a
    batch's bounds and size) stand for whatever the run put there."""
    sql_dir = sql_set(
        {
            "forward/0001_t.sql": "SET lock_timeout = '1s';\nBEGIN;\n"
            "CREATE TABLE t (id bigint PRIMARY KEY, c text);\nALTER TABLE t ADD COLUMN d int;\n"
            "INSERT INTO t (id) VALUES (2), (3), (4);\nCOMMIT;\n",
            "forward/0002_idx.sql": "-- sqlrunner: no-transaction\nSET statement_timeout = 0;\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_c ON t (c);\n"
            "ALTER TABLE t ADD CONSTRAINT t_d CHECK (d > 0) NOT VALID;\n"
            "ALTER TABLE t VALIDATE CONSTRAINT t_d;\n",
            "forward/0003_fill.sql": "-- sqlrunner: batched table=public.t key=id size=2\n"
            "UPDATE t SET d = 1 WHERE id >= :lo AND id < :hi AND d IS NULL;\n",
            "seed/0001_rows.sql": "BEGIN;\nINSERT INTO t VALUES (1, 'it''s') ON CONFLICT DO NOTHING;\n"
            "COMMIT;\n",
            "verify/0001_t.sql": "SELECT 't has rows', count(*) > 0, count(*)::text FROM t;\n"
            "SELECT 'd filled', bool_and(d = 1), NULL FROM t WHERE id > 1;\n",
        }
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        preview = sqlrunner.apply(conn, sql_dir, dry_run=True, show_sql=True)
        trace = tmp_path / "trace"
        with trace.open("wb") as out:
            conn.pgconn.trace(out.fileno())
            conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
            report = sqlrunner.apply(conn, sql_dir)
            conn.pgconn.untrace()
    assert report.verification is not None and len(report.verification.checks) == 2
    assert report.verification.ok, report.verification
    exact = [
        normal(s.sql if s.by == "file" else s.sql.split("  -- ")[0])  # less the preview's notes
        for s in preview.statements
        if not s.sql.startswith(("(lock connection)", "DO: ", "create ", "SELECT kind, version"))
        and not s.sql.startswith(("for each batch", "after the last batch"))
    ]
    sent = [normal(part) for part in sent_parts(trace.read_bytes())]
    assert len(exact) > 40
    assert first_not_sent(exact, sent) is None, (first_not_sent(exact, sent), sent)
    files = [s.sql for s in preview.statements if s.by == "file" and ":lo" not in s.sql]
    assert [p for p in sent if p in files] == files  # each file statement sent once, in order
    batches = [p for p in sent if p.startswith("UPDATE t SET d = 1")]
    assert batches == [  # the batched file's one statement, its bounds in place: [2, 5)
        f"UPDATE t SET d = 1 WHERE id >= {lo} AND id < {hi} AND d IS NULL"
        for lo, hi in ((2, 4), (4, 5))
    ]
    # what the preview shows for one batch is what each of the two batches sent, in order
    texts = [normal(s.sql) for s in preview.statements]
    one = texts[next(i for i, t in enumerate(texts) if t.startswith("for each batch")) + 1 :]
    one = one[: one.index("after the last batch:")]
    start = sent.index(batches[0]) - next(i for i, t in enumerate(one) if ":lo" in t)
    run = sent[start : start + 2 * len(one)]
    unlike = [(w, p) for w, p in zip(one * 2, run, strict=True) if not sent_as(w, p)]
    assert not unlike, unlike
