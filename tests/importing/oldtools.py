"""What each source tool leaves in a database: its files run in its order under psql, and
its own ledger (created with the tool's DDL, holding the rows the tool writes). Shared by
the adopt tests and the docs test of docs/coming-from/."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import psycopg

from sqlrunner.importing import flyway_checksum


def _section(path: Path, start: str, end: str | None) -> str:
    text = path.read_text()
    body = re.split(start, text, maxsplit=1)[1]
    return re.split(end, body, maxsplit=1)[0] if end else body


# What the source tool runs, in its order: (up script, down script or None) per migration.
# Written out by hand here, independently of the importer's readers.
def steps(tool: str, src: Path, tmp: Path) -> list[tuple[Path, Path | None]]:
    def part(path: Path, start: str, end: str | None, suffix: str) -> Path:
        out = tmp / f"{path.stem}.{suffix}.sql"
        out.write_text(_section(path, start, end))
        return out

    if tool in ("golang-migrate", "pop"):
        ups = sorted(p for p in src.glob("*.up.sql") if ".mysql." not in p.name)
        return [(up, up.with_name(up.name.replace(".up.", ".down."))) for up in ups]
    if tool == "dbmate":
        return [
            (
                part(p, r"-- migrate:up.*\n", r"-- migrate:down", "up"),
                part(p, r"-- migrate:down.*\n", None, "down"),
            )
            for p in sorted(src.glob("*.sql"))
        ]
    if tool == "goose":
        return [
            (
                part(p, r"-- \+goose Up\n", r"-- \+goose Down", "up"),
                part(p, r"-- \+goose Down\n", None, "down"),
            )
            for p in sorted(src.glob("*.sql"))
        ]
    if tool == "flyway":
        return [
            (src / "V1__create_accounts.sql", src / "U1__create_accounts.sql"),
            (src / "V1_1__add_account_status.sql", src / "U1_1__add_account_status.sql"),
            (src / "V2__account_name_index.sql", src / "U2__account_name_index.sql"),
            (src / "R__account_summary_view.sql", None),  # repeatables run last
        ]
    if tool == "sqitch":
        changes = ["appschema", "users", "insert_user@v1.0", "users_nickname_idx", "insert_user"]
        return [(src / "deploy" / f"{c}.sql", src / "revert" / f"{c}.sql") for c in changes]
    assert tool == "diesel"
    return [(d / "up.sql", d / "down.sql") for d in sorted(p for p in src.iterdir() if p.is_dir())]


# Each tool's ledger DDL as the tool itself creates it on PostgreSQL.
LEDGER_DDL = {
    # golang-migrate database/postgres: ensureVersionTable
    "golang-migrate": "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(version bigint not null primary key, dirty boolean not null)",
    # dbmate pkg/driver/postgres: CreateMigrationsTable
    "dbmate": "create table if not exists public.schema_migrations "
    "(version varchar(128) primary key)",
    # Flyway's createMetaDataTable.sql for PostgreSQL
    "flyway": """
        CREATE TABLE "public"."flyway_schema_history" (
            "installed_rank" INT NOT NULL,
            "version" VARCHAR(50),
            "description" VARCHAR(200) NOT NULL,
            "type" VARCHAR(20) NOT NULL,
            "script" VARCHAR(1000) NOT NULL,
            "checksum" INTEGER,
            "installed_by" VARCHAR(100) NOT NULL,
            "installed_on" TIMESTAMP NOT NULL DEFAULT now(),
            "execution_time" INTEGER NOT NULL,
            "success" BOOLEAN NOT NULL
        );
        ALTER TABLE "public"."flyway_schema_history"
            ADD CONSTRAINT "flyway_schema_history_pk" PRIMARY KEY ("installed_rank");
        CREATE INDEX "flyway_schema_history_s_idx" ON "public"."flyway_schema_history" ("success");
    """,
    # Sqitch lib/App/Sqitch/Engine/pg.sql (the two tables adopt reads)
    "sqitch": """
        CREATE SCHEMA sqitch;
        CREATE TABLE sqitch.projects (
            project         TEXT        PRIMARY KEY,
            uri             TEXT            NULL UNIQUE,
            created_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
            creator_name    TEXT        NOT NULL,
            creator_email   TEXT        NOT NULL
        );
        CREATE TABLE sqitch.changes (
            change_id       TEXT        PRIMARY KEY,
            script_hash     TEXT            NULL,
            change          TEXT        NOT NULL,
            project         TEXT        NOT NULL REFERENCES sqitch.projects(project)
                                        ON UPDATE CASCADE,
            note            TEXT        NOT NULL DEFAULT '',
            committed_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
            committer_name  TEXT        NOT NULL,
            committer_email TEXT        NOT NULL,
            planned_at      TIMESTAMPTZ NOT NULL,
            planner_name    TEXT        NOT NULL,
            planner_email   TEXT        NOT NULL,
            UNIQUE(project, script_hash)
        );
    """,
    # diesel_migrations: CREATE_MIGRATIONS_TABLE
    "diesel": "CREATE TABLE IF NOT EXISTS __diesel_schema_migrations ("
    "version VARCHAR(50) PRIMARY KEY NOT NULL, run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)",
    # goose (v3.x postgres dialect, as pg_dump shows it in goose-managed databases)
    "goose": "CREATE TABLE goose_db_version (id serial NOT NULL, version_id bigint NOT NULL, "
    "is_applied boolean NOT NULL, tstamp timestamp NULL default now(), PRIMARY KEY(id))",
    # pop: schema_migration (version varchar(14)) with a unique index
    "pop": "CREATE TABLE schema_migration (version varchar(14) NOT NULL); "
    "CREATE UNIQUE INDEX schema_migration_version_idx ON schema_migration (version)",
}

SQITCH_CHANGES = ["appschema", "users", "insert_user@v1.0", "users_nickname_idx", "insert_user"]


def sqitch_rows(src: Path) -> str:
    rows = []
    for number, stem in enumerate(SQITCH_CHANGES):
        script_hash = hashlib.sha1((src / "deploy" / f"{stem}.sql").read_bytes()).hexdigest()
        change = stem.split("@")[0]
        rows.append(
            f"('{number:040d}', '{script_hash}', '{change}', 'flipr', 'Marge', 'marge@example.com',"
            f" '2023-01-10', 'Marge', 'marge@example.com')"
        )
    return (
        "INSERT INTO sqitch.projects VALUES ('flipr', NULL, now(), 'Marge', 'marge@example.com');"
        "INSERT INTO sqitch.changes (change_id, script_hash, change, project, committer_name, "
        "committer_email, planned_at, planner_name, planner_email) VALUES " + ", ".join(rows)
    )


def flyway_rows(src: Path, *, status_checksum: str | None = None, v2_ok: bool = True) -> str:
    scripts = [
        ("1", "create accounts", "V1__create_accounts.sql"),
        ("1.1", "add account status", "V1_1__add_account_status.sql"),
        ("2", "account name index", "V2__account_name_index.sql"),
        (None, "account summary view", "R__account_summary_view.sql"),
    ]
    rows = []
    for rank, (version, description, script) in enumerate(scripts, 1):
        checksum = flyway_checksum(src / script)
        if version == "1.1" and status_checksum is not None:
            checksum = status_checksum
        success = "false" if version == "2" and not v2_ok else "true"
        shown = "NULL" if version is None else f"'{version}'"
        rows.append(
            f"({rank}, {shown}, '{description}', 'SQL', '{script}', {checksum}, 'flyway', 12, "
            f"{success})"
        )
    return (
        "INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, "
        "checksum, installed_by, execution_time, success) VALUES " + ", ".join(rows)
    )


# What each tool's ledger holds once it applied the whole fixture set.
LEDGER_ROWS: dict[str, Callable[[Path], str]] = {
    "golang-migrate": lambda src: "INSERT INTO schema_migrations VALUES (5, false)",
    "dbmate": lambda src: (
        "INSERT INTO schema_migrations (version) VALUES ('20230101120000'), "
        "('20230102090000'), ('20230103000000'), ('20230104000000')"
    ),
    "flyway": flyway_rows,
    "sqitch": sqitch_rows,
    "diesel": lambda src: (
        "INSERT INTO __diesel_schema_migrations (version) VALUES "
        "('00000000000000'), ('20240115101500'), ('20240116080000')"
    ),
    "goose": lambda src: (
        "INSERT INTO goose_db_version (version_id, is_applied) VALUES "
        "(0, true), (1, true), (2, true), (3, true)"
    ),
    "pop": lambda src: (
        "INSERT INTO schema_migration (version) VALUES ('20200101120000'), ('20200102120000')"
    ),
}


RunScript = Callable[[str, Path, Path], None]  # (dsn, script, cwd), as psql -f


def migrate_with_old_tool(
    tool: str, dsn: str, src: Path, scratch: Path, run: RunScript, rows: str | None = None
) -> None:
    """The database as ``tool`` leaves it after applying ``src``: schema and ledger."""
    for up, _down in steps(tool, src, scratch):
        run(dsn, up, src)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(LEDGER_DDL[tool])
        conn.execute(rows if rows is not None else LEDGER_ROWS[tool](src))
