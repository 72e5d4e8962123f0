#!/usr/bin/env python3
"""Insert latency on a busy llm_usage_logs while the LLM management set is applied.

    python bench/busy_table.py                  # 2,000,000 rows, embedded PostgreSQL 18
    python bench/busy_table.py --rows 200000    # a quick run
    python bench/busy_table.py --pg 15          # Debian's PostgreSQL 15
    python bench/busy_table.py --write-results  # also update bench/RESULTS.md

For each variant, on a fresh database: the baseline (forward/0001) is applied,
llm_usage_logs is filled with --rows rows, writers start inserting into it
at a steady rate (the application's load: one autocommit INSERT per request),
we measure --quiet-seconds of that load with no migration running, then run
`python -m sqlrunner apply` as a separate process and keep measuring until
it ends. Variants:

- careful: the shipped sql/ as it is (indexes on the existing tables built
  CONCURRENTLY in the no-transaction file, CHECKs added NOT VALID and
  validated there, busy tables locked last).
- naive ("before"): the same statements with every index built inside the one
  transaction of 0002 (CONCURRENTLY removed, VALIDATE inside the transaction).
  The naive file is generated here, for the benchmark only.

Printed per variant: apply duration, and insert latency (p50, p99, worst)
while the migration ran, next to the same load with no migration running.
Targets at 2M rows (issue 3): careful worst <= 250 ms, careful p99 <= 2x quiet p99.
The schema variants apply up to the last schema file (0003), not the backfill.

- backfill (issue 17): forward/0004, the batched backfill of provider and
  cost_usd, on the same 2M rows (with prices: some changing over time, some
  models unpriced) under the same load; against one plain UPDATE of the same
  statement over the whole id range on an idle copy; then a kill -9 loop on
  another copy (a counter variant of 0004: SET latency_ms = latency_ms + 1, not
  idempotent) proving every row changed exactly once. Targets: worst insert
  <= 250 ms, p99 during <= 2x quiet, backfill rows/s >= 50% of the UPDATE's;
  table growth and dead tuples (pgstattuple) of both printed side by side.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import psycopg.sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import start_server

REPO = Path(__file__).resolve().parents[1]
FILL = """
INSERT INTO llm_providers (name, provider_type)
SELECT p, p FROM unnest(ARRAY['ollama','openrouter','groq','together','cohere',
                              'openai','anthropic','google','custom']) AS p
ON CONFLICT DO NOTHING;
INSERT INTO llm_usage_logs (provider_id, user_id, model, prompt_tokens, completion_tokens,
                            created_at)
SELECT 1 + g % 9, g % 5000, 'model-' || (g % 40), g % 900, g % 700,
       now() - make_interval(secs => g)
FROM generate_series(1, %s) AS g;
"""
INSERT = (
    "INSERT INTO llm_usage_logs (provider_id, user_id, model, prompt_tokens, "
    "completion_tokens) VALUES (%s, %s, 'model-x', 12, 34)"
)
# The application since 0002: it writes the provider itself (the types in FILL's order).
INSERT_WITH_PROVIDER = (
    "INSERT INTO llm_usage_logs (provider_id, user_id, model, prompt_tokens, "
    "completion_tokens, provider) VALUES (%s, %s, 'model-x', 12, 34, (ARRAY['ollama',"
    "'openrouter','groq','together','cohere','openai','anthropic','google','custom'])[%s])"
)


@dataclass
class Window:
    """Latencies (ms) of the inserts that started inside a time window."""

    latencies: list[float]

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def over(self, ms: float) -> int:
        return sum(1 for lat in self.latencies if lat > ms)

    @property
    def worst(self) -> float:
        return max(self.latencies, default=float("nan"))


class Writers:
    """N threads, each inserting at a steady pace and recording (start, latency)."""

    def __init__(self, dsn: str, threads: int, interval: float, insert: str = INSERT) -> None:
        self.dsn, self.interval, self.insert = dsn, interval, insert
        self.samples: list[tuple[float, float]] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, index: int) -> None:
        with psycopg.connect(self.dsn, autocommit=True, application_name="busy-writer") as conn:
            n = 0
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    provider_id = 1 + n % 9
                    values = (provider_id, n % 5000, provider_id)
                    conn.execute(self.insert, values[: self.insert.count("%s")])
                except psycopg.Error as exc:
                    self.errors.append(str(exc).splitlines()[0])
                elapsed = time.perf_counter() - started
                self.samples.append((started, elapsed * 1000))
                n += 1
                time.sleep(max(0.0, self.interval - elapsed))

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def window(self, start: float, end: float) -> Window:
        return Window([lat for t, lat in list(self.samples) if start <= t < end])


@dataclass
class UnderLoad:
    """One `sqlrunner apply` run under the writers' load, and the inserts around it."""

    result: subprocess.CompletedProcess[str]
    seconds: float  # the whole process
    quiet: Window  # --quiet-seconds of the load just before it, no migration running
    during: Window
    errors: list[str]  # the writers'


