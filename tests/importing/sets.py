"""Small, realistic migration sets in each tool's layout, modelled on public projects.

Each set exercises what its tool does differently: implicit transactions,
no-transaction markers, statements PostgreSQL refuses in a transaction block,
StatementBegin/End, a missing final ``;``, psql meta-commands, empty
placeholders, reworked Sqitch changes.
"""

from __future__ import annotations

GOLANG_MIGRATE = {
    "000001_create_users_table.up.sql": """\
CREATE TYPE user_role AS ENUM ('member', 'admin');

CREATE TABLE IF NOT EXISTS users (
    id         bigserial PRIMARY KEY,
    email      text NOT NULL,
    role       user_role NOT NULL DEFAULT 'member',
    created_at timestamptz NOT NULL DEFAULT now()
);
""",
    "000001_create_users_table.down.sql": "DROP TABLE IF EXISTS users;\nDROP TYPE IF EXISTS user_role",
    "000002_add_users_email_index.up.sql": (
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_key ON users (lower(email));\n"
    ),
    "000002_add_users_email_index.down.sql": "DROP INDEX CONCURRENTLY IF EXISTS users_email_key;\n",
    "000003_create_posts.up.sql": """\
BEGIN;

CREATE TABLE posts (
    id         bigserial PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title      text NOT NULL,
    body       text NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now(); -- a ';' inside a dollar quote
    RETURN NEW;
END;
$$;

CREATE TRIGGER posts_set_updated_at BEFORE UPDATE ON posts
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

COMMIT;
""",
    "000003_create_posts.down.sql": """\
BEGIN;
DROP TABLE posts;
DROP FUNCTION set_updated_at();
COMMIT;
""",
    "000004_placeholder.up.sql": "-- intentionally empty: the release that shipped this was reverted\n",
    "000004_placeholder.down.sql": "",
    "000005_create_settings.up.sql": """\
CREATE TABLE settings (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO settings (key, value) VALUES ('signup_open', 'true'), ('theme', 'light');
""",
    "000005_create_settings.down.sql": "DROP TABLE settings;\n",
}

DBMATE = {
    "20230101120000_create_users.sql": """\
-- migrate:up
create table users (
  id bigserial primary key,
  email text not null unique,
  name text
);

-- migrate:down
drop table users;
""",
    "20230102090000_add_lower_email_index.sql": """\
-- migrate:up transaction:false
create index concurrently if not exists users_lower_email_idx on users (lower(email));

-- migrate:down
drop index if exists users_lower_email_idx;
""",
    "20230103000000_create_orders.sql": """\
-- migrate:up
create table orders (
  id bigserial primary key,
  user_id bigint not null references users (id),
  total_cents integer not null check (total_cents >= 0)
);

create function order_total(p_user bigint) returns bigint
language sql stable as $$
  select coalesce(sum(total_cents), 0) from orders where user_id = p_user;
$$

-- migrate:down
drop function order_total(bigint);
drop table orders
""",
    "20230104000000_nothing_yet.sql": "-- migrate:up\n\n-- migrate:down\n\n",
}

FLYWAY = {
    "V1__create_accounts.sql": """\
CREATE TABLE accounts (
    id      integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name    varchar(200) NOT NULL,
    created timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);
""",
    "U1__create_accounts.sql": "DROP TABLE accounts;\n",
    "V1_1__add_account_status.sql": """\
ALTER TABLE accounts ADD COLUMN status varchar(20) NOT NULL DEFAULT 'active';
ALTER TABLE accounts ADD CONSTRAINT accounts_status_check
    CHECK (status IN ('active', 'closed'));
""",
    "U1_1__add_account_status.sql": "ALTER TABLE accounts DROP COLUMN status;\n",
    "V2__account_name_index.sql": (
        "CREATE INDEX CONCURRENTLY accounts_name_idx ON accounts (name);\n"
    ),
    "V2__account_name_index.sql.conf": "executeInTransaction=false\n",
    "U2__account_name_index.sql": "DROP INDEX CONCURRENTLY accounts_name_idx;\n",
    "R__account_summary_view.sql": """\
CREATE OR REPLACE VIEW account_summary AS
SELECT id, name FROM accounts;
""",
}

