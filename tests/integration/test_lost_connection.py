"""A connection lost mid-file is reported as a lost connection, with what the ledger shows.

Faults are real: the runner's backend is terminated with pg_terminate_backend, or a
TCP proxy on loopback cuts the connection right after the server answered COMMIT.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import sqlrunner
from sqlrunner.errors import ConnectionLost

from .conftest import SqlSet, scalar, spawn

READY_FOR_QUERY = b"Z\x00\x00\x00\x05"


def terminate_when(
    dsn: str, query_like: str, timeout: float = 20, wait_event: str = "PgSleep"
) -> int:
    """Terminate the backend sleeping in a query LIKE ``query_like``; its pid."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()"
                " AND state = 'active' AND wait_event = %s",
                (query_like, wait_event),
            ).fetchone()
            if row:
                conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                return int(row[0])
            time.sleep(0.05)
    raise AssertionError(f"no backend ran {query_like!r}")


def test_backend_terminated_during_a_statement_is_a_lost_connection(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set(
        {
            "forward/0001_slow.sql": "BEGIN;\nCREATE TABLE a (id int);\n"
            "SELECT pg_sleep(30) AS the_slow_one;\nCOMMIT;\n"
        }
    )
    runner = spawn("--sql-dir", str(root), "apply", dsn=dsn)
    terminate_when(dsn, "%the_slow_one%")
    code = runner.wait(timeout=30)
    stderr = runner.stderr.read() if runner.stderr else ""
    assert code == 3, stderr
    assert (
        "forward/0001_slow.sql: lost the connection to the database while running line 3 ("
        in stderr
    )
    assert "the ledger does not show the file applied: it was rolled back; run apply again" in (
        stderr
    )
    assert "SQLSTATE" not in stderr and "fix it" not in stderr
    assert scalar(dsn, "SELECT to_regclass('a')") is None


def test_backend_terminated_at_commit_time_says_the_file_was_not_applied(
    dsn: str, sql_set: SqlSet
) -> None:
    # A deferred constraint trigger makes COMMIT itself take long.
    root = sql_set(
        {
            "forward/0001_t.sql": "BEGIN;\nCREATE TABLE t (id int);\n"
            "CREATE FUNCTION slow_check() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            "BEGIN PERFORM pg_sleep(30); RETURN NULL; END $$;\n"
            "CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON t DEFERRABLE INITIALLY DEFERRED\n"
            "  FOR EACH ROW EXECUTE FUNCTION slow_check();\n"
            "INSERT INTO t VALUES (1);\nCOMMIT;\n"
        }
    )
    killer = threading.Thread(
        target=terminate_when, args=(dsn, "%INSERT INTO t VALUES (1)%RESET ALL%")
    )
    killer.start()
    with pytest.raises(ConnectionLost) as lost:
        sqlrunner.apply(dsn, root)
    killer.join()
    message = str(lost.value)
    assert message.startswith(
        "forward/0001_t.sql: lost the connection to the database while committing the file"
    )
    assert "the ledger does not show the file applied" in message
    assert lost.value.applied is False and lost.value.exit_code == 3
    assert scalar(dsn, "SELECT to_regclass('t')") is None


class CutAfterCommit:
    """A loopback TCP proxy to the server that, on the connection that sends the ledger
    write and COMMIT, lets the server answer in full and then cuts the client off."""

    def __init__(self, target: dict[str, str]) -> None:
        self.target = target
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        self.cut = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _upstream(self) -> socket.socket:
        host = self.target.get("host", "localhost")
        port = self.target.get("port", "5432")
        if host.startswith("/"):
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(f"{host}/.s.PGSQL.{port}")
            return upstream
        return socket.create_connection((host, int(port)))

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = self._upstream()
            armed = threading.Event()
            threading.Thread(target=self._to_server, args=(client, upstream, armed)).start()
            threading.Thread(target=self._to_client, args=(upstream, client, armed)).start()

    def _to_server(
        self, client: socket.socket, upstream: socket.socket, armed: threading.Event
    ) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if b"sqlrunner_ledger" in data and b"COMMIT" in data and not self.cut.is_set():
                    armed.set()
                upstream.sendall(data)
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    def _to_client(
        self, upstream: socket.socket, client: socket.socket, armed: threading.Event
    ) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if armed.is_set():
                    if READY_FOR_QUERY in data:  # the server finished the COMMIT message
                        self.cut.set()
                        for side in (client, upstream):
                            side.shutdown(socket.SHUT_RDWR)  # wakes the other pump, sends FIN
                            side.close()
                        return
                    continue  # swallow the answer
                client.sendall(data)
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()


@pytest.fixture
def cut_after_commit(dsn: str) -> Iterator[tuple[str, CutAfterCommit]]:
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v}
    proxy = CutAfterCommit(params)
    try:
        yield make_conninfo(**{**params, "host": "127.0.0.1", "port": str(proxy.port)}), proxy
    finally:
        proxy.close()


def test_connection_lost_after_commit_went_through_says_it_is_applied(
    dsn: str, sql_set: SqlSet, cut_after_commit: tuple[str, CutAfterCommit]
) -> None:
    proxied, proxy = cut_after_commit
    root = sql_set({"forward/0001_t.sql": "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;\n"})
    with pytest.raises(ConnectionLost) as lost:
        sqlrunner.apply(proxied, root)
    assert proxy.cut.is_set()
    message = str(lost.value)
    assert message.startswith(
        "forward/0001_t.sql: lost the connection to the database while running line 2 and "
        "committing the file (the COMMIT may have gone through)"
    )
    assert message.endswith(
        "the ledger shows the file applied: its COMMIT went through; nothing to redo"
    )
    assert lost.value.applied is True
    assert scalar(dsn, "SELECT to_regclass('t')::text") == "t"
    assert sqlrunner.status(dsn, root).up_to_date