def apply_under_load(
    dsn: str, argv: list[str], args: argparse.Namespace, insert: str = INSERT
) -> UnderLoad:
    """``argv`` (a `sqlrunner apply`) run as a process while --writers insert into ``dsn``,
    after a warm-up and --quiet-seconds of the same load with nothing running."""
    with Writers(dsn, args.writers, args.interval, insert) as writers:
        time.sleep(1.0)  # warm up connections
        quiet_start = time.perf_counter()
        time.sleep(args.quiet_seconds)
        start = time.perf_counter()
        result = subprocess.run(argv, capture_output=True, text=True)
        end = time.perf_counter()
        time.sleep(0.2)
    return UnderLoad(
        result,
        end - start,
        writers.window(quiet_start, start),
        writers.window(start, end),
        writers.errors,
    )


def sqlrunner_argv(dsn: str, sql_dir: Path, *args: str) -> list[str]:
    """argv of ``python -m sqlrunner`` on ``dsn`` and ``sql_dir``."""
    return [sys.executable, "-m", "sqlrunner", "--dsn", dsn, "--sql-dir", str(sql_dir), *args]


def clone(admin: str, template: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")


def drop(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def at_baseline(server: object, name: str, sql_dir: Path) -> str:
    """A new database ``name`` (dropped first if it exists) with forward/0001 applied,
    no seed: its DSN."""
    admin = server.uri("postgres")  # type: ignore[attr-defined]
    drop(admin, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn: str = server.uri(name)  # type: ignore[attr-defined]
    subprocess.run(
        sqlrunner_argv(dsn, sql_dir, "-q", "apply", "--to", "1", "--no-seed"), check=True
    )
    return dsn


def naive_set(source: Path, target: Path) -> Path:
    """The shipped set with 0003's statements moved into 0002's transaction, non-concurrent."""
    from pglast import parser

    shutil.copytree(source, target)
    forward = target / "forward"
    no_tx = next(forward.glob("0003_*.sql"))
    text = no_tx.read_text()
    statements = [text[s] for s in parser.split(text, only_slices=True)]
    moved = [s.replace(" CONCURRENTLY", "") for s in statements]
    main = next(forward.glob("0002_*.sql"))
    body = main.read_text()
    commit_at = body.rstrip().rfind("COMMIT")
    main.write_text(body[:commit_at] + ";\n".join(moved) + ";\n" + body[commit_at:])
    no_tx.unlink()
    for rollback in (target / "rollback").glob("0003_*.sql"):
        rollback.unlink()
    for verify in (target / "verify").glob("0003_*.sql"):
        verify.rename(verify.with_name(verify.name.replace("0003_", "0002_")))
    return target


def is_batched(path: Path) -> bool:
    return path.read_text().startswith("-- sqlrunner: batched")


def schema_version(sql_dir: Path) -> int:
    """The newest forward version that is not a backfill."""
    return max(int(p.name[:4]) for p in (sql_dir / "forward").glob("*.sql") if not is_batched(p))


def run_variant(server: object, name: str, sql_dir: Path, args: argparse.Namespace) -> dict:
    db = f"busy_{name}"
    dsn = at_baseline(server, db, sql_dir)
    filled = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(FILL.replace("%s", str(args.rows)))
        conn.execute("VACUUM ANALYZE llm_usage_logs")
        size = conn.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('llm_usage_logs'))"
        ).fetchone()[0]
    print(
        f"  {name}: filled {args.rows:,} rows ({size}) in {time.perf_counter() - filled:.1f}s",
        file=sys.stderr,
    )
    to = str(schema_version(sql_dir))  # the schema change, not the backfill (own variant)
    run = apply_under_load(
        dsn, sqlrunner_argv(dsn, sql_dir, "-q", "apply", "--no-verify", "--to", to), args
    )
    if run.result.returncode != 0:
        raise SystemExit(
            f"{name}: apply failed ({run.result.returncode}): {run.result.stderr[-2000:]}"
        )
    drop(server.uri("postgres"), db)  # type: ignore[attr-defined]
    return {
        "variant": name,
        "apply_s": run.seconds,
        "quiet": run.quiet,
        "during": run.during,
        "errors": run.errors,
    }


def table(results: list[dict], args: argparse.Namespace, version: str) -> str:
    lines = [
        f"llm_usage_logs: {args.rows:,} rows; load: {args.writers} writers x "
        f"{1 / args.interval:.0f} inserts/s; {version}",
        "",
        "| variant | apply (s) | inserts during | p50 ms | p99 ms | worst ms "
        "| quiet p99 ms | quiet worst ms | p99 / quiet p99 | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        d, q = r["during"], r["quiet"]
        lines.append(
            f"| {r['variant']} | {r['apply_s']:.2f} | {len(d.latencies)} | {d.pct(0.5):.1f} "
            f"| {d.pct(0.99):.1f} | {d.worst:.1f} | {q.pct(0.99):.1f} | {q.worst:.1f} "
            f"| {d.pct(0.99) / q.pct(0.99):.2f} | {len(r['errors'])} |"
        )
    careful = next(r for r in results if r["variant"] == "careful")
    worst_ok = careful["during"].worst <= 250
    p99_ok = careful["during"].pct(0.99) <= 2 * careful["quiet"].pct(0.99)
    lines += [
        "",
        f"- careful worst insert <= 250 ms: {'PASS' if worst_ok else 'FAIL'} "
        f"({careful['during'].worst:.1f} ms)",
        f"- careful p99 <= 2x quiet p99: {'PASS' if p99_ok else 'FAIL'} "
        f"({careful['during'].pct(0.99):.1f} vs {careful['quiet'].pct(0.99):.1f} ms)",
    ]
    return "\n".join(lines)


def write_results(
    text: str, args: argparse.Namespace, title: str = "Busy table", variants: str = ""
) -> None:
    path = Path(__file__).with_name("RESULTS.md")
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    start = old.find(f"## {title}\n")
    end = old.find("\n## ", start + 1) if start >= 0 else -1
    rows = f" --rows {args.rows}" if args.rows != 2_000_000 else ""
    command = f"python bench/busy_table.py{rows}{variants}"
    section = (
        f"## {title}\n\nCommand: `{command}` (run on "
        f"{time.strftime('%Y-%m-%d')}, 2 cores)\n\n{text}\n"
    )
    if start < 0:
        new = old.rstrip() + "\n\n" + section
    else:
        new = old[:start] + section + (old[end + 1 :] if end >= 0 else "")
    path.write_text(new)


# ------------------------------------------------------------------ backfill (0004)
PRICES = """
INSERT INTO model_pricing (provider, model, input_price_per_token, output_price_per_token,
                           effective_from, effective_to)
SELECT p, 'model-' || m, (1 + m) * 0.0000001, (1 + m) * 0.0000004, now() - interval '30 days',
       CASE WHEN m % 3 = 0 THEN now() - interval '10 days' END
FROM unnest(ARRAY['ollama','openrouter','groq','together','cohere','openai','anthropic',
                  'google']) AS p, generate_series(0, 29) AS m;
INSERT INTO model_pricing (provider, model, input_price_per_token, output_price_per_token,
                           effective_from)
SELECT p, 'model-' || m, (1 + m) * 0.00000005, (1 + m) * 0.0000002, now() - interval '10 days'
FROM unnest(ARRAY['ollama','openrouter','groq','together','cohere','openai','anthropic',
                  'google']) AS p, generate_series(0, 29, 3) AS m;
ANALYZE model_pricing;
"""
# Not idempotent on purpose: a batch applied twice leaves 2 in its rows.
COUNTER = (
    "UPDATE public.llm_usage_logs AS u SET latency_ms = coalesce(u.latency_ms, 0) + 1\n"
    "WHERE u.id >= :lo AND u.id < :hi;\n"
)
SIZES = """
SELECT pg_relation_size('llm_usage_logs'), pg_total_relation_size('llm_usage_logs'),
       s.dead_tuple_count, s.tuple_count
FROM pgstattuple('llm_usage_logs') AS s
"""


@dataclass
class Sizes:
    heap: int
    total: int
    dead: int
    live: int


def sizes(dsn: str) -> Sizes:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        return Sizes(*conn.execute(SIZES).fetchone())  # type: ignore[misc]


def backfill_file(sql_dir: Path) -> Path:
    return next(p for p in sorted((sql_dir / "forward").glob("*.sql")) if is_batched(p))


def counter_set(source: Path, target: Path) -> Path:
    """The shipped set with the backfill's statement replaced by a counter (same header)."""
    shutil.copytree(source, target)
    batched = backfill_file(target)
    batched.write_text(batched.read_text().split("\n", 1)[0] + "\n" + COUNTER)
    for verify in (target / "verify").glob(batched.name):
        verify.unlink()
    return target


def prepare_template(server: object, sql_dir: Path, args: argparse.Namespace) -> str:
    """llm_usage_logs with --rows rows and prices, at the last schema version: the
    database every backfill measurement starts from (cloned, never changed)."""
    name = "busy_backfill_template"
    dsn = at_baseline(server, name, sql_dir)
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(FILL.replace("%s", str(args.rows)))
    to = str(schema_version(sql_dir))
    subprocess.run(sqlrunner_argv(dsn, sql_dir, "-q", "apply", "--to", to), check=True)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(PRICES)
        conn.execute("VACUUM ANALYZE llm_usage_logs")
    print(
        f"  backfill: template of {args.rows:,} rows in {time.perf_counter() - started:.0f}s",
        file=sys.stderr,
    )
    return name


def backfill_under_load(server: object, template: str, args: argparse.Namespace) -> dict:
    """sqlrunner apply (the backfill) as a process, with the writers' load running."""
    admin, name = server.uri("postgres"), "busy_backfill"  # type: ignore[attr-defined]
    clone(admin, template, name)
    dsn = server.uri(name)  # type: ignore[attr-defined]
    before = sizes(dsn)
    argv = sqlrunner_argv(dsn, REPO / "sql", "-q", "apply")
    run = apply_under_load(dsn, argv, args, INSERT_WITH_PROVIDER)
    if run.result.returncode != 0:
        raise SystemExit(
            f"backfill: apply failed ({run.result.returncode}): {run.result.stderr[-2000:]}"
        )
    with psycopg.connect(dsn, autocommit=True) as conn:
        batches, rows, seconds = conn.execute(
            "SELECT batches, rows, extract(epoch FROM done_at - started_at)::float8"
            " FROM sqlrunner_ledger_backfill"
        ).fetchone()
    after = sizes(dsn)
    drop(admin, name)
    return {
        "seconds": seconds,  # first batch to the ledger row, from the progress row
        "apply_seconds": run.seconds,  # the whole process, verify included
        "rows": rows,
        "batches": batches,
        "quiet": run.quiet,
        "during": run.during,
        "errors": run.errors,
        "before": before,
        "after": after,
    }


def single_update(server: object, template: str) -> dict:
    """The same statement over the whole id range in one transaction, on an idle copy."""
    admin, name = server.uri("postgres"), "busy_single_update"  # type: ignore[attr-defined]
    clone(admin, template, name)
    dsn = server.uri(name)  # type: ignore[attr-defined]
    text = backfill_file(REPO / "sql").read_text()
    with psycopg.connect(dsn, autocommit=True) as conn:
        lo, hi = conn.execute("SELECT min(id), max(id) + 1 FROM llm_usage_logs").fetchone()
        statement = re.sub(r":(lo|hi)\b", lambda m: str(lo if m[1] == "lo" else hi), text)
        start = time.perf_counter()
        rows = conn.execute(statement).rowcount
        seconds = time.perf_counter() - start
    after = sizes(dsn)
    drop(admin, name)
    return {"seconds": seconds, "rows": rows, "after": after}


def kill_loop(server: object, template: str, sql_dir: Path, args: argparse.Namespace) -> dict:
    """kill -9 of `sqlrunner apply` at random moments, then a run to completion: every
    row of the key range must have been changed exactly once (latency_ms = 1)."""
    admin, name = server.uri("postgres"), "busy_kill_loop"  # type: ignore[attr-defined]
    clone(admin, template, name)
    dsn = server.uri(name)  # type: ignore[attr-defined]
    argv = sqlrunner_argv(dsn, sql_dir, "-q", "apply", "--no-verify")
    rng = random.Random(args.seed)
    kills = finished_early = 0
    started = time.perf_counter()
    while kills < args.kills:
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            child.wait(timeout=rng.uniform(0.5, 3.0))
        except subprocess.TimeoutExpired:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            kills += 1
            continue
        finished_early += 1  # it completed before its kill: nothing left to interrupt
        break
    final = subprocess.run(argv, capture_output=True, text=True)
    if final.returncode != 0:
        raise SystemExit(f"kill loop: final apply failed: {final.stderr[-2000:]}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        lo, hi, batches = conn.execute(
            "SELECT lo_key, hi_key, batches FROM sqlrunner_ledger_backfill"
        ).fetchone()
        counts = dict(
            conn.execute(
                "SELECT coalesce(latency_ms, -1), count(*) FROM llm_usage_logs"
                " WHERE id BETWEEN %s AND %s GROUP BY 1",
                (lo, hi),
            ).fetchall()
        )
    drop(admin, name)
    return {
        "kills": kills,
        "finished_early": finished_early,
        "seconds": time.perf_counter() - started,
        "batches": batches,
        "counts": counts,
        "exactly_once": set(counts) == {1},
    }


def mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"


def backfill_table(
    bf: dict, single: dict, loop: dict, args: argparse.Namespace, version: str
) -> str:
    d, q = bf["during"], bf["quiet"]
    rate, single_rate = bf["rows"] / bf["seconds"], single["rows"] / single["seconds"]
    b0, b1, s1 = bf["before"], bf["after"], single["after"]
    worst_ok = d.worst <= 250
    p99_ok = d.pct(0.99) <= 2 * q.pct(0.99)
    rate_ok = rate >= 0.5 * single_rate
    per_million = 1e6 / rate
    verdict = lambda ok: "PASS" if ok else "FAIL"  # noqa: E731
    lines = [
        f"forward/0004 on llm_usage_logs: {args.rows:,} rows; load: {args.writers} writers x "
        f"{1 / args.interval:.0f} inserts/s during the backfill; {version}; load average "
        f"{os.getloadavg()[0]:.1f} at the end (2 cores, shared)"
        + (f"; server settings: {', '.join(args.set)}" if args.set else ""),
        "",
        "| run | seconds | rows changed | rows/s | batches | heap after | table+indexes after "
        "| dead tuples after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| before (the template) | | | | | {mb(b0.heap)} | {mb(b0.total)} | {b0.dead:,} |",
        f"| sqlrunner apply (batched, under load; {bf['apply_seconds']:.1f} s with start-up "
        f"and verify) | {bf['seconds']:.1f} | {bf['rows']:,} "
        f"| {rate:,.0f} | {bf['batches']} | {mb(b1.heap)} | {mb(b1.total)} | {b1.dead:,} |",
        f"| one plain UPDATE (idle copy) | {single['seconds']:.1f} | {single['rows']:,} "
        f"| {single_rate:,.0f} | 1 | {mb(s1.heap)} | {mb(s1.total)} | {s1.dead:,} |",
        "",
        "| inserts | n | p50 ms | p99 ms | p99.9 ms | worst ms | over 250 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| quiet (no migration) | {len(q.latencies)} | {q.pct(0.5):.1f} | {q.pct(0.99):.1f} "
        f"| {q.pct(0.999):.1f} | {q.worst:.1f} | {q.over(250)} | |",
        f"| during the backfill | {len(d.latencies)} | {d.pct(0.5):.1f} | {d.pct(0.99):.1f} "
        f"| {d.pct(0.999):.1f} | {d.worst:.1f} | {d.over(250)} | {len(bf['errors'])} |",
        "",
        f"- worst insert during <= 250 ms: {verdict(worst_ok)} ({d.worst:.1f} ms)",
        f"- p99 during <= 2x quiet p99: {verdict(p99_ok)} "
        f"({d.pct(0.99):.1f} vs {q.pct(0.99):.1f} ms)",
        f"- backfill rows/s >= 50% of one UPDATE's: {verdict(rate_ok)} "
        f"({rate:,.0f} vs {single_rate:,.0f}: {rate / single_rate:.0%})",
        f"- time per million rows, batched under load: {per_million:.0f} s",
        f"- growth: heap +{mb(b1.heap - b0.heap)} batched vs +{mb(s1.heap - b0.heap)} one "
        f"UPDATE; dead tuples {b1.dead:,} vs {s1.dead:,}",
        f"- kill -9 loop: {loop['kills']} kills at random moments (0.5-3 s into each run), "
        f"then a run to completion ({loop['batches']} batches, {loop['seconds']:.0f} s in all): "
        f"rows by times changed {loop['counts']}: "
        f"{'PASS, every row exactly once' if loop['exactly_once'] else 'FAIL'}"
        + (" (a run finished before its kill)" if loop["finished_early"] else ""),
    ]
    return "\n".join(lines)


def run_backfill(server: object, work: Path, args: argparse.Namespace) -> str:
    template = prepare_template(server, REPO / "sql", args)
    admin = server.uri("postgres")  # type: ignore[attr-defined]
    try:
        bf = backfill_under_load(server, template, args)
        print(f"  backfill: {bf['seconds']:.0f}s", file=sys.stderr)
        single = single_update(server, template)
        print(f"  single UPDATE: {single['seconds']:.0f}s", file=sys.stderr)
        loop = kill_loop(server, template, counter_set(REPO / "sql", work / "counter"), args)
    finally:
        drop(admin, template)
    return backfill_table(bf, single, loop, args, server.version())  # type: ignore[attr-defined]


def configure(admin: str, settings: list[str]) -> None:
    """``NAME=VALUE`` settings for the whole server, in effect before anything is measured."""
    pairs = [setting.partition("=")[::2] for setting in settings]
    with psycopg.connect(admin, autocommit=True) as conn:
        for name, value in pairs:
            conn.execute(
                psycopg.sql.SQL("ALTER SYSTEM SET {} = {}").format(
                    psycopg.sql.Identifier(name), psycopg.sql.Literal(value)
                )
            )
        conn.execute("SELECT pg_reload_conf()")
    time.sleep(0.5)  # the reload is a signal: a backend started after it reads the new values
    with psycopg.connect(admin, autocommit=True) as conn:
        for name, _ in pairs:
            shown = conn.execute(psycopg.sql.SQL("SHOW {}").format(psycopg.sql.Identifier(name)))
            print(f"  server: {name} = {shown.fetchone()[0]}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.005, help="seconds between inserts")
    parser.add_argument("--quiet-seconds", type=float, default=5.0)
    parser.add_argument("--pg", default="embedded", help="embedded or 15")
    parser.add_argument("--variants", default="careful,naive,backfill")
    parser.add_argument("--kills", type=int, default=20, help="kill -9 of the backfill")
    parser.add_argument("--seed", type=int, default=17, help="random moments of the kills")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a server setting (ALTER SYSTEM, then reload): measure a remedy, e.g. "
        "--set wal_compression=pglz --set max_wal_size=4GB",
    )
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    variants = args.variants.split(",")
    schema = [v for v in variants if v != "backfill"]
    server = start_server(args.pg)
    work = Path(tempfile.mkdtemp(prefix="busy-table-"))
    text = backfill_text = ""
    try:
        configure(server.uri("postgres"), args.set)
        sets = {"careful": REPO / "sql", "naive": naive_set(REPO / "sql", work / "naive")}
        if schema:
            results = [run_variant(server, v, sets[v], args) for v in schema]
            text = table(results, args, server.version())
        if "backfill" in variants:
            backfill_text = run_backfill(server, work, args)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("\n\n".join(t for t in (text, backfill_text) if t))
    if args.write_results and text:
        write_results(text, args, variants=f" --variants {','.join(schema)}")
    if args.write_results and backfill_text:
        write_results(backfill_text, args, "Busy table: backfill (0004)", " --variants backfill")


if __name__ == "__main__":
    main()