# flipr's insert_user as tagged v1.0; the plan reworks it afterwards
INSERT_USER_V1 = """\
-- Deploy flipr:insert_user to pg
-- requires: users
-- requires: appschema

BEGIN;

CREATE OR REPLACE FUNCTION flipr.insert_user(
    nickname TEXT,
    password TEXT
) RETURNS VOID LANGUAGE SQL SECURITY DEFINER AS $$
    INSERT INTO flipr.users VALUES($1, md5($2));
$$;

COMMIT;
"""

SQITCH = {
    "sqitch.conf": "[core]\n\tengine = pg\n\ttop_dir = .\n",
    "sqitch.plan": """\
%syntax-version=1.0.0
%project=flipr
%uri=https://example.com/flipr/

appschema 2023-01-10T10:00:00Z Marge N. O'Vera <marge@example.com> # Add schema for all flipr objects.
users [appschema] 2023-01-10T10:05:00Z Marge N. O'Vera <marge@example.com> # Creates table to track our users.
insert_user [users appschema] 2023-01-12T10:00:00Z Marge N. O'Vera <marge@example.com> # Creates a function to insert a user.
@v1.0 2023-01-13T09:00:00Z Marge N. O'Vera <marge@example.com> # Tag v1.0.
users_nickname_idx [users] 2023-02-01T10:00:00Z Marge N. O'Vera <marge@example.com> # Index nicknames.
insert_user [insert_user@v1.0] 2023-02-02T10:00:00Z Marge N. O'Vera <marge@example.com> # Lower-case nicknames.
""",
    "deploy/appschema.sql": "-- Deploy flipr:appschema to pg\n\nBEGIN;\n\nCREATE SCHEMA flipr;\n\nCOMMIT;\n",
    "revert/appschema.sql": "-- Revert flipr:appschema from pg\n\nBEGIN;\n\nDROP SCHEMA flipr;\n\nCOMMIT;\n",
    "verify/appschema.sql": (
        "-- Verify flipr:appschema on pg\n\nSELECT pg_catalog.has_schema_privilege('flipr', 'usage');\n"
    ),
    "deploy/users.sql": """\
-- Deploy flipr:users to pg
-- requires: appschema

SET client_min_messages TO warning;
\\set default_status 'active'

BEGIN;

CREATE TABLE flipr.users (
    nickname  TEXT        PRIMARY KEY,
    password  TEXT        NOT NULL,
    status    TEXT        NOT NULL DEFAULT :'default_status',
    timestamp TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

COMMIT;
""",
    "revert/users.sql": "-- Revert flipr:users from pg\n\nBEGIN;\n\nDROP TABLE flipr.users;\n\nCOMMIT;\n",
    "verify/users.sql": """\
-- Verify flipr:users on pg

BEGIN;

SELECT nickname, password, status, timestamp
  FROM flipr.users
 WHERE FALSE;

ROLLBACK;
""",
    "deploy/insert_user@v1.0.sql": INSERT_USER_V1,
    "revert/insert_user@v1.0.sql": (
        "BEGIN;\n\nDROP FUNCTION flipr.insert_user(TEXT, TEXT);\n\nCOMMIT;\n"
    ),
    "verify/insert_user@v1.0.sql": (
        "BEGIN;\nSELECT has_function_privilege('flipr.insert_user(text, text)', 'execute');\n"
        "ROLLBACK;\n"
    ),
    "deploy/users_nickname_idx.sql": """\
-- Deploy flipr:users_nickname_idx to pg
CREATE INDEX CONCURRENTLY users_nickname_lower_idx ON flipr.users (lower(nickname));
""",
    "revert/users_nickname_idx.sql": "DROP INDEX CONCURRENTLY flipr.users_nickname_lower_idx;\n",
    "verify/users_nickname_idx.sql": """\
SELECT 1/COUNT(*) FROM pg_indexes
 WHERE schemaname = 'flipr' AND indexname = 'users_nickname_lower_idx';
""",
    # `sqitch rework` copies the tagged script to @v1.0 and the change edits the copy
    "deploy/insert_user.sql": INSERT_USER_V1.replace("VALUES($1,", "VALUES(lower($1),"),
    "revert/insert_user.sql": "-- Revert to the v1.0 function\n\\i deploy/insert_user@v1.0.sql\n",
    "verify/insert_user.sql": """\
BEGIN;
DO $$
BEGIN
    ASSERT (SELECT prosrc ~ 'lower' FROM pg_proc WHERE proname = 'insert_user');
END;
$$;
ROLLBACK;
""",
}

