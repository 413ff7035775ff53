"""The one place where SQL driver errors become strongroom errors (`map_db_errors`).

Also owns reading the driver's own error codes (SQLite extended codes, PostgreSQL SQLSTATE),
and keeps credentials out of every message that leaves the adapter: a driver's text goes
through `strongroom.secrets.scrub_text` first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import sqlalchemy.exc as sa_exc

from strongroom.errors import (
    Conflict,
    NotFound,
    OperationTimeout,
    PermissionDenied,
    StorageIOError,
    StrongroomError,
    ValidationError,
)
from strongroom.secrets import scrub_text

__all__ = ["map_db_errors"]

_SQLITE_REASONS: Final = {
    "SQLITE_BUSY": "database_locked",
    "SQLITE_LOCKED": "database_locked",
    "SQLITE_CANTOPEN": "cannot_open",
    "SQLITE_FULL": "disk_full",
    "SQLITE_READONLY": "read_only",
    "SQLITE_IOERR": "io_error",
    "SQLITE_CORRUPT": "corrupt",
    "SQLITE_NOTADB": "not_a_database",
    "SQLITE_PERM": "permission_denied",
    "SQLITE_AUTH": "permission_denied",
    "SQLITE_PROTOCOL": "locking_protocol",
    "SQLITE_NOMEM": "out_of_memory",
}

_SQLSTATE_CLASS_REASONS: Final = {
    "08": "connection_failed",
    "28": "authentication_failed",
    "3D": "unknown_database",
    "40": "transaction_rollback",
    "53": "insufficient_resources",
    "57": "operator_intervention",
    "58": "system_error",
    "XX": "internal_error",
}


# libpq reports a failed connection without a SQLSTATE: its message is all there is (patterns
# tried in order on the lower-cased message).
_CONNECT_FAILURE_REASONS: Final = (
    (re.compile(r'database ".*" does not exist'), "unknown_database"),
    (re.compile(r"connection refused"), "connection_refused"),
    (re.compile(r"password authentication failed|no pg_hba\.conf entry"), "authentication_failed"),
    (
        re.compile(r'role ".*" does not exist|password is required|no password supplied'),
        "authentication_failed",
    ),
    (re.compile(r"failed to resolve host|could not translate host name"), "unknown_host"),
    (re.compile(r"too many clients|remaining connection slots"), "too_many_connections"),
    (
        re.compile(r"database system is (starting up|shutting down|in recovery)"),
        "server_unavailable",
    ),
    (
        re.compile(r"server closed the connection|terminating connection|connection is lost"),
        "connection_lost",
    ),
)


def _driver_message(exc: sa_exc.DBAPIError) -> str:
    """The driver's own first line (never SQLAlchemy's str(), which appends SQL and params)."""
    orig = exc.orig if exc.orig is not None else exc
    lines = str(orig).strip().splitlines()
    first = lines[0] if lines else type(orig).__name__
    return scrub_text(first)[:300]


def _sqlite_error_name(exc: sa_exc.DBAPIError) -> str | None:
    name = getattr(exc.orig, "sqlite_errorname", None)
    return name if isinstance(name, str) else None


def _sqlstate(exc: sa_exc.DBAPIError) -> str | None:
    orig = exc.orig
    for attr in ("sqlstate", "pgcode"):
        value = getattr(orig, attr, None)
        if isinstance(value, str) and len(value) == 5:
            return value
    return None


def _constraint_kind(exc: sa_exc.IntegrityError) -> str:
    """'unique', 'foreign_key' or 'other', from the driver's code (message as a fallback)."""
    name = _sqlite_error_name(exc)
    if name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"):
        return "unique"
    if name == "SQLITE_CONSTRAINT_FOREIGNKEY":
        return "foreign_key"
    state = _sqlstate(exc)
    if state == "23505":
        return "unique"
    if state == "23503":
        return "foreign_key"
    message = str(exc.orig).lower()
    if "unique" in message or "duplicate key" in message:
        return "unique"
    if "foreign key" in message:
        return "foreign_key"
    return "other"


