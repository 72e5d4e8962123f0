"""What a rollback file drops, empties or hides, read from its parse tree (no database)."""

from __future__ import annotations

from sqlrunner.rollbackeffects import Drop, RollbackEffects, Truncate, read_effects
from sqlrunner.sqltext import script_for

from .test_sqltext import migration


def effects_of(body: str) -> RollbackEffects:
    text = f"BEGIN;\n{body}COMMIT;\n"
    return read_effects([script_for(migration(text, "rollback", "0003_app"))])


def test_a_drop_names_each_table_quoted_with_its_cascade_and_statement() -> None:
    effects = effects_of('DROP TABLE notes, app."Items" CASCADE;\nDROP TABLE tags;\n')
    assert effects.drops == [
        Drop("regclass", '"notes"', None, True, 0),
        Drop("regclass", '"app"."Items"', None, True, 0),
        Drop("regclass", '"tags"', None, False, 1),
    ]
    assert [(o.where.rsplit("/", 1)[-1], o.text) for o in effects.origins] == [
        ("0003_app.sql:2", 'DROP TABLE notes, app."Items" CASCADE'),
        ("0003_app.sql:3", "DROP TABLE tags"),
    ]


def test_schemas_types_and_extensions_are_looked_up_by_their_own_catalog() -> None:
    effects = effects_of("DROP SCHEMA app CASCADE;\nDROP TYPE mood;\nDROP EXTENSION hstore;\n")
    assert [(d.lookup, d.name) for d in effects.drops] == [
        ("regnamespace", '"app"'),
        ("regtype", '"mood"'),
        ("extension", "hstore"),  # by extname: not an identifier
    ]


def test_an_index_or_a_function_holds_no_data() -> None:
    effects = effects_of("DROP INDEX items_idx;\nDROP FUNCTION f();\n")
    assert effects.drops == [] and effects.unchecked == []


def test_truncate_only_spares_the_children_and_cascade_is_kept() -> None:
    effects = effects_of("TRUNCATE ONLY events;\nTRUNCATE items, tags CASCADE;\n")
    assert effects.truncates == [
        Truncate('"events"', False, False, 0),
        Truncate('"items"', True, True, 1),
        Truncate('"tags"', True, True, 1),
    ]


def test_dropped_columns_and_type_attributes_are_told_apart() -> None:
    effects = effects_of(
        "ALTER TABLE items DROP COLUMN colour, DROP COLUMN size CASCADE;\n"
        "ALTER TYPE address DROP ATTRIBUTE zip;\n"
    )
    assert effects.drops == [
        Drop("column", '"items"', "colour", False, 0),
        Drop("column", '"items"', "size", True, 0),
    ]
    assert effects.attributes == [Drop("column", '"address"', "zip", False, 1)]


def test_do_and_call_are_unchecked_with_their_place() -> None:
    effects = effects_of("DO $$ BEGIN PERFORM 1; END $$;\nCALL cleanup();\n")
    assert [line.rsplit("/", 1)[-1] for line in effects.unchecked] == [
        "0003_app.sql:2: a DO block runs SQL that cannot be checked for data loss",
        "0003_app.sql:3: CALL runs a procedure that cannot be checked for data loss",
    ]
    assert effects.origins == [] and effects.drops == []
