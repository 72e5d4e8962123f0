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
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

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


@dataclass
class Window:
    """Latencies (ms) of the inserts that started inside a time window."""

    latencies: list[float]

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def worst(self) -> float:
        return max(self.latencies, default=float("nan"))


class Writers:
    """N threads, each inserting at a steady pace and recording (start, latency)."""

    def __init__(self, dsn: str, threads: int, interval: float) -> None:
        self.dsn, self.interval = dsn, interval
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
                    conn.execute(INSERT, (1 + n % 9, n % 5000))
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


def run_variant(server: object, name: str, sql_dir: Path, args: argparse.Namespace) -> dict:
    db = f"busy_{name}"
    admin = server.uri("postgres")  # type: ignore[attr-defined]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {db}")
        conn.execute(f"CREATE DATABASE {db}")
    dsn = server.uri(db)  # type: ignore[attr-defined]
    cli = [sys.executable, "-m", "sqlrunner", "--dsn", dsn, "--sql-dir", str(sql_dir), "-q"]
    subprocess.run([*cli, "apply", "--to", "1", "--no-seed"], check=True)
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
    with Writers(dsn, args.writers, args.interval) as writers:
        time.sleep(1.0)  # warm up connections
        quiet_start = time.perf_counter()
        time.sleep(args.quiet_seconds)
        apply_start = time.perf_counter()
        result = subprocess.run([*cli, "apply", "--no-verify"], capture_output=True, text=True)
        apply_end = time.perf_counter()
        time.sleep(0.2)
    if result.returncode != 0:
        raise SystemExit(f"{name}: apply failed ({result.returncode}): {result.stderr[-2000:]}")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {db}")
    quiet = writers.window(quiet_start, apply_start)
    during = writers.window(apply_start, apply_end)
    return {
        "variant": name,
        "apply_s": apply_end - apply_start,
        "quiet": quiet,
        "during": during,
        "errors": writers.errors,
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


def write_results(text: str, args: argparse.Namespace) -> None:
    path = Path(__file__).with_name("RESULTS.md")
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    start = old.find("## Busy table")
    end = old.find("\n## ", start + 1) if start >= 0 else -1
    rows = f" --rows {args.rows}" if args.rows != 2_000_000 else ""
    command = f"python bench/busy_table.py{rows}"
    section = (
        f"## Busy table\n\nCommand: `{command}` (run on "
        f"{time.strftime('%Y-%m-%d')}, 2 cores)\n\n{text}\n"
    )
    if start < 0:
        new = old.rstrip() + "\n\n" + section
    else:
        new = old[:start] + section + (old[end + 1 :] if end >= 0 else "")
    path.write_text(new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.005, help="seconds between inserts")
    parser.add_argument("--quiet-seconds", type=float, default=5.0)
    parser.add_argument("--pg", default="embedded", help="embedded or 15")
    parser.add_argument("--variants", default="careful,naive")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    server = start_server(args.pg)
    work = Path(tempfile.mkdtemp(prefix="busy-table-"))
    try:
        sets = {"careful": REPO / "sql", "naive": naive_set(REPO / "sql", work / "naive")}
        results = [run_variant(server, v, sets[v], args) for v in args.variants.split(",")]
        text = table(results, args, server.version())
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(text)
    if args.write_results:
        write_results(text, args)


if __name__ == "__main__":
    main()
