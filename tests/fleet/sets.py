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
