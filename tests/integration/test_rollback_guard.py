"""The rollback data-loss guard on a real database: what CASCADE reaches, TRUNCATE, DO blocks,
and seed data recognised by its values, not by its row count."""

from __future__ import annotations

from pathlib import Path

import pytest

import sqlrunner

from .conftest import SqlSet, execute, scalar


def tx(*statements: str) -> str:
    return "BEGIN;\n" + "".join(f"{s};\n" for s in statements) + "COMMIT;\n"


def refused(dsn: str, root: Path) -> tuple[str, ...]:
    """The losses a rollback reports; it must refuse and leave the database as it was."""
    ledger = scalar(dsn, "SELECT count(*) FROM sqlrunner_ledger")
    with pytest.raises(sqlrunner.DataLossRefused) as caught:
        sqlrunner.rollback(dsn, root)
    assert caught.value.exit_code == 2
    assert scalar(dsn, "SELECT count(*) FROM sqlrunner_ledger") == ledger
    return caught.value.losses


BASE = tx("CREATE TABLE base (id int)")


def applied_change(dsn: str, sql_set: SqlSet, name: str, forward: str, rollback: str) -> Path:
    """The base table, then 0002_<name> and its rollback file, both applied: the set
    whose rollback of 0002 the test checks."""
    root = sql_set(
        {
            "forward/0001_base.sql": BASE,
            f"forward/0002_{name}.sql": forward,
            f"rollback/0002_{name}.sql": rollback,
        }
    )
    sqlrunner.apply(dsn, root)
    return root


def test_drop_schema_cascade_counts_every_table_of_the_schema_and_what_it_reaches(
    dsn: str, sql_set: SqlSet
) -> None:
    root = applied_change(
        dsn,
        sql_set,
        "app",
        tx(
            "CREATE SCHEMA app",
            "CREATE TABLE app.orders (id int)",
            "CREATE TABLE app.empty (id int)",
            "CREATE TYPE app.mood AS ENUM ('ok', 'sad')",
            "CREATE TABLE people (id int, mood app.mood)",
        ),
        tx("DROP SCHEMA app CASCADE"),
    )
    execute(
        dsn,
        "INSERT INTO app.orders SELECT generate_series(1, 1000)",
        "INSERT INTO people VALUES (1, 'ok'), (2, NULL)",
    )

    losses = refused(dsn, root)

    why = "dropped by DROP SCHEMA app CASCADE at rollback/0002_app.sql:2"
    assert losses == (
        f"table app.orders: 1000 rows ({why})",
        f"column people.mood: 1 values besides NULL and its default ({why})",
    )
    assert scalar(dsn, "SELECT count(*) FROM app.orders") == 1000


def test_drop_type_cascade_counts_the_columns_of_that_type(dsn: str, sql_set: SqlSet) -> None:
    root = applied_change(
        dsn,
        sql_set,
        "mood",
        tx(
            "CREATE TYPE mood AS ENUM ('ok', 'sad')",
            "CREATE DOMAIN moods AS mood[]",
            "ALTER TABLE base ADD COLUMN mood mood, ADD COLUMN history moods",
        ),
        tx("DROP TYPE mood CASCADE"),
    )
    execute(dsn, "INSERT INTO base VALUES (1, 'sad', '{ok,sad}'), (2, NULL, NULL)")

    losses = refused(dsn, root)

    why = "dropped by DROP TYPE mood CASCADE at rollback/0002_mood.sql:2"
    assert losses == (
        f"column base.mood: 1 values besides NULL and its default ({why})",
        f"column base.history: 1 values besides NULL and its default ({why})",
    )


