"""Which database to talk to, how to show it without its password, and how to reach it."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import ConnectionFailed

UNPARSABLE = "<unparsable DSN>"
MASK = "***"
# libpq's secret keywords: a value under any of these is never shown.
SECRET_KEYS = ("password", "sslpassword", "oauth_client_secret")


def mask_password(dsn: str) -> str:
    """The DSN as users may see it: every secret libpq reads from it replaced by ``***``.

    libpq itself parses the DSN (URL or key=value), so whatever it takes for a
    password (``?pass%77ord=``, the text up to the first ``@``) is masked. A DSN
    it cannot parse is never shown at all: its password could be anywhere in it.
    """
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return UNPARSABLE
    if not any(params.get(key) for key in SECRET_KEYS):
        return dsn
    if dsn.startswith(("postgresql://", "postgres://")):
        masked = _mask_url(dsn)
        if _only_masked_secrets(masked, params):
            return masked
    return make_conninfo(
        **{k: MASK if k in SECRET_KEYS and v else str(v) for k, v in params.items()}
    )


def unparsable_dsn(dsn: str) -> str:
    """Why a DSN libpq rejects cannot be used, without libpq's words: they quote the DSN."""
    return (
        f"invalid DSN {mask_password(dsn)}: libpq cannot parse it (not shown, it may hold a "
        "password); check its quoting and percent-encoding (%XX, no %00)"
    )


def _mask_url(url: str) -> str:
    """The URL in its own spelling, with the user-info password and secret query values masked.

    libpq takes user info up to the first ``@`` before any ``/``, and the password
    after the first ``:`` in it; query keys are percent-decoded.
    """
    scheme, rest = url.split("://", 1)
    slash = rest.find("/")
    at = rest.find("@", 0, slash if slash >= 0 else len(rest))
    if at >= 0 and ":" in rest[:at]:
        rest = f"{rest[: rest.index(':')]}:{MASK}{rest[at:]}"
    head, query_mark, query = rest.partition("?")
    if query_mark:
        pairs = [
            f"{key}={MASK}" if unquote(key) in SECRET_KEYS else f"{key}{eq}{value}"
            for key, eq, value in (pair.partition("=") for pair in query.split("&"))
        ]
        rest = f"{head}?{'&'.join(pairs)}"
    return f"{scheme}://{rest}"


def _only_masked_secrets(masked: str, original: dict[str, Any]) -> bool:
    """True when libpq reads ``***`` for every secret the original DSN held."""
    try:
        params = conninfo_to_dict(masked)
    except psycopg.ProgrammingError:
        return False
    return all(params.get(k) == MASK for k in SECRET_KEYS if original.get(k))


def connect(
    dsn: str, *, wait: float = 0, autocommit: bool = True
) -> psycopg.Connection[tuple[Any, ...]]:
    """Open the run's connection, retrying for up to ``wait`` seconds (containers start first).

    ``prepare_threshold=None``: never prepare statements, so PgBouncer in
    transaction-pooling mode cannot hand us a server connection that lacks them.
    """
    deadline = time.monotonic() + max(0.0, wait)
    delay = 0.25
    while True:
        try:
            return psycopg.connect(
                dsn,
                autocommit=autocommit,
                prepare_threshold=None,
                fallback_application_name="sqlrunner",  # the DSN's own name wins
            )
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
        except psycopg.ProgrammingError:
            raise ConnectionFailed(unparsable_dsn(dsn)) from None


def _is_final(exc: psycopg.OperationalError) -> bool:
    """Wrong password or unknown database will not fix themselves by waiting."""
    text = str(exc)
    return "password authentication failed" in text or (
        "database" in text and "does not exist" in text
    )


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return "; ".join(lines)[:400]
