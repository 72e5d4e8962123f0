"""Progress events: what the runner tells a listener (the CLI's progress line, or logging)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .backfill import BatchProgress
    from .files import Migration
    from .report import FileResult
    from .sqltext import Statement

log = logging.getLogger("sqlrunner")


@dataclass(frozen=True)
class Event:
    """Something a person watching the run would want to know, as it happens."""

    # file_started | statement_started | statement_skipped | file_finished | retry | waiting | note
    # | server_message (a NOTICE or WARNING the server sent while a file ran)
    # | warning | backfill_progress (a batch of a batched file committed)
    kind: str
    message: str
    migration: Migration | None = None
    statement: Statement | None = None
    backend_pid: int | None = None
    result: FileResult | None = None
    backfill: BatchProgress | None = None


Listener = Callable[[Event], None]


def log_event(event: Event) -> None:
    """The library's default listener: everything goes to ``logging.getLogger("sqlrunner")``."""
    level = logging.DEBUG if event.kind in ("statement_started", "file_started") else logging.INFO
    if event.kind in ("retry", "waiting", "warning"):
        level = logging.WARNING
    if event.kind == "server_message":
        level = logging.WARNING if ": WARNING: " in event.message else logging.INFO
    # The CLI shows events through its progress printer: the mark lets its log skip them.
    log.log(level, "%s", event.message, extra={"sqlrunner_event": event.kind})


def fan_out(listener: Listener | None) -> Listener:
    """Log every event, and also hand it to ``listener`` when one is given."""
    if listener is None:
        return log_event

    def both(event: Event) -> None:
        log_event(event)
        listener(event)

    return both