def _constraint_name(exc: sa_exc.IntegrityError) -> str | None:
    """The violated constraint: SQLite names its columns, PostgreSQL drivers its name."""
    orig = exc.orig
    for holder in (orig, getattr(orig, "diag", None)):
        name = getattr(holder, "constraint_name", None)
        if isinstance(name, str):
            return name
    message = str(orig)
    if _sqlite_error_name(exc) is not None and "constraint failed: " in message:
        return message.split("constraint failed: ", 1)[1].strip()[:200]
    return None


def _operational_reason(exc: sa_exc.DBAPIError) -> str:
    name = _sqlite_error_name(exc)
    if name is not None:
        for prefix, reason in _SQLITE_REASONS.items():
            if name == prefix or name.startswith(prefix + "_"):
                return reason
        return name.removeprefix("SQLITE_").lower()
    state = _sqlstate(exc)
    if state is not None:
        return _SQLSTATE_CLASS_REASONS.get(state[:2], f"sqlstate_{state.lower()}")
    message = str(exc.orig).lower()
    for pattern, reason in _CONNECT_FAILURE_REASONS:
        if pattern.search(message):
            return reason
    if exc.connection_invalidated:
        return "connection_lost"
    if "locked" in message or "busy" in message:
        return "database_locked"
    if "timeout" in message or "timed out" in message:
        return "timeout"
    return "database_error"


@contextmanager
def map_db_errors(operation: str, backend: str, **details: Any) -> Iterator[None]:
    """Translate driver errors raised inside the block into the strongroom tree, ``from exc``.

    unique violation -> `Conflict`; foreign-key violation -> `NotFound`; other constraint or
    bad value -> `ValidationError`; a database that does not exist (PostgreSQL) -> `NotFound`;
    no pooled connection free in time -> `OperationTimeout`; the server refusing the role
    (SQLSTATE 42501: a privilege, row-level security) -> `PermissionDenied`; anything else
    from the driver
    (connection, locking, disk, corruption) -> `StorageIOError` with a ``reason``. Messages
    carry the driver's first line with URL user-info and password-like pairs removed, never
    SQLAlchemy's statement dump.
    ``details`` (run_id, path of a local database file...) are attached to the error.
    """
    context = {"operation": operation, "backend": backend, **details}
    try:
        yield
    except StrongroomError:
        raise
    except UnicodeEncodeError as exc:  # a lone surrogate in a key the caller passed
        raise ValidationError(
            f"{operation}: a value is not Unicode text (it holds a lone surrogate, e.g. "
            "undecodable bytes from the command line)",
            **{**context, "reason": "not_unicode"},
        ) from exc
    except sa_exc.IntegrityError as exc:
        kind = _constraint_kind(exc)
        found = {**context, "constraint": _constraint_name(exc)}
        if kind == "unique":
            raise Conflict(
                f"{operation}: a record with the same key already exists",
                **{**found, "reason": "unique_violation"},
            ) from exc
        if kind == "foreign_key":
            raise NotFound(
                f"{operation}: a record it refers to does not exist",
                **{**found, "reason": "foreign_key_violation"},
            ) from exc
        raise ValidationError(
            f"{operation}: the record violates a database constraint ({_driver_message(exc)})",
            **{**found, "reason": "constraint_violation"},
        ) from exc
    except sa_exc.DataError as exc:
        raise ValidationError(
            f"{operation}: the database refused a value ({_driver_message(exc)})",
            **{**context, "reason": "invalid_value"},
        ) from exc
    except sa_exc.DBAPIError as exc:
        if _sqlstate(exc) == "42501":
            raise PermissionDenied(
                f"{operation}: the database refused this role: {_driver_message(exc)}",
                **{**context, "reason": "insufficient_privilege"},
            ) from exc
        reason = _operational_reason(exc)
        if reason == "unknown_database":
            raise NotFound(
                f"{operation}: the database does not exist: create it first, or check the URL "
                f"({_driver_message(exc)})",
                **{**context, "reason": reason},
            ) from exc
        raise StorageIOError(
            f"{operation}: database error: {_driver_message(exc)}",
            **{**context, "reason": reason},
        ) from exc
    except sa_exc.TimeoutError as exc:  # the engine's pool, not the driver
        raise OperationTimeout(
            f"{operation}: no database connection became free in time (the connection pool "
            "is exhausted: raise pool_size / max_overflow or lower the concurrency)",
            **{**context, "reason": "pool_timeout"},
        ) from exc
