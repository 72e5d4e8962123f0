"""The 48 new indexes: counted in the catalog, none redundant, each where it belongs and
each documented by the one-line comment above it."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

from .conftest import (
    ALL_NEW_INDEXES,
    BASELINE_TABLES,
    FORWARD,
    FORWARD_INDEXES,
    NEW_INDEXES,
    NEW_TABLES,
    VERIFY,
    run_psql,
)

INDEXES_OF_PUBLIC = """
    SELECT i.relname
    FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
    WHERE i.relnamespace = 'public'::regnamespace
"""

# Pairs of indexes on one table where the key columns of the first are the same as, or a
# left prefix of, the key columns of the second (predicates and methods aside: strict).
REDUNDANT_PAIRS = """
    SELECT a.indrelid::regclass::text, ai.relname, bi.relname
    FROM pg_index a
    JOIN pg_index b ON b.indrelid = a.indrelid AND b.indexrelid <> a.indexrelid
    JOIN pg_class ai ON ai.oid = a.indexrelid
    JOIN pg_class bi ON bi.oid = b.indexrelid
    WHERE ai.relnamespace = 'public'::regnamespace
      AND a.indnkeyatts <= b.indnkeyatts
      AND (a.indkey::int2[])[0:a.indnkeyatts - 1] = (b.indkey::int2[])[0:a.indnkeyatts - 1]
    ORDER BY 1, 2, 3
"""

# Foreign keys whose columns are not the leading columns of some index on their table.
UNINDEXED_FOREIGN_KEYS = """
    SELECT k.conrelid::regclass::text, k.conname
    FROM pg_constraint k
    WHERE k.contype = 'f' AND k.connamespace = 'public'::regnamespace
      AND NOT EXISTS (
          SELECT FROM pg_index x
          WHERE x.indrelid = k.conrelid
            AND (x.indkey::int2[])[0:cardinality(k.conkey) - 1]::int2[]
                @> k.conkey
            AND cardinality(k.conkey) <= x.indnkeyatts)
    ORDER BY 1, 2
"""

CREATE_INDEX = re.compile(
    r"^[ \t]*CREATE (?:UNIQUE )?INDEX (?P<concurrently>CONCURRENTLY )?IF NOT EXISTS "
    r"(?P<name>\w+)\s+ON public\.(?P<table>\w+)",
    re.MULTILINE,
)
INDEX_CONSTRAINT = re.compile(
    r"^[ \t]*CONSTRAINT (?P<name>\w+)\s+(?:PRIMARY KEY|UNIQUE)", re.MULTILINE
)
CONSTRAINT_NAME = re.compile(r"CONSTRAINT ([a-z]\w*)|\('(\w+_(?:check|fkey))',")


def _indexes(dsn: str) -> set[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {name for (name,) in conn.execute(INDEXES_OF_PUBLIC)}


def test_forward_adds_exactly_48_indexes(baseline_dsn: str, psql: list[str]) -> None:
    before = _indexes(baseline_dsn)
    run_psql(psql, baseline_dsn, FORWARD)
    run_psql(psql, baseline_dsn, FORWARD_INDEXES)
    added = _indexes(baseline_dsn) - before
    assert len(added) == 48
    assert added == set(ALL_NEW_INDEXES)
    assert before.isdisjoint(ALL_NEW_INDEXES)


def test_no_index_duplicates_or_prefixes_another(forward_dsn: str) -> None:
    with psycopg.connect(forward_dsn, autocommit=True) as conn:
        assert conn.execute(REDUNDANT_PAIRS).fetchall() == []


def test_redundancy_query_can_fail(forward_dsn: str) -> None:
    """The check above is real: a left-prefix index is reported."""
    with psycopg.connect(forward_dsn) as conn:
        conn.execute("CREATE INDEX scratch_prefix ON audit_log (actor_type)")
        rows = conn.execute(REDUNDANT_PAIRS).fetchall()
        conn.rollback()
    assert rows == [("audit_log", "scratch_prefix", "audit_log_actor_idx")]


def test_every_foreign_key_is_indexed(forward_dsn: str) -> None:
    with psycopg.connect(forward_dsn, autocommit=True) as conn:
        assert conn.execute(UNINDEXED_FOREIGN_KEYS).fetchall() == []
        # no foreign key points at the busy table (it would lock it from the new tables)
        referencing = conn.execute(
            "SELECT conname FROM pg_constraint WHERE confrelid = 'public.llm_usage_logs'::regclass"
        ).fetchall()
    assert referencing == []


def test_indexes_are_built_in_the_right_file_and_way() -> None:
    """New tables: plain CREATE INDEX in 0002 (same transaction). Existing tables:
    CREATE INDEX CONCURRENTLY in the no-transaction 0003."""
    in_0002 = list(CREATE_INDEX.finditer(FORWARD.read_text(encoding="utf-8")))
    in_0003 = list(CREATE_INDEX.finditer(FORWARD_INDEXES.read_text(encoding="utf-8")))
    assert {m["table"] for m in in_0002} <= set(NEW_TABLES)
    assert not any(m["concurrently"] for m in in_0002)
    assert {m["table"] for m in in_0003} == set(BASELINE_TABLES)
    assert all(m["concurrently"] for m in in_0003)
    for match in (*in_0002, *in_0003):
        assert match["name"] in NEW_INDEXES[match["table"]], match["name"]


def _documented(path: Path) -> dict[str, str]:
    """Index name -> the line right above its CREATE INDEX / CONSTRAINT line."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    found: dict[str, str] = {}
    for match in (*CREATE_INDEX.finditer(text), *INDEX_CONSTRAINT.finditer(text)):
        line_index = text.count("\n", 0, match.start())
        found[match["name"]] = lines[line_index - 1].strip()
    return found


def test_each_index_has_a_one_line_comment_naming_its_query() -> None:
    documented = {**_documented(FORWARD), **_documented(FORWARD_INDEXES)}
    index_names = {n: c for n, c in documented.items() if n in ALL_NEW_INDEXES}
    assert sorted(index_names) == sorted(ALL_NEW_INDEXES)
    lacking = [
        name
        for name, comment in index_names.items()
        if not comment.startswith("-- ") or len(comment) < 15
    ]
    assert lacking == []


def test_names_fit_in_63_bytes(forward_dsn: str) -> None:
    """PostgreSQL truncates longer names silently; every name in the files must exist
    in the catalog exactly as written."""
    text = FORWARD.read_text(encoding="utf-8")
    constraints = {a or b for a, b in CONSTRAINT_NAME.findall(text)}
    assert len(constraints) > 40
    with psycopg.connect(forward_dsn, autocommit=True) as conn:
        in_catalog = {
            name
            for (name,) in conn.execute(
                "SELECT conname FROM pg_constraint WHERE connamespace = 'public'::regnamespace"
            )
        }
    assert all(len(name.encode()) <= 63 for name in (*constraints, *ALL_NEW_INDEXES))
    assert constraints <= in_catalog


def test_verify_file_lists_the_same_48_indexes() -> None:
    pairs = re.findall(r"\('(\w+)', '(\w+)'\)", VERIFY.read_text(encoding="utf-8"))
    listed = {
        (table, name)
        for table, name in pairs
        if name.endswith(("_idx", "_key", "_pkey", "_gin", "_brin"))
    }
    expected = {(table, name) for table, names in NEW_INDEXES.items() for name in names}
    assert listed == expected