def test_drop_table_cascade_counts_dependent_tables_and_columns_with_data(
    dsn: str, sql_set: SqlSet
) -> None:
    root = applied_change(
        dsn,
        sql_set,
        "parent",
        tx(
            "CREATE TABLE parent (id int)",
            "CREATE TABLE child (extra text) INHERITS (parent)",
            "CREATE TABLE keeps (id int, snapshot parent)",
            "CREATE TABLE events (at date) PARTITION BY RANGE (at)",
            "CREATE TABLE events_2024 PARTITION OF events "
            "FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
            "CREATE VIEW parent_ids AS SELECT id FROM parent",
        ),
        tx("DROP TABLE parent CASCADE", "DROP TABLE events"),
    )
    execute(
        dsn,
        "INSERT INTO child VALUES (1, 'x'), (2, 'y')",
        "INSERT INTO keeps VALUES (1, ROW(1)::parent)",
        "INSERT INTO events VALUES ('2024-05-01')",
    )

    losses = refused(dsn, root)

    why = "dropped by DROP TABLE parent CASCADE at rollback/0002_parent.sql:2"
    assert losses == (
        f"table child: 2 rows ({why})",
        f"column keeps.snapshot: 1 values besides NULL and its default ({why})",
        "table events_2024: 1 rows (dropped by DROP TABLE events at rollback/0002_parent.sql:3)",
    )


def test_truncate_and_what_its_cascade_reaches_count_as_data(dsn: str, sql_set: SqlSet) -> None:
    root = applied_change(
        dsn,
        sql_set,
        "orders",
        tx(
            "CREATE TABLE customers (id int PRIMARY KEY)",
            "CREATE TABLE orders (customer int REFERENCES customers)",
        ),
        tx("TRUNCATE customers CASCADE"),
    )
    execute(dsn, "INSERT INTO customers VALUES (1), (2)", "INSERT INTO orders VALUES (1)")

    losses = refused(dsn, root)

    why = "emptied by TRUNCATE customers CASCADE at rollback/0002_orders.sql:2"
    assert losses == (f"table customers: 2 rows ({why})", f"table orders: 1 rows ({why})")

    execute(dsn, "TRUNCATE customers CASCADE")
    assert [r.version for r in sqlrunner.rollback(dsn, root).rolled_back] == [2]


def test_a_do_block_is_refused_unless_confirmed_because_it_cannot_be_checked(
    dsn: str, sql_set: SqlSet
) -> None:
    # the table is even empty: the block is what is refused
    root = applied_change(
        dsn,
        sql_set,
        "notes",
        tx("CREATE TABLE notes (n text)"),
        "BEGIN;\nDO $$ BEGIN EXECUTE 'DROP TABLE ' || 'notes'; END $$;\nCOMMIT;\n",
    )

    assert refused(dsn, root) == (
        "rollback/0002_notes.sql:2: a DO block runs SQL that cannot be checked for data loss",
    )
    asked: list[str] = []
    sqlrunner.rollback(dsn, root, confirm=lambda losses: asked.extend(losses) or True)
    assert len(asked) == 1 and scalar(dsn, "SELECT to_regclass('notes')") is None


SEEDED = {
    "forward/0001_base.sql": BASE,
    "forward/0002_customers.sql": tx(
        "CREATE TABLE customers (id int GENERATED ALWAYS AS IDENTITY, name text UNIQUE, "
        "credit numeric(10, 2), since date, vip boolean, created timestamptz DEFAULT now())"
    ),
    "rollback/0002_customers.sql": tx("DROP TABLE customers"),
    "seed/0001_customers.sql": tx(
        "INSERT INTO customers (name, credit, since, vip, created) VALUES "
        "('house', 0, '2024-01-01', false, now()), ('demo', 1.5, NULL, true, now()), "
        "('test', -2, '2024-02-01'::date, NULL, now()) ON CONFLICT (name) DO NOTHING"
    ),
}


