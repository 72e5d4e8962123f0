"""Every file run twice in a row by plain psql: the second run succeeds and changes
nothing. The seed converges: a re-run touches no row, an edited rule reaches the table."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from .conftest import (
    BASELINE,
    FORWARD,
    FORWARD_INDEXES,
    ROLLBACK,
    ROLLBACK_INDEXES,
    SEED,
    insert_baseline_data,
    run_psql,
    snapshot,
    table_rows,
)

# Each file with the files that must run before it.
PREREQUISITES: dict[str, tuple[Path, ...]] = {
    "forward/0001": (),
    "forward/0002": (BASELINE,),
    "forward/0003": (BASELINE, FORWARD),
    "seed/0001": (BASELINE, FORWARD, FORWARD_INDEXES),
    "rollback/0003": (BASELINE, FORWARD, FORWARD_INDEXES, SEED),
    "rollback/0002": (BASELINE, FORWARD, FORWARD_INDEXES, SEED, ROLLBACK_INDEXES),
}
FILES = {
    "forward/0001": BASELINE,
    "forward/0002": FORWARD,
    "forward/0003": FORWARD_INDEXES,
    "seed/0001": SEED,
    "rollback/0003": ROLLBACK_INDEXES,
    "rollback/0002": ROLLBACK,
}


def _row_versions(dsn: str) -> list[tuple[int, str]]:
    """(id, xmin) of every rule: a row rewritten by an UPDATE gets a new xmin."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT id, xmin::text FROM tier_model_rules ORDER BY id")
        return [(int(i), str(x)) for i, x in rows.fetchall()]


@pytest.mark.parametrize("label", list(FILES))
def test_second_psql_run_succeeds_and_changes_nothing(
    dsn: str, psql: list[str], label: str
) -> None:
    for path in PREREQUISITES[label]:
        run_psql(psql, dsn, path)
        if path == BASELINE:
            insert_baseline_data(dsn)
    run_psql(psql, dsn, FILES[label])
    once, rows = snapshot(dsn), table_rows(dsn)
    run_psql(psql, dsn, FILES[label])
    assert snapshot(dsn) == once
    assert table_rows(dsn) == rows


def test_seed_rerun_changes_no_row(forward_dsn: str, psql: list[str]) -> None:
    before = _row_versions(forward_dsn)
    result = run_psql(psql, forward_dsn, SEED)
    assert _row_versions(forward_dsn) == before
    assert len(before) == 50
    assert result.stderr == ""


def test_rule_edited_in_the_database_is_restored_by_the_seed(
    forward_dsn: str, psql: list[str]
) -> None:
    with psycopg.connect(forward_dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE tier_model_rules SET effect = 'allow', api_call_limit = 5"
            " WHERE tier = 'starter' AND provider = 'openai' AND model_pattern = 'gpt-4%'"
        )
        assert conn.execute("SELECT llm_tier_allows('starter', 'openai', 'gpt-4o')").fetchone() == (
            True,
        )
    run_psql(psql, forward_dsn, SEED)
    with psycopg.connect(forward_dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT effect, api_call_limit FROM tier_model_rules"
            " WHERE tier = 'starter' AND provider = 'openai' AND model_pattern = 'gpt-4%'"
        ).fetchone()
        allowed = conn.execute("SELECT llm_tier_allows('starter', 'openai', 'gpt-4o')").fetchone()
    assert row == ("deny", 1000)
    assert allowed == (False,)


def test_rule_edited_in_the_file_reaches_the_database(
    forward_dsn: str, psql: list[str], tmp_path: Path
) -> None:
    """The file is the source of truth: edit one rule (Groq off for trial), re-run it."""
    original = SEED.read_text(encoding="utf-8")
    rule = "('trial', 'groq', '%', 'allow', 1.00, 'week', 100, 'day',"
    assert original.count(rule) == 1
    edited = tmp_path / SEED.name
    edited.write_text(original.replace(rule, rule.replace("'allow'", "'deny'")), "utf-8")
    before = dict(_row_versions(forward_dsn))

    run_psql(psql, forward_dsn, edited)
    after = dict(_row_versions(forward_dsn))
    with psycopg.connect(forward_dsn, autocommit=True) as conn:
        changed = conn.execute(
            "SELECT tier, provider, model_pattern, effect FROM tier_model_rules WHERE id = ANY(%s)",
            ([i for i in after if after[i] != before[i]],),
        ).fetchall()
        groq = conn.execute("SELECT llm_tier_allows('trial', 'groq', 'llama3-8b-8192')")
        assert groq.fetchone() == (False,)
    assert changed == [("trial", "groq", "%", "deny")]

    run_psql(psql, forward_dsn, SEED)  # back to the shipped file: converges again
    with psycopg.connect(forward_dsn, autocommit=True) as conn:
        groq = conn.execute("SELECT llm_tier_allows('trial', 'groq', 'llama3-8b-8192')")
        assert groq.fetchone() == (True,)
