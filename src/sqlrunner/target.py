"""Which database to talk to, how to show it without its password, and how to reach it."""

from __future__ import annotations

import math
import re
import time
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import ConnectionFailed

# libpq ends a URL's password at the first '@' only: '?', '#' and '/' may be part of it.
_URL_PASSWORD = re.compile(r"^(?P<head>[a-z][a-z0-9+.-]*://[^:/@?#]*:)(?P<password>[^@]*)@", re.I)


@lru_cache(maxsize=64)  # a service applies to the same DSN again and again
def mask_password(dsn: str) -> str:
    """The DSN as users may see it: any password replaced by ``***``."""
    if "://" in dsn:
        masked = _URL_PASSWORD.sub(lambda m: f"{m['head']}***@" if m["password"] else m[0], dsn)
        return re.sub(r"([?&]password=)[^&]*", r"\1***", masked, flags=re.I)
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable DSN>"
    if params.get("password"):
        params["password"] = "***"
    return make_conninfo(**{k: str(v) for k, v in params.items()})


# Every connection sqlrunner opens notices a dead peer within seconds instead of the
# kernel's two hours: TCP keepalives probe an idle flow (and keep NAT/firewall state for it
# alive), tcp_user_timeout aborts when sent data stays unacknowledged. libpq ignores
# them on Unix-domain sockets, where the kernel reports a dead peer at once.
TCP_LIMITS = {
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",  # milliseconds
}
# Seconds for one connection attempt (a server that accepts TCP and never answers):
# libpq counts it per host, and its minimum is 2.
CONNECT_TIMEOUT = 10


def connection_options(dsn: str, timeout: float = CONNECT_TIMEOUT) -> dict[str, str]:
    """TCP_LIMITS and a connect timeout, for the keys the DSN does not set itself."""
    given = conninfo_to_dict(dsn)
    wanted = {**TCP_LIMITS, "connect_timeout": str(max(2, math.ceil(timeout)))}
    return {key: value for key, value in wanted.items() if key not in given}


def connect(
    dsn: str,
    *,
    wait: float = 0,
    autocommit: bool = True,
    application_name: str | None = None,
) -> psycopg.Connection[tuple[Any, ...]]:
    """Open a connection, retrying for up to ``wait`` seconds (containers start first).

    Each attempt is bounded (CONNECT_TIMEOUT, or what is left of ``wait``).
    ``prepare_threshold=None``: never prepare statements, so PgBouncer in
    transaction-pooling mode cannot hand us a server connection that lacks them.
    """
    deadline = time.monotonic() + max(0.0, wait)
    delay = 0.25
    names: dict[str, str] = (
        {"application_name": application_name}
        if application_name is not None
        else {"fallback_application_name": "sqlrunner"}  # the DSN's own name wins
    )
    while True:
        try:
            remaining = deadline - time.monotonic()
            limits = connection_options(
                dsn, min(CONNECT_TIMEOUT, remaining) if remaining > 0 else CONNECT_TIMEOUT
            )
            conninfo = make_conninfo(dsn, **names, **limits)
            return psycopg.connect(conninfo, autocommit=autocommit, prepare_threshold=None)
        except psycopg.OperationalError as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or _is_final(exc):
                reason = _one_line(str(exc)) or type(exc).__name__
                waited = f" after waiting {wait:g}s" if wait > 0 else ""
                raise ConnectionFailed(
                    f"cannot connect to {mask_password(dsn)}{waited}: {reason}"
                ) from None
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 2.0)
        except psycopg.ProgrammingError as exc:
            raise ConnectionFailed(
                f"invalid DSN {mask_password(dsn)}: {_one_line(str(exc))}"
            ) from None


def _is_final(exc: psycopg.OperationalError) -> bool:
    """Wrong password or unknown database will not fix themselves by waiting."""
    text = str(exc)
    return "password authentication failed" in text or (
        "database" in text and "does not exist" in text
    )


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return "; ".join(lines)[:400]