def test_rows_that_equal_the_seed_rows_are_seed_data(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(SEEDED)
    sqlrunner.apply(dsn, root)  # 3 rows, all from the seed (credit 1.5 is stored as 1.50)

    report = sqlrunner.rollback(dsn, root)

    assert report.data_at_risk == () and [r.version for r in report.rolled_back] == [2]


def test_as_many_rows_as_the_seed_inserts_are_not_seed_data_when_they_differ(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set(SEEDED)
    sqlrunner.apply(dsn, root, seed=False)
    execute(dsn, "INSERT INTO customers (name) VALUES ('ann'), ('bob'), ('cy')")

    assert refused(dsn, root) == ("table customers: 3 rows",)


def test_a_customer_among_the_seed_rows_is_counted(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(SEEDED)
    sqlrunner.apply(dsn, root)
    execute(dsn, "INSERT INTO customers (name, credit) VALUES ('ann', 10)")
    execute(dsn, "UPDATE customers SET credit = 99 WHERE name = 'demo'")  # no longer the seed's

    assert refused(dsn, root) == ("table customers: 4 rows (2 of them seed rows)",)


def test_dropped_columns_of_seed_rows_are_seed_data_but_others_are_not(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set(
        {
            "forward/0001_tags.sql": tx("CREATE TABLE tags (t text PRIMARY KEY)"),
            "forward/0002_colour.sql": tx("ALTER TABLE tags ADD COLUMN colour text"),
            "rollback/0002_colour.sql": tx("ALTER TABLE tags DROP COLUMN colour"),
            "seed/0001_tags.sql": tx(
                "INSERT INTO tags VALUES ('a', 'red'), ('b', 'blue') ON CONFLICT DO NOTHING"
            ),
        }
    )
    sqlrunner.apply(dsn, root)
    assert sqlrunner.rollback(dsn, root, dry_run=True).data_at_risk == ()

    execute(dsn, "INSERT INTO tags VALUES ('c', 'green')")
    assert refused(dsn, root) == ("column tags.colour: 1 values besides NULL and its default",)


def test_drop_schema_without_cascade_and_an_empty_schema_lose_nothing(
    dsn: str, sql_set: SqlSet
) -> None:
    root = applied_change(
        dsn,
        sql_set,
        "app",
        tx("CREATE SCHEMA app", "CREATE TABLE app.t (id int)"),
        tx("DROP TABLE app.t", "DROP SCHEMA app CASCADE"),
    )

    assert [r.version for r in sqlrunner.rollback(dsn, root).rolled_back] == [2]


def test_drop_extension_cascade_counts_columns_of_its_types(dsn: str, sql_set: SqlSet) -> None:
    root = applied_change(
        dsn,
        sql_set,
        "email",
        tx("CREATE EXTENSION IF NOT EXISTS citext", "ALTER TABLE base ADD COLUMN email citext"),
        tx("DROP EXTENSION citext CASCADE"),
    )
    execute(dsn, "INSERT INTO base VALUES (1, 'a@example.org')")

    assert refused(dsn, root) == (
        "column base.email: 1 values besides NULL and its default "
        "(dropped by DROP EXTENSION citext CASCADE at rollback/0002_email.sql:2)",
    )


def test_alter_type_drop_attribute_counts_the_values_it_removes(dsn: str, sql_set: SqlSet) -> None:
    root = applied_change(
        dsn,
        sql_set,
        "address",
        tx(
            "CREATE TYPE address AS (street text, city text)",
            "ALTER TABLE base ADD COLUMN home address",
            "CREATE TABLE offices OF address",
            "ALTER TYPE address ADD ATTRIBUTE zip text CASCADE",
        ),
        tx("ALTER TYPE address DROP ATTRIBUTE zip CASCADE"),
    )
    execute(
        dsn,
        "INSERT INTO base VALUES (1, ROW('main st', 'x', '1234')), (2, ROW('side st', 'y', NULL))",
        "INSERT INTO offices VALUES ('a', 'b', '99'), ('c', 'd', '98')",
    )

    why = "dropped by ALTER TYPE address DROP ATTRIBUTE zip CASCADE at rollback/0002_address.sql:2"
    assert refused(dsn, root) == (
        f"column offices.zip: 2 values besides NULL and its default ({why})",
        f"column base.home: 1 values of its attribute zip ({why})",
    )
