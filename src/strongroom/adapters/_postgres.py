"""PostgreSQL backend of the records port: the engine, its pool, and the transaction discipline
that keeps many writers on many machines correct.

Everything else (tables, queries, error mapping) is the dialect-neutral ``_sql`` package; each
transaction is one synchronous `Operation` run whole on a worker thread on a sync
``postgresql+psycopg`` engine (psycopg 3).

Why concurrent writers stay correct without a global lock (SQLite serializes writers;
PostgreSQL runs them side by side):

1. Writes run at READ COMMITTED, and every compare-and-set is decided by the database, never
   by an earlier read: a run update is ``UPDATE ... WHERE version = expected`` (a concurrent
   updater waits on the row lock, then re-checks the condition against the new version); a
   snapshot revision, a log or audit chain position (``seq``), a checkpoint, an artifact id
   are primary keys, so of two writers that read the same head exactly one insert succeeds
   and the other gets a unique violation, mapped to `Conflict` (the services re-read the head
   and retry, or report the stale revision). A chain can therefore never fork.
2. Reads run at REPEATABLE READ, READ ONLY: a read made of several statements (a run page and
   its total) sees one snapshot, and a read-only transaction never fails serialization.
3. A transaction the server aborted as a deadlock victim or a serialization failure
   (SQLSTATE 40P01 / 40001; the latter also on a hot standby) is re-run whole with jittered
   exponential backoff (`strongroom.retry`), up to ``max_attempts`` times: the server rolled
   it back, so nothing of it is applied twice. A read whose connection broke is re-run the
   same way; a write whose connection broke is not (its COMMIT may have landed), it is
   `StorageIOError`.
4. Concurrent first opens migrate one at a time: the migration transaction starts with a
   transaction-scoped advisory lock, and whoever waited finds the schema at head.

Connections: a QueuePool (``pool_size`` + ``max_overflow``, LIFO so idle extras can time
out), checked with a ping before use (``pool_pre_ping``) so a server restart costs no failed
call. Transactions run on the store's own thread pool, one thread per pooled connection, so
they never queue behind file I/O on the loop's default executor.

Secrets: the password is in the engine's URL only. ``repr``, error messages and error
details name the host, port and database, never the user's password (see `safe_url`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

import sqlalchemy.exc as sa_exc
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Connection, Engine, make_url

from strongroom.adapters._sql import Operation, SqlMetadataStore
from strongroom.adapters._sql.base import TRANSACTION_BACKOFF, run_in_thread
from strongroom.errors import ValidationError
from strongroom.ports import StoreCapabilities
from strongroom.retry import retry_async
from strongroom.secrets import safe_url

__all__ = ["PostgresMetadataStore", "open_postgres_store"]

T = TypeVar("T")

DRIVER: Final = "postgresql+psycopg"
_ACCEPTED_DRIVERS: Final = frozenset({"postgresql", "postgres", DRIVER})

# Store options that may also be given in the URL query (``?pool_size=10``); they are taken out
# of the URL before it reaches psycopg. Every other query parameter is libpq's (sslmode,
# connect_timeout, application_name, options...) and passes through unchanged.
_POOL_OPTIONS: Final = (
    "pool_size",
    "max_overflow",
    "pool_timeout",
    "pool_recycle",
    "pool_pre_ping",
)
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})

# libpq defaults we change when the URL does not say otherwise: a dead host fails in seconds
# instead of the OS's TCP timeout, and pg_stat_activity names the client.
_CONNECT_DEFAULTS: Final[Mapping[str, str]] = {
    "connect_timeout": "10",
    "application_name": "strongroom",
}

# Transaction aborted by the server and rolled back whole: safe to run again.
_RETRY_SQLSTATES: Final = frozenset({"40001", "40P01"})  # serialization failure, deadlock

_READ_OPTIONS: Final[Mapping[str, Any]] = {
    "isolation_level": "REPEATABLE READ",
    "postgresql_readonly": True,
}

# pg_advisory_xact_lock key of schema migrations: a fixed 64-bit number derived from a name,
# so it does not collide with an application's own small integer keys.
MIGRATION_LOCK_KEY: Final = int.from_bytes(
    hashlib.sha256(b"strongroom.schema-migration").digest()[:8], "big", signed=True
)


# pg_advisory_xact_lock key that orders audit appends (held from the append to COMMIT).
AUDIT_LOCK_KEY: Final = int.from_bytes(
    hashlib.sha256(b"strongroom.audit-chain").digest()[:8], "big", signed=True
)


_AUDIT_LOCK: Final = text("SELECT pg_advisory_xact_lock(:key)")


def _sqlstate(exc: sa_exc.DBAPIError) -> str | None:
    value = getattr(exc.orig, "sqlstate", None)
    return value if isinstance(value, str) else None


def _is_retryable(exc: sa_exc.DBAPIError, *, write: bool) -> bool:
    if _sqlstate(exc) in _RETRY_SQLSTATES:
        return True
    return not write and exc.connection_invalidated


def _invalid_option(name: str, value: object, expected: str, url: str) -> ValidationError:
    return ValidationError(
        f"PostgreSQL store option {name}={value!r} is invalid: expected {expected}",
        operation="open",
        backend="postgresql",
        reason="invalid_option",
        option=name,
        url=url,
    )


class PostgresMetadataStore(SqlMetadataStore):
    """Records in a PostgreSQL database, safe for many processes on many machines.

    ``url``: ``postgresql://user[:password]@host[:port]/database[?param=value...]``
    (``postgres://`` and ``postgresql+psycopg://`` too). The database must exist; the tables
    are created by the migrations on first open. Pool settings come from the keyword
    arguments, else from the URL query (``?pool_size=10&max_overflow=0&pool_timeout=5&
    pool_recycle=1800&pool_pre_ping=false``), else the defaults below; other query parameters
    are handed to libpq.
    """

    backend = "postgresql"
    capabilities = StoreCapabilities(reopen_by_url=True, shared=True, database_roles=True)

    def __init__(
        self,
        url: str | URL,
        *,
        pool_size: int | None = None,
        max_overflow: int | None = None,
        pool_timeout: float | None = None,
        pool_recycle: int | None = None,
        pool_pre_ping: bool | None = None,
        max_attempts: int = 8,
        create: bool = True,
    ) -> None:
        """``create=False``: refuse (`NotFound`) a database without strongroom's tables
        instead of creating them. ``pool_size`` (default 5) connections are kept open, up to
        ``max_overflow`` (default 10) more are opened under load; a transaction waits at most
        ``pool_timeout`` seconds (default 30) for a free one (then `OperationTimeout`).
        ``pool_recycle``: seconds after which a connection is replaced (default: never);
        ``pool_pre_ping`` (default on): check a pooled connection before each transaction.
        ``max_attempts``: runs of a transaction the server aborted (deadlock, serialization
        failure) before the error is raised."""
        super().__init__(create=create)
        parsed = self._parse_url(url)
        query = parsed.query
        self.redacted_url = safe_url(parsed.render_as_string(hide_password=True))

        def option(name: str, given: Any, default: Any, convert: Any, expected: str) -> Any:
            if given is not None:
                raw = given
            elif name in query:
                raw = query[name]
                if isinstance(raw, tuple):
                    raw = raw[-1]
            else:
                return default
            try:
                return convert(raw)
            except (TypeError, ValueError):
                raise _invalid_option(name, raw, expected, self.redacted_url) from None

        self.pool_size: int = option("pool_size", pool_size, 5, int, "an integer >= 1")
        self.max_overflow: int = option("max_overflow", max_overflow, 10, int, "an integer >= 0")
        self.pool_timeout: float = option(
            "pool_timeout", pool_timeout, 30.0, float, "a number of seconds > 0"
        )
        self.pool_recycle: int = option(
            "pool_recycle", pool_recycle, -1, int, "an integer number of seconds (-1: never)"
        )
        self.pool_pre_ping: bool = option(
            "pool_pre_ping", pool_pre_ping, True, _parse_bool, "true or false"
        )
        if self.pool_size < 1:
            raise _invalid_option("pool_size", self.pool_size, "an integer >= 1", self.redacted_url)
        if self.max_overflow < 0:
            raise _invalid_option(
                "max_overflow", self.max_overflow, "an integer >= 0", self.redacted_url
            )
        if not self.pool_timeout > 0:
            raise _invalid_option(
                "pool_timeout", self.pool_timeout, "a number of seconds > 0", self.redacted_url
            )
        if max_attempts < 1:
            raise _invalid_option(
                "max_attempts", max_attempts, "an integer >= 1", self.redacted_url
            )
        self._backoff = dataclasses.replace(TRANSACTION_BACKOFF, attempts=max_attempts)
        self._url = parsed.difference_update_query(_POOL_OPTIONS)
        self._executor: ThreadPoolExecutor | None = None  # started by open()

    @staticmethod
    def _parse_url(url: str | URL) -> URL:
        try:
            parsed = make_url(url)
        except (sa_exc.ArgumentError, ValueError):
            raise ValidationError(
                "not a valid PostgreSQL URL (expected postgresql://user@host:5432/database)",
                operation="open",
                backend="postgresql",
                reason="invalid_url",  # and no echo of it: the text may hold a password
            ) from None
        if parsed.drivername not in _ACCEPTED_DRIVERS:
            raise ValidationError(
                f"unsupported PostgreSQL URL scheme {parsed.drivername!r}: use postgresql:// "
                f"(the driver is psycopg 3, {DRIVER}://)",
                operation="open",
                backend="postgresql",
                reason="unsupported_scheme",
                scheme=parsed.drivername,
            )
        return parsed.set(drivername=DRIVER)

    @property
    def max_connections(self) -> int:
        """The most connections this store opens at once (and its worker threads)."""
        return self.pool_size + self.max_overflow

    def __repr__(self) -> str:
        return f"PostgresMetadataStore({self.redacted_url!r})"

    @property
    def location(self) -> str:
        return f"database {self._url.database} on {self._url.host}:{self._url.port or 5432}"

    def _error_details(self) -> dict[str, Any]:
        # Where the database is, never who logs in with what: no user, no password, no query.
        return {"host": self._url.host, "port": self._url.port, "database": self._url.database}

    def _create_engine(self) -> Engine:
        connect_args = {k: v for k, v in _CONNECT_DEFAULTS.items() if k not in self._url.query}
        return create_engine(
            self._url,
            pool_size=self.pool_size,
            max_overflow=self.max_overflow,
            pool_timeout=self.pool_timeout,
            pool_recycle=self.pool_recycle,
            pool_pre_ping=self.pool_pre_ping,
            # Most recently returned connection first: a quiet store keeps reusing a few warm
            # connections and lets the others age out.
            pool_use_lifo=True,
            # Explicit, whatever default_transaction_isolation the server was given.
            isolation_level="READ COMMITTED",
            connect_args=connect_args,
        )

    def _lock_for_migration(self, conn: Connection) -> None:
        # Released by the migration transaction's COMMIT or ROLLBACK (also if we are killed).
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})

    def _lock_audit(self, conn: Connection) -> None:
        # Taken as the last step of a write: held only from the audit append to COMMIT.
        conn.execute(_AUDIT_LOCK, {"key": AUDIT_LOCK_KEY})

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.max_connections, thread_name_prefix="strongroom-postgres"
            )
        try:
            await super().open()
        except BaseException:
            if self._engine is None:
                self._stop_executor()
            raise

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            self._stop_executor()

    def _stop_executor(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)  # queued work still runs; the threads then exit

    # -- transactions -----------------------------------------------------------------------

    async def _run_transaction(self, fn: Operation[T], *, write: bool) -> T:
        engine = self._require_engine()
        executor = self._executor

        def transaction() -> T:
            with engine.connect() as conn:
                if not write:
                    conn.execution_options(**_READ_OPTIONS)
                with conn.begin():
                    return fn(conn)

        def retryable(exc: Exception) -> bool:
            return isinstance(exc, sa_exc.DBAPIError) and _is_retryable(exc, write=write)

        return await retry_async(
            lambda: run_in_thread(transaction, executor=executor),
            self._backoff,
            retryable=retryable,
        )


def _parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(value)


async def open_postgres_store(url: str | URL, **options: Any) -> PostgresMetadataStore:
    """Create (migrate) and open the PostgreSQL records store at ``url`` (the database must
    exist); close it when done. ``options``: see `PostgresMetadataStore`."""
    store = PostgresMetadataStore(url, **options)
    await store.open()
    return store
