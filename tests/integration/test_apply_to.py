"""``apply --to V`` on a fresh database: every stage of a staged rollout succeeds.

Seeds used to wait for the last forward file while the verify files of the versions
applied already checked the seeded rows (verify 0003 counts the tier rules), so
``apply --to 3`` exited 1 once a 0004 existed. A seed now runs in a partial apply as
soon as every table and column it names exists (sqlrunner/seedtargets.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pytest

import sqlrunner

from .conftest import SqlSet, cli

SHIPPED = Path(__file__).resolve().parents[2] / "sql"
SHIPPED_VERSIONS = sorted(
    int(m[1]) for p in (SHIPPED / "forward").glob("*.sql") if (m := re.match(r"(\d+)_", p.name))
)


def _tier_rules(dsn: str) -> int | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('public.tier_model_rules')").fetchone() == (None,):
            return None
        row = conn.execute("SELECT count(*) FROM public.tier_model_rules").fetchone()
        return None if row is None else int(row[0])


@pytest.mark.parametrize("version", SHIPPED_VERSIONS, ids=lambda v: f"to-{v:04d}")
def test_apply_to_each_shipped_version_succeeds_on_a_fresh_database(dsn: str, version: int) -> None:
    staged = cli("--json", "--sql-dir", str(SHIPPED), "apply", "--to", str(version), dsn=dsn)
    assert staged.returncode == 0, staged.stderr
    document = json.loads(staged.stdout)
    applied = [f["version"] for f in document["applied"]]
    assert applied == [v for v in SHIPPED_VERSIONS if v <= version]
    # the seed runs once its table exists (0002 creates tier_model_rules), so every
    # verify of an applied version passes, the seeded-rules check included
    assert _tier_rules(dsn) == (None if version < 2 else 50)
    status = sqlrunner.status(dsn, SHIPPED)
    pending = sorted(s.version for s in status.pending if s.kind == "forward")
    assert pending == [v for v in SHIPPED_VERSIONS if v > version]
    sqlrunner.verify(dsn, SHIPPED)  # raises VerificationFailed on a false check

    finished = cli("--sql-dir", str(SHIPPED), "apply", dsn=dsn)
    assert finished.returncode == 0, finished.stderr
    assert sqlrunner.status(dsn, SHIPPED).up_to_date
    assert _tier_rules(dsn) == 50


BASE = """BEGIN;
CREATE TABLE items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text UNIQUE);
COMMIT;
"""
COLOR = "BEGIN;\nALTER TABLE items ADD COLUMN color text;\nCOMMIT;\n"
TAGS = "BEGIN;\nCREATE TABLE tags (tag text PRIMARY KEY);\nCOMMIT;\n"
ITEMS_SEED = """BEGIN;
INSERT INTO items AS i (name, color) VALUES ('pen', 'blue')
ON CONFLICT (name) DO UPDATE SET color = EXCLUDED.color
WHERE i.color IS DISTINCT FROM EXCLUDED.color;
COMMIT;
"""
TAGS_SEED = "BEGIN;\nINSERT INTO tags (tag) VALUES ('new') ON CONFLICT (tag) DO NOTHING;\nCOMMIT;\n"


def _seeded(report: sqlrunner.ApplyReport) -> list[str]:
    return [r.name for r in report.seeded]


def test_a_seed_runs_in_a_partial_apply_once_its_tables_and_columns_exist(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set(
        {
            "forward/0001_items.sql": BASE,
            "forward/0002_color.sql": COLOR,
            "forward/0003_tags.sql": TAGS,
            "seed/0001_items.sql": ITEMS_SEED,
            "seed/0002_tags.sql": TAGS_SEED,
        }
    )
    first = sqlrunner.apply(dsn, root, to=1)
    assert _seeded(first) == []
    (note,) = [n for n in first.notes if n.startswith("seeds deferred")]
    assert 'seed/0001_items.sql (needs "items".color)' in note
    assert 'seed/0002_tags.sql (needs "tags", "tags".tag)' in note

    second = sqlrunner.apply(dsn, root, to=2)  # items.color exists now; tags does not
    assert [r.version for r in second.applied] == [2] and _seeded(second) == ["items"]
    assert [n for n in second.notes if "0001_items" in n] == []

    last = sqlrunner.apply(dsn, root)  # at the head: the other seed, and no re-run
    assert [r.version for r in last.applied] == [3] and _seeded(last) == ["tags"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT name, color FROM items").fetchall() == [("pen", "blue")]
        assert conn.execute("SELECT tag FROM tags").fetchall() == [("new",)]


def test_a_seed_the_parser_cannot_see_through_waits_for_the_last_forward_file(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set(
        {
            "forward/0001_items.sql": BASE,
            "forward/0002_tags.sql": TAGS,
            "seed/0001_items.sql": (
                "BEGIN;\nDO $$ BEGIN INSERT INTO items (name) VALUES ('pen'); END $$;\nCOMMIT;\n"
            ),
        }
    )
    first = sqlrunner.apply(dsn, root, to=1)
    assert _seeded(first) == []
    assert any("waits for the last forward file" in n for n in first.notes)
    assert _seeded(sqlrunner.apply(dsn, root)) == ["items"]


def test_no_seed_still_means_no_seed_in_a_partial_apply(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/0001_items.sql": BASE,
            "forward/0002_tags.sql": TAGS,
            "seed/0001_items.sql": "BEGIN;\nINSERT INTO items (name) VALUES ('pen');\nCOMMIT;\n",
        }
    )
    report = sqlrunner.apply(dsn, root, to=1, seed=False)
    assert _seeded(report) == []
    assert _seeded(sqlrunner.apply(dsn, root, to=1)) == ["items"]
