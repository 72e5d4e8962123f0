"""The server's NOTICEs and WARNINGs (``RAISE WARNING``, "skipping"), shown as psql shows them.

psycopg drops them unless a handler is added to the connection; this one turns
each into a ``server_message`` event located at the file and line of the
statement that was running, so the CLI prints ``path:line: WARNING: ...`` and
the library logs it (a WARNING at WARNING level).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from .events import Event, Listener, fan_out


@contextmanager
def relay_server_messages(
    conn: psycopg.Connection[Any], listener: Listener | None
) -> Iterator[Listener]:
    """A listener to give the runner in place of ``listener``: it passes every event on,
    and, while it is in use, every message the server sends during a file's statement
    becomes an event too (the runner's own statements stay quiet)."""
    emit = fan_out(listener)
    running: list[Event] = []  # the statement running now, if one of a file's is

    def follow(event: Event) -> None:
        if event.kind == "statement_started":
            running[:] = [event]
        elif event.kind in ("file_started", "file_finished"):
            running.clear()
        if listener is not None:
            listener(event)

    def relay(diag: psycopg.errors.Diagnostic) -> None:
        if not running or running[0].migration is None or running[0].statement is None:
            return
        statement, migration = running[0].statement, running[0].migration
        where = f"{migration.display_path}:{statement.line}"
        parts = [f"{where}: {diag.severity}: {diag.message_primary or ''}"]
        extra = (("DETAIL", diag.message_detail), ("HINT", diag.message_hint))
        parts += [f"{key}: {value}" for key, value in extra if value]
        emit(Event("server_message", " | ".join(parts), migration=migration, statement=statement))

    conn.add_notice_handler(relay)
    try:
        yield follow
    finally:
        conn.remove_notice_handler(relay)
