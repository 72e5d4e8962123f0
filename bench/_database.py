"""The bench's own connection to the server: databases, counters, the relations check.

Connections and commits are deltas of ``sessions`` and ``xact_commit`` in
``pg_stat_database``, read once no backend is left on the database (polled in
``pg_stat_activity``).  Since PostgreSQL 15 a backend flushes its counters
before it leaves ``pg_stat_activity``, so the read is exact;
``pg_stat_force_next_flush()`` only flushes the calling backend, so it can't
help for other sessions (on older servers we sleep 0.6 s instead).
"""

from __future__ import annotations

import time

import psycopg
from _server import Server
from _timing import Counters
from psycopg import sql

RELATIONS = """
SELECT n.nspname || '.' || c.relname FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r','p','i','v','m','S','f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%'
  AND n.nspname NOT LIKE 'pg\\_temp%'
"""


class Admin:
    """An autocommit connection to ``postgres`` that sets up and inspects the measured databases."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.conn = psycopg.connect(server.uri("postgres"), autocommit=True)
        self.num = int(self.scalar("SHOW server_version_num"))
        # no autovacuum worker committing into a database we measure
        self.conn.execute("ALTER SYSTEM SET autovacuum = off")
        self.conn.execute("SELECT pg_reload_conf()")

    def scalar(self, query: str, params: tuple[object, ...] = ()) -> object:
        row = self.conn.execute(query, params).fetchone()
        assert row is not None
        return row[0]

    def create_db(self, name: str) -> None:
        self.conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_db(self, name: str) -> None:
        force = sql.SQL(" WITH (FORCE)" if self.num >= 130000 else "")
        self.conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(name), force)
        )

    def wait_idle(self, db: str, timeout: float = 10.0) -> None:
        """Until no backend is connected to db (or timeout s): its counters are then final."""
        end = time.monotonic() + timeout
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
        while self.scalar(query, (db,)) != 0 and time.monotonic() < end:
            time.sleep(0.005)

    def counters(self, db: str) -> Counters:
        """(xact_commit, sessions) of db, once no backend is left on it."""
        self.wait_idle(db)
        if self.num < 150000:
            time.sleep(0.6)  # the old stats collector reports every 500 ms
        else:
            self.conn.execute("SELECT pg_stat_force_next_flush()")
        self.conn.execute("SELECT pg_stat_clear_snapshot()")
        sessions = sql.SQL("sessions" if self.num >= 140000 else "NULL::bigint")
        row = self.conn.execute(
            sql.SQL("SELECT xact_commit, {} FROM pg_stat_database WHERE datname = %s").format(
                sessions
            ),
            (db,),
        ).fetchone()
        assert row is not None
        return Counters(int(row[0]), None if row[1] is None else int(row[1]))

    def relations(self, db: str) -> set[str]:
        """Every user relation in db: each tool must make at least what psql made."""
        with psycopg.connect(self.server.uri(db), autocommit=True) as c:
            return {r[0] for r in c.execute(RELATIONS).fetchall()}

    def close(self) -> None:
        try:
            self.conn.execute("ALTER SYSTEM RESET autovacuum")
            self.conn.execute("SELECT pg_reload_conf()")
        finally:
            self.conn.close()
