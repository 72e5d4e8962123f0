"""One simple-query message holding several statements, and which of them failed.

The runner sends a file's statement together with its own SQL (BEGIN and
SET LOCALs before the first statement; the session restore, ledger rows and
COMMIT after the last) so a file costs one round trip per statement. libpq
returns one result per statement and stops at the first error, so counting
the results tells exactly which part failed: the file's statement, its
COMMIT (a deferred constraint), or the runner's own SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import errors, generators, pq

# Each part is one statement. A newline before each separator: a statement may end
# in a "-- comment" that would otherwise swallow the ";" and the next part.
SEPARATOR = "\n;\n"


class PartFailed(Exception):
    """Part ``index`` of a message failed with ``error``; ``offset`` is where that part
    starts in the message (PostgreSQL's error positions count from the message's start)."""

    def __init__(self, error: psycopg.Error, index: int, offset: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.index = index
        self.offset = offset

    @property
    def position(self) -> int | None:
        """The error's 1-based position within the failed part, when PostgreSQL gave one."""
        position = self.error.diag.statement_position
        return int(position) - self.offset if position else None


def send(conn: psycopg.Connection[Any], parts: Sequence[str]) -> list[pq.abc.PGresult]:
    """Run ``parts`` as one message; raise PartFailed for the part that failed. Returns
    each part's result (a batch reads its statement's row count there).

    A connection that breaks (terminated backend, network gone) raises
    psycopg.OperationalError, as psycopg does.
    """
    query = SEPARATOR.join(parts)
    encoding = conn.info.encoding
    with conn.lock:
        conn.pgconn.send_query(query.encode(encoding))
        results: list[pq.abc.PGresult] = conn.wait(generators.execute(conn.pgconn))
    offset = 0
    for index, result in enumerate(results):
        if result.status == pq.ExecStatus.FATAL_ERROR:
            raise PartFailed(errors.error_from_result(result, encoding=encoding), index, offset)
        if index < len(parts):
            offset += len(parts[index]) + len(SEPARATOR)
    if conn.pgconn.status == pq.ConnStatus.BAD:
        raise psycopg.OperationalError("the connection was lost")
    return results
