"""Each statement type against PostgreSQL's documented lock levels
(https://www.postgresql.org/docs/current/explicit-locking.html and the ALTER TABLE page)."""

from __future__ import annotations

import json

import pytest
from pglast.parser import parse_sql_json

from sqlrunner.locklevels import statement_locks


def locks(sql: str) -> str:
    ((kind, fields),) = json.loads(parse_sql_json(sql))["stmts"][0]["stmt"].items()
    return str(statement_locks(kind, fields))


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # ALTER TABLE subcommands
        ("ALTER TABLE t ADD COLUMN c int", "ACCESS EXCLUSIVE on t"),
        ("ALTER TABLE s.t DROP COLUMN c", "ACCESS EXCLUSIVE on s.t"),
        ("ALTER TABLE t ALTER COLUMN c TYPE bigint", "ACCESS EXCLUSIVE on t"),
        ("ALTER TABLE t ALTER COLUMN c SET NOT NULL", "ACCESS EXCLUSIVE on t"),
        ("ALTER TABLE t ADD CONSTRAINT k CHECK (c > 0) NOT VALID", "ACCESS EXCLUSIVE on t"),
        ("ALTER TABLE t VALIDATE CONSTRAINT k", "SHARE UPDATE EXCLUSIVE on t"),
        (
            "ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (c) REFERENCES u (id) NOT VALID",
            "SHARE ROW EXCLUSIVE on t, SHARE ROW EXCLUSIVE on u",
        ),
        (
            "ALTER TABLE t ADD COLUMN d int, ADD FOREIGN KEY (c) REFERENCES u (id)",
            "ACCESS EXCLUSIVE on t, SHARE ROW EXCLUSIVE on u",
        ),
        ("ALTER TABLE t ALTER COLUMN c SET STATISTICS 500", "SHARE UPDATE EXCLUSIVE on t"),
        ("ALTER TABLE t ALTER COLUMN c SET (n_distinct = 10)", "SHARE UPDATE EXCLUSIVE on t"),
        ("ALTER TABLE t SET (fillfactor = 70)", "SHARE UPDATE EXCLUSIVE on t"),
        ("ALTER TABLE t SET (autovacuum_enabled = off)", "SHARE UPDATE EXCLUSIVE on t"),
        ("ALTER VIEW v SET (security_barrier = true)", "ACCESS EXCLUSIVE on v"),
        ("ALTER TABLE t CLUSTER ON i", "SHARE UPDATE EXCLUSIVE on t"),
        ("ALTER TABLE t DISABLE TRIGGER ALL", "SHARE ROW EXCLUSIVE on t"),
        ("ALTER TABLE t OWNER TO someone", "ACCESS EXCLUSIVE on t"),
        (
            "ALTER TABLE p ATTACH PARTITION p1 FOR VALUES IN (1)",
            "ACCESS EXCLUSIVE on p1, SHARE UPDATE EXCLUSIVE on p",
        ),
        ("ALTER TABLE p DETACH PARTITION p1", "ACCESS EXCLUSIVE on p, ACCESS EXCLUSIVE on p1"),
        (
            "ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY",
            "SHARE UPDATE EXCLUSIVE on p, SHARE UPDATE EXCLUSIVE on p1",
        ),
        # indexes
        ("CREATE INDEX i ON t (c)", "SHARE on t"),
        ("CREATE UNIQUE INDEX IF NOT EXISTS i ON s.t (c)", "SHARE on s.t"),
        ("CREATE INDEX CONCURRENTLY i ON t (c)", "SHARE UPDATE EXCLUSIVE on t"),
        ("DROP INDEX i", "ACCESS EXCLUSIVE on i"),
        ("DROP INDEX CONCURRENTLY IF EXISTS s.i", "SHARE UPDATE EXCLUSIVE on s.i"),
        ("ALTER INDEX i RENAME TO j", "SHARE UPDATE EXCLUSIVE on i"),
        ("REINDEX TABLE t", "SHARE on t; ACCESS EXCLUSIVE on each of its indexes"),
        ("REINDEX INDEX CONCURRENTLY i", "SHARE UPDATE EXCLUSIVE on i; and the same on its table"),
        # DROP, TRUNCATE and other ACCESS EXCLUSIVE commands
        ("DROP TABLE a, s.b", "ACCESS EXCLUSIVE on a, ACCESS EXCLUSIVE on s.b"),
        (
            "DROP TABLE a CASCADE",
            "ACCESS EXCLUSIVE on a; CASCADE also takes ACCESS EXCLUSIVE on every dependent object",
        ),
        ("DROP VIEW v", "ACCESS EXCLUSIVE on v"),
        ("DROP TRIGGER trg ON s.t", "ACCESS EXCLUSIVE on s.t"),
        ("DROP FUNCTION f()", "no table lock (dropping no table)"),
        ("TRUNCATE a, b", "ACCESS EXCLUSIVE on a, ACCESS EXCLUSIVE on b"),
        ("ALTER TABLE t RENAME TO u", "ACCESS EXCLUSIVE on t"),
        ("ALTER TABLE t RENAME COLUMN c TO d", "ACCESS EXCLUSIVE on t"),
        ("VACUUM FULL t", "ACCESS EXCLUSIVE on t"),
        ("VACUUM t", "SHARE UPDATE EXCLUSIVE on t"),
        ("ANALYZE t", "SHARE UPDATE EXCLUSIVE on t"),
        ("CLUSTER t USING i", "ACCESS EXCLUSIVE on t"),
        ("REFRESH MATERIALIZED VIEW m", "ACCESS EXCLUSIVE on m"),
        ("REFRESH MATERIALIZED VIEW CONCURRENTLY m", "EXCLUSIVE on m"),
        # data
        ("INSERT INTO t (c) VALUES (1)", "ROW EXCLUSIVE on t"),
        ("INSERT INTO t SELECT * FROM u", "ROW EXCLUSIVE on t, ACCESS SHARE on u"),
        ("WITH c AS (SELECT 1) INSERT INTO t SELECT * FROM c", "ROW EXCLUSIVE on t"),
        ("UPDATE t SET c = 1 FROM u WHERE u.id = t.id", "ROW EXCLUSIVE on t, ACCESS SHARE on u"),
        ("DELETE FROM t WHERE c IN (SELECT c FROM u)", "ROW EXCLUSIVE on t, ACCESS SHARE on u"),
        (
            "MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE",
            "ROW EXCLUSIVE on t, ACCESS SHARE on u",
        ),
        ("SELECT * FROM a JOIN b USING (id)", "ACCESS SHARE on a, ACCESS SHARE on b"),
        ("SELECT * FROM a FOR UPDATE", "ROW SHARE on a"),
        ("SELECT 1", "no table lock"),
        # the rest of the table
        ("LOCK TABLE t IN SHARE MODE", "SHARE on t"),
        ("LOCK TABLE t", "ACCESS EXCLUSIVE on t"),
        (
            "CREATE TRIGGER trg AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()",
            "SHARE ROW EXCLUSIVE on t",
        ),
        ("CREATE STATISTICS st ON a, b FROM t", "SHARE UPDATE EXCLUSIVE on t"),
        ("COMMENT ON TABLE t IS 'x'", "SHARE UPDATE EXCLUSIVE on t"),
        ("COMMENT ON COLUMN s.t.c IS 'x'", "SHARE UPDATE EXCLUSIVE on s.t"),
        ("CREATE POLICY p ON t USING (true)", "ACCESS EXCLUSIVE on t"),
        ("ALTER SEQUENCE q RESTART", "SHARE ROW EXCLUSIVE on q"),
        # new tables lock only what they attach to
        ("CREATE TABLE n (id int)", "no table lock"),
        ("CREATE TABLE n (id int REFERENCES u (id))", "SHARE ROW EXCLUSIVE on u"),
        ("CREATE TABLE n (id int, FOREIGN KEY (id) REFERENCES s.u)", "SHARE ROW EXCLUSIVE on s.u"),
        ("CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1)", "ACCESS EXCLUSIVE on p"),
        ("CREATE TABLE c () INHERITS (p)", "SHARE UPDATE EXCLUSIVE on p"),
        ("CREATE OR REPLACE VIEW v AS SELECT * FROM t", "ACCESS EXCLUSIVE on v, ACCESS SHARE on t"),
        # no table, or not readable in advance
        ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", "no table lock"),
        ("SET search_path = x", "no table lock"),
        (
            "DO $$ BEGIN PERFORM 1; END $$",
            "a DO block takes the locks of what it runs: not readable in advance",
        ),
    ],
)
def test_each_statement_names_its_documented_lock(sql: str, expected: str) -> None:
    assert locks(sql) == expected
