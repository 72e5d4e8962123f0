"""Small migration sets for fleet tests."""

from __future__ import annotations

TENANT_SET = {
    "forward/0001_accounts.sql": (
        "BEGIN;\nCREATE TABLE accounts (id bigint PRIMARY KEY, name text NOT NULL);\nCOMMIT;\n"
    ),
    "rollback/0001_accounts.sql": "BEGIN;\nDROP TABLE accounts;\nCOMMIT;\n",
    "forward/0002_invoices.sql": (
        "BEGIN;\n"
        "CREATE TABLE invoices (\n"
        "    id bigint PRIMARY KEY,\n"
        "    account_id bigint NOT NULL REFERENCES accounts (id)\n"
        ");\n"
        "COMMIT;\n"
    ),
    "rollback/0002_invoices.sql": "BEGIN;\nDROP TABLE invoices;\nCOMMIT;\n",
    "forward/0003_invoice_total.sql": (
        "BEGIN;\nALTER TABLE invoices ADD COLUMN total numeric NOT NULL DEFAULT 0;\nCOMMIT;\n"
    ),
    "rollback/0003_invoice_total.sql": (
        "BEGIN;\nALTER TABLE invoices DROP COLUMN total;\nCOMMIT;\n"
    ),
    "verify/0002_invoices.sql": (
        "SELECT 'invoices exists', to_regclass('invoices') IS NOT NULL, 'the table is there';\n"
    ),
}
FORWARD = [
    "forward/0001_accounts.sql",
    "forward/0002_invoices.sql",
    "forward/0003_invoice_total.sql",
]


def slow(files: dict[str, str], seconds: float) -> dict[str, str]:
    """The same set, each forward file taking ``seconds`` more (to kill a run mid-way)."""
    return {
        path: text.replace("COMMIT;", f"SELECT pg_sleep({seconds});\nCOMMIT;")
        if path.startswith("forward/")
        else text
        for path, text in files.items()
    }


# A backfill of ten batches of 0.1 s each: a budget of 0.35 s stops it after a few.
# Every batch adds 1 to its rows' counter, so a batch applied twice shows as a 2.
BACKFILL_SET = {
    "forward/0001_items.sql": (
        "BEGIN;\n"
        "CREATE TABLE items (id bigint PRIMARY KEY, counter integer NOT NULL DEFAULT 0);\n"
        "INSERT INTO items (id) SELECT generate_series(1, 100);\n"
        "COMMIT;\n"
    ),
    "forward/0002_backfill.sql": (
        "-- sqlrunner: batched table=public.items key=id size=10 target=off\n"
        "UPDATE public.items SET counter = counter + 1 FROM (SELECT pg_sleep(0.1)) AS pause\n"
        "WHERE items.id >= :lo AND items.id < :hi;\n"
    ),
    "verify/0002_backfill.sql": (
        "SELECT 'every item counted once', bool_and(counter = 1), count(*)::text FROM items;\n"
    ),
}
