"""forward/0004 (the provider and cost backfill of llm_usage_logs), run the DBA's way:
one ``psql -v lo=.. -v hi=..`` per batch over the whole id range, no sqlrunner involved.

The fixture is what production holds: several provider accounts (two of one type),
price changes over time (a price cut, a promotion over an open-ended price, a price
that ended), rows from before any price, a free local model, a price in EUR, a
provider with no price at all, and rows the application filled since 0002. The
expected values are computed here in Python from the same facts, not by SQL.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pglast import parse_sql, split

import sqlrunner

from .conftest import SQL_DIR, execute, run_psql

BACKFILL = SQL_DIR / "forward" / "0004_usage_provider_cost_backfill.sql"
BACKFILL_ROLLBACK = SQL_DIR / "rollback" / "0004_usage_provider_cost_backfill.sql"
BACKFILL_VERIFY = SQL_DIR / "verify" / "0004_usage_provider_cost_backfill.sql"
UTC = timezone.utc
START = datetime(2024, 1, 1, tzinfo=UTC)

# (name, provider_type); ids 1.. in this order
ACCOUNTS = [
    ("openai-main", "openai"),
    ("openai-eu", "openai"),
    ("anthropic", "anthropic"),
    ("groq", "groq"),
    ("local", "ollama"),
    ("router", "openrouter"),
    ("byo", "custom"),
]
# account id -> the models its requests use
MODELS = {
    1: ["gpt-4o", "gpt-4o-mini"],
    2: ["gpt-4o"],
    3: ["claude-3-5-sonnet", "claude-3-haiku"],
    4: ["llama-3.1-70b"],
    5: ["llama3.1:8b"],
    6: ["meta-llama/llama-3-70b", "openai/gpt-4o"],
    7: ["my-model"],
}


@dataclass(frozen=True)
class Price:
    provider: str
    model: str
    input: Decimal
    output: Decimal
    since: datetime
    until: datetime | None = None
    currency: str = "USD"


def price(
    provider: str,
    model: str,
    per_token: tuple[str, str],
    since: str,
    until: str | None = None,
    currency: str = "USD",
) -> Price:
    """A model_pricing row as a price list states it: (input, output) per token as decimal
    text, the day it takes effect and the day it ends (if it does), at midnight UTC."""

    def day(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    return Price(
        provider,
        model,
        Decimal(per_token[0]),
        Decimal(per_token[1]),
        day(since),
        day(until) if until else None,
        currency,
    )


PRICES = [
    # a price cut: the old price ends where the new one starts
    price("openai", "gpt-4o", ("0.000005", "0.000015"), "2024-05-13", "2024-10-01"),
    price("openai", "gpt-4o", ("0.0000025", "0.00001"), "2024-10-01"),
    price("openai", "gpt-4o-mini", ("0.00000015", "0.0000006"), "2024-07-18"),
    # a promotion inside an open-ended price: after it, the open-ended one applies again
    price("anthropic", "claude-3-5-sonnet", ("0.000003", "0.000015"), "2024-06-20"),
    price("anthropic", "claude-3-5-sonnet", ("0.0000015", "0.0000075"), "2024-11-01", "2024-12-01"),
    # a price that ended with nothing after it: later rows stay unpriced
    price("anthropic", "claude-3-haiku", ("0.00000025", "0.00000125"), "2024-03-13", "2025-01-01"),
    price("groq", "llama-3.1-70b", ("0.00000059", "0.00000079"), "2024-07-23"),
    # a local model: free, so a cost of 0, not NULL
    price("ollama", "llama3.1:8b", ("0", "0"), "2024-01-01"),
    # not in USD: no cost_usd from it
    price(
        "openrouter",
        "meta-llama/llama-3-70b",
        ("0.0000005", "0.0000007"),
        "2024-02-01",
        currency="EUR",
    ),
    price("openrouter", "openai/gpt-4o", ("0.000005", "0.000015"), "2024-06-01"),
]
ROWS = 2400
BATCH = 250


@dataclass
class Usage:
    id: int
    provider_id: int
    model: str
    prompt_tokens: int
    completion_tokens: int
    created_at: datetime
    provider: str | None = None
    cost_usd: Decimal | None = None


def _usage() -> list[Usage]:
    """ROWS requests over 2024-01-01 .. 2025-06 (some exactly on a price boundary);
    every 13th filled by the application (provider and cost), every 17th with only its
    provider, every 19th with only a cost."""
    rows = []
    boundaries = [p.since for p in PRICES] + [p.until for p in PRICES if p.until]
    for n in range(1, ROWS + 1):
        account = 1 + n % len(ACCOUNTS)
        models = MODELS[account]
        created = START + timedelta(minutes=317 * n)
        if n % 97 == 0:
            created = boundaries[n // 97 % len(boundaries)]
        row = Usage(n, account, models[n % len(models)], 10 + n % 900, n % 700, created)
        if n % 13 == 0:
            row.provider, row.cost_usd = ACCOUNTS[account - 1][1], Decimal("0.5")
        elif n % 17 == 0:
            row.provider = ACCOUNTS[account - 1][1]
        elif n % 19 == 0:
            row.cost_usd = Decimal("1.25")
        rows.append(row)
    return rows


def _expected(row: Usage) -> tuple[str, Decimal | None]:
    """What 0004 must leave in (provider, cost_usd), from the facts above."""
    provider = row.provider or ACCOUNTS[row.provider_id - 1][1]
    if row.cost_usd is not None:
        return provider, row.cost_usd
    in_effect = [
        p
        for p in PRICES
        if (p.provider, p.model) == (provider, row.model)
        and p.since <= row.created_at
        and (p.until is None or row.created_at < p.until)
    ]
    if not in_effect:
        return provider, None
    price = max(in_effect, key=lambda p: p.since)
    if price.currency != "USD":
        return provider, None
    cost = row.prompt_tokens * price.input + row.completion_tokens * price.output
    return provider, cost.quantize(Decimal("0.00000001"), rounding=ROUND_HALF_UP)


def _fill(dsn: str, usage: list[Usage]) -> None:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO llm_providers (name, provider_type) VALUES (%s, %s)", ACCOUNTS)
        cur.executemany(
            "INSERT INTO model_pricing (provider, model, input_price_per_token,"
            " output_price_per_token, effective_from, effective_to, currency)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (p.provider, p.model, p.input, p.output, p.since, p.until, p.currency)
                for p in PRICES
            ],
        )
        with cur.copy(
            "COPY llm_usage_logs (provider_id, model, prompt_tokens, completion_tokens,"
            " created_at, provider, cost_usd) FROM STDIN"
        ) as copy:
            for r in usage:
                copy.write_row(
                    (
                        r.provider_id,
                        r.model,
                        r.prompt_tokens,
                        r.completion_tokens,
                        r.created_at,
                        r.provider,
                        r.cost_usd,
                    )
                )
        ids = cur.execute("SELECT min(id), max(id) FROM llm_usage_logs").fetchone()
        assert ids == (1, ROWS)  # identity from 1: Usage.id is the row's id


def _batch(psql: list[str], dsn: str, lo: int, hi: int) -> subprocess.CompletedProcess[str]:
    """One batch, exactly as the file's header comment tells a DBA to run it."""
    result = subprocess.run(
        [
            *psql,
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            f"lo={lo}",
            "-v",
            f"hi={hi}",
            "-d",
            dsn,
            "-f",
            str(BACKFILL),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result


def _by_hand(psql: list[str], dsn: str) -> list[int]:
    """Every batch over [min(id), max(id)]; the rows each one updated (psql's UPDATE n)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        lo, hi = conn.execute("SELECT min(id), max(id) + 1 FROM llm_usage_logs").fetchone()
    counts = []
    for start in range(lo, hi, BATCH):
        out = _batch(psql, dsn, start, min(start + BATCH, hi)).stdout.split()
        counts.append(int(out[out.index("UPDATE") + 1]))
    return counts


def _table(dsn: str) -> dict[int, tuple[str | None, Decimal | None, str]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id, provider, cost_usd, xmin::text FROM llm_usage_logs ORDER BY id"
        ).fetchall()
    return {i: (p, c, x) for i, p, c, x in rows}


def _checks(dsn: str) -> dict[str, tuple[bool, str]]:
    """Each check of verify/0004, run as its own query: check -> (ok, detail)."""
    found: dict[str, tuple[bool, str]] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in split(BACKFILL_VERIFY.read_text(encoding="utf-8")):
            for check, ok, detail in conn.execute(statement).fetchall():
                found[check] = (ok, detail)
    return found


@pytest.fixture
def usage_dsn(forward_dsn: str) -> tuple[str, list[Usage]]:
    usage = _usage()
    _fill(forward_dsn, usage)
    return forward_dsn, usage


def test_hand_run_fills_provider_and_the_cost_in_effect(
    usage_dsn: tuple[str, list[Usage]], psql: list[str]
) -> None:
    dsn, usage = usage_dsn
    before = _table(dsn)
    counts = _by_hand(psql, dsn)

    after = _table(dsn)
    expected = {r.id: _expected(r) for r in usage}
    assert {i: (p, c) for i, (p, c, _) in after.items()} == expected
    # the fixture covers each case at least a few times
    costs = [c for _, c in expected.values()]
    assert costs.count(None) > 100 and costs.count(Decimal(0)) > 100
    assert len({p for p, _ in expected.values()}) == 6  # every provider type with rows
    # a row got a new version only when a value changed: neither the rows the
    # application had filled nor those that stay unpriced were rewritten
    changed = {i for i, (p, c, _) in before.items() if (p, c) != expected[i]}
    kept = set(before) - changed
    assert len(kept) > 200 and all(after[i][2] == before[i][2] for i in kept)
    assert all(after[i][2] != before[i][2] for i in changed)
    assert sum(counts) == len(changed) and 0 not in counts


def test_a_batch_touches_only_its_range_and_a_rerun_changes_nothing(
    usage_dsn: tuple[str, list[Usage]], psql: list[str]
) -> None:
    dsn, _ = usage_dsn
    _batch(psql, dsn, 101, 201)
    once = _table(dsn)
    assert all(once[i][0] is not None for i in range(101, 201))
    assert all(
        once[i][0] is None for i in (*range(1, 101), *range(201, ROWS + 1)) if i % 13 and i % 17
    )
    rerun = _batch(psql, dsn, 101, 201)
    assert "UPDATE 0" in rerun.stdout
    assert _table(dsn) == once


def test_verify_passes_after_the_backfill_and_names_what_is_missing(
    usage_dsn: tuple[str, list[Usage]], psql: list[str]
) -> None:
    dsn, usage = usage_dsn
    not_yet = _checks(dsn)
    assert not_yet["llm_usage_logs: every row has its provider"][0] is False
    _by_hand(psql, dsn)
    checks = _checks(dsn)
    assert list(checks) == [
        "llm_usage_logs: every row has its provider",
        "llm_usage_logs: cost_usd is NULL only where no USD price was in effect",
    ]
    assert all(ok for ok, _ in checks.values()), checks

    # a priced row whose cost got lost, and a row without provider
    priced = next(r.id for r in usage if r.cost_usd is None and (_expected(r)[1] or 0) > 0)
    execute(
        dsn,
        f"UPDATE llm_usage_logs SET cost_usd = NULL WHERE id = {priced}",
        "UPDATE llm_usage_logs SET provider = NULL WHERE id = 40",
    )
    damaged = _checks(dsn)
    assert damaged["llm_usage_logs: every row has its provider"] == (
        False,
        "1 row(s) lack provider, ids 40..40: fill them with one batch by hand, psql -v lo=40"
        " -v hi=41 -f sql/forward/0004_usage_provider_cost_backfill.sql",
    )
    assert damaged["llm_usage_logs: cost_usd is NULL only where no USD price was in effect"] == (
        False,
        f"1 row(s) without cost_usd had a USD price in effect, ids {priced}..{priced}",
    )


def test_rollback_keeps_the_derived_values(
    usage_dsn: tuple[str, list[Usage]], psql: list[str]
) -> None:
    dsn, _ = usage_dsn
    _by_hand(psql, dsn)
    filled = _table(dsn)
    run_psql(psql, dsn, BACKFILL_ROLLBACK)
    assert _table(dsn) == filled


def test_one_batch_reads_its_range_by_primary_key_and_probes_one_price(
    usage_dsn: tuple[str, list[Usage]],
) -> None:
    """The plan behind "no new index", on 20,000 more rows and 400 more prices: both
    sides of the batch read their id range through the primary key (never the whole
    table), and each row probes model_pricing's unique (provider, model,
    effective_from) index once, newest first."""
    dsn, _ = usage_dsn
    execute(
        dsn,
        "INSERT INTO llm_usage_logs (provider_id, model, prompt_tokens, completion_tokens,"
        " created_at) SELECT 1 + g % 7, 'gpt-4o', g % 900, g % 700,"
        " timestamptz '2024-01-01' + g * interval '20 minutes' FROM generate_series(1, 20000) g",
        "INSERT INTO model_pricing (provider, model, input_price_per_token,"
        " output_price_per_token, effective_from) SELECT 'together', 'model-' || g / 4,"
        " 0.000001, 0.000002, timestamptz '2024-01-01' + g % 4 * interval '60 days'"
        " FROM generate_series(0, 399) g",
        "ANALYZE llm_usage_logs",
        "ANALYZE model_pricing",
    )
    text = BACKFILL.read_text(encoding="utf-8")
    (statement,) = split(text.replace(":lo", "10001").replace(":hi", "11001"))
    with psycopg.connect(dsn) as conn:
        plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN (COSTS OFF) {statement}"))
    assert "Seq Scan on llm_usage_logs" not in plan, plan
    assert plan.count("((id >= 10001) AND (id < 11001))") == 2, plan
    assert "Index Scan Backward using model_pricing_provider_model_effective_from_key" in plan


def _statements(text: str) -> list[str]:
    return [type(raw.stmt).__name__ for raw in parse_sql(text)]


def test_backfill_file_is_one_bounded_update_as_the_batched_kind_wants() -> None:
    text = BACKFILL.read_text(encoding="utf-8")
    header = text.split("\n", 1)[0].split()
    assert header[:3] == ["--", "sqlrunner:", "batched"]
    options = dict(option.split("=", 1) for option in header[3:])
    assert options["table"] == "public.llm_usage_logs" and options["key"] == "id"
    assert set(options["derived"].split(",")) == {"provider", "cost_usd"}
    code = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
    assert code.count(":lo") == 2 and code.count(":hi") == 2  # both sides bounded
    bounded = re.sub(r":(lo|hi)\b", "1", text)
    assert _statements(bounded) == ["UpdateStmt"]  # no BEGIN/COMMIT, no second statement


def test_rollback_is_an_empty_transaction_and_verify_only_reads() -> None:
    assert _statements(BACKFILL_ROLLBACK.read_text(encoding="utf-8")) == [
        "TransactionStmt",
        "TransactionStmt",
    ]
    assert set(_statements(BACKFILL_VERIFY.read_text(encoding="utf-8"))) == {"SelectStmt"}


@pytest.fixture
def other_dsn(pg_server: Any, template_db: str) -> Iterator[str]:
    """A second fresh database in the same test."""
    name = f"t_{os.getpid()}_backfill_{uuid.uuid4().hex[:8]}"
    with pg_server.janitor(name, template_dbname=template_db):
        yield pg_server.dsn(name)


@pytest.mark.parametrize("size", [None, 250], ids=["shipped", "size-250"])
def test_sqlrunner_apply_gives_the_values_of_the_hand_run(
    usage_dsn: tuple[str, list[Usage]],
    other_dsn: str,
    psql: list[str],
    tmp_path: Path,
    size: int | None,
) -> None:
    """End to end: the whole set by sqlrunner (0004 as the engine runs it, in batches)
    on one database, the DBA's psql batches on the other; the same values."""
    by_hand, usage = usage_dsn
    _by_hand(psql, by_hand)
    sql_dir = SQL_DIR
    if size is not None:  # many batches: the same file with a smaller first batch
        sql_dir = tmp_path / "sql"
        shutil.copytree(SQL_DIR, sql_dir)
        copy = sql_dir / "forward" / BACKFILL.name
        copy.write_text(re.sub(r"size=\d+", f"size={size}", copy.read_text(encoding="utf-8")))
    sqlrunner.apply(other_dsn, sql_dir, to=3)
    _fill(other_dsn, usage)
    report = sqlrunner.apply(other_dsn, sql_dir)
    assert [r.version for r in report.applied] == [4]
    assert report.verification is not None and report.verification.ok
    with psycopg.connect(other_dsn, autocommit=True) as conn:
        batches = conn.execute("SELECT batches FROM sqlrunner_ledger_backfill").fetchone()
    assert batches is not None and (batches[0] > 5 if size else batches[0] >= 1)
    values = {i: (p, c) for i, (p, c, _) in _table(other_dsn).items()}
    assert values == {i: (p, c) for i, (p, c, _) in _table(by_hand).items()}
    assert values == {r.id: _expected(r) for r in usage}