DIESEL_SETUP_UP = """\
-- This file was automatically created by Diesel to setup helper functions
-- and other internal bookkeeping. This file is safe to edit, any future
-- changes will be added to existing projects as new migrations.

CREATE OR REPLACE FUNCTION diesel_manage_updated_at(_tbl regclass) RETURNS VOID AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER set_updated_at BEFORE UPDATE ON %s
                    FOR EACH ROW EXECUTE PROCEDURE diesel_set_updated_at()', _tbl);
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION diesel_set_updated_at() RETURNS trigger AS $$
BEGIN
    IF (
        NEW IS DISTINCT FROM OLD AND
        NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at
    ) THEN
        NEW.updated_at := current_timestamp;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
"""

DIESEL = {
    "00000000000000_diesel_initial_setup/up.sql": DIESEL_SETUP_UP,
    "00000000000000_diesel_initial_setup/down.sql": """\
-- This file was automatically created by Diesel to setup helper functions
-- and other internal bookkeeping. This file is safe to edit, any future
-- changes will be added to existing projects as new migrations.

DROP FUNCTION IF EXISTS diesel_manage_updated_at(_tbl regclass);
DROP FUNCTION IF EXISTS diesel_set_updated_at();
""",
    "2024-01-15-101500_create_posts/up.sql": """\
-- Your SQL goes here
CREATE TABLE posts (
  id SERIAL PRIMARY KEY,
  title VARCHAR NOT NULL,
  body TEXT NOT NULL,
  published BOOLEAN NOT NULL DEFAULT FALSE,
  updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
SELECT diesel_manage_updated_at('posts');
""",
    "2024-01-15-101500_create_posts/down.sql": "-- This file should undo anything in `up.sql`\nDROP TABLE posts\n",
    "2024-01-16-080000_posts_title_index/up.sql": (
        "CREATE INDEX CONCURRENTLY posts_title_idx ON posts (title);\n"
    ),
    "2024-01-16-080000_posts_title_index/down.sql": "DROP INDEX CONCURRENTLY posts_title_idx;\n",
    "2024-01-16-080000_posts_title_index/metadata.toml": "run_in_transaction = false\n",
}

GOOSE = {
    "00001_create_users.sql": """\
-- +goose Up
-- +goose StatementBegin
CREATE TABLE users (
    id serial PRIMARY KEY,
    username text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER users_touch BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- +goose Down
-- +goose StatementBegin
DROP TABLE users;
DROP FUNCTION touch_updated_at();
-- +goose StatementEnd
""",
    "00002_add_username_index.sql": """\
-- +goose NO TRANSACTION
-- +goose Up
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_username_key ON users (username);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS users_username_key;
""",
    "00003_create_audit.sql": """\
-- +goose Up
CREATE TABLE audit_events (id bigserial PRIMARY KEY, kind text NOT NULL, at timestamptz DEFAULT now())

-- +goose Down
DROP TABLE audit_events
""",
}

POP = {
    "20200101120000_create_widgets.up.sql": (
        "CREATE TABLE widgets (\n  id uuid PRIMARY KEY,\n  name varchar(255) NOT NULL\n);\n"
    ),
    "20200101120000_create_widgets.down.sql": "DROP TABLE widgets;\n",
    "20200102120000_widgets_name_idx.postgres.up.sql": (
        "CREATE INDEX widgets_name_idx ON widgets (name);\n"
    ),
    "20200102120000_widgets_name_idx.postgres.down.sql": "DROP INDEX widgets_name_idx;\n",
    "20200102120000_widgets_name_idx.mysql.up.sql": "CREATE INDEX widgets_name_idx ON widgets (name(10));\n",
    "20200102120000_widgets_name_idx.mysql.down.sql": "DROP INDEX widgets_name_idx ON widgets;\n",
    "20200103000000_create_gizmos.up.fizz": 'create_table("gizmos") {\n  t.Column("id", "uuid", {primary: true})\n}\n',
}

SETS = {
    "golang-migrate": GOLANG_MIGRATE,
    "dbmate": DBMATE,
    "flyway": FLYWAY,
    "sqitch": SQITCH,
    "diesel": DIESEL,
    "goose": GOOSE,
    "pop": POP,
}
