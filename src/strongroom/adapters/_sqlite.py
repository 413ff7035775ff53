"""SQLite backend of the records port: the engine, the pragmas and the single-writer discipline.

Everything else (tables, queries, error mapping) is the dialect-neutral ``_sql`` package.

Why no caller ever sees "database is locked":
1. WAL journal: readers never block the writer and the writer never blocks readers.
2. One writer at a time, in two layers: an ``asyncio.Lock`` per store serializes this
   process's write transactions (no pool connections fighting over the file lock), and every
   write transaction starts with ``BEGIN IMMEDIATE``, which takes SQLite's write lock up front.
   A deferred ``BEGIN`` would take it at the first write, and a transaction that read first
   then fails with SQLITE_BUSY without waiting when another process committed in between.
3. ``busy_timeout`` (60 s) makes SQLite itself wait for the lock held by another process.
4. A bounded retry with jittered exponential backoff (`strongroom.retry`) re-runs the whole
   transaction on the rare SQLITE_BUSY that slips through (WAL recovery, a starved writer
   after the timeout).

Each transaction is one hop to a worker thread on a sync ``sqlite+pysqlite`` engine (see the
``_sql`` package): write transactions on the store's own writer thread (they are serialized
anyway, and the thread keeps its connection warm), reads on the loop's default executor. The
pool's connections are opened with ``check_same_thread=False`` so any worker thread may use
them; a checked-out connection belongs to one transaction, hence to one thread at a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias, TypeVar

import sqlalchemy.exc as sa_exc
from sqlalchemy import URL, create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import ConnectionPoolEntry

from strongroom.adapters._sql import Operation, SqlMetadataStore, map_db_errors
from strongroom.adapters._sql.base import TRANSACTION_BACKOFF, run_in_thread
from strongroom.errors import map_os_errors
from strongroom.ports import StoreCapabilities
from strongroom.retry import retry_async

__all__ = ["SqliteMetadataStore", "open_sqlite_store"]

T = TypeVar("T")

# Execution option read by the "begin" hook: how this connection's transaction starts.
_BEGIN_OPTION: Final = "strongroom_sqlite_begin"
BeginMode: TypeAlias = Literal["deferred", "immediate", "none"]
_BEGIN_STATEMENTS: Final[Mapping[BeginMode, str | None]] = {
    "deferred": "BEGIN",
    "immediate": "BEGIN IMMEDIATE",
    "none": None,  # autocommit: for statements that refuse to run in a transaction
}

_BUSY_ERROR_NAMES: Final = frozenset(
    {"SQLITE_BUSY", "SQLITE_BUSY_RECOVERY", "SQLITE_BUSY_SNAPSHOT", "SQLITE_BUSY_TIMEOUT"}
    | {"SQLITE_LOCKED", "SQLITE_LOCKED_SHAREDCACHE"}
)


def _is_busy(exc: sa_exc.DBAPIError) -> bool:
    name = getattr(exc.orig, "sqlite_errorname", None)
    if isinstance(name, str):
        return name in _BUSY_ERROR_NAMES
    message = str(exc.orig).lower()
    return "database is locked" in message or "database table is locked" in message


def _retry_busy(exc: Exception) -> bool:
    return isinstance(exc, sa_exc.DBAPIError) and _is_busy(exc)


class SqliteMetadataStore(SqlMetadataStore):
    """Records in one SQLite file (WAL), safe for many processes on one machine."""

    backend = "sqlite"
    capabilities = StoreCapabilities(reopen_by_url=True, shared=True)

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout: float = 60.0,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        max_attempts: int = 8,
        create: bool = True,
    ) -> None:
        """``create=False``: refuse (`NotFound`) a file without a strongroom schema instead
        of creating one. ``busy_timeout``: seconds SQLite waits for another process's write lock;
        ``max_attempts``: how many times a transaction is run when it still finds the
        database busy (with jittered exponential backoff in between)."""
        super().__init__(create=create)
        self.path = Path(path).absolute()
        self._busy_timeout = busy_timeout
        # NORMAL in WAL mode: a commit is durable once written to the WAL, which survives any
        # crash of the application or of the OS process; only a power loss or kernel crash
        # can lose the last transactions before a checkpoint, and never corrupts the file.
        # FULL adds an fsync per commit for callers who need power-loss durability.
        self._synchronous = synchronous
        self._backoff = dataclasses.replace(TRANSACTION_BACKOFF, attempts=max_attempts)
        self._write_lock = asyncio.Lock()
        self._writer: ThreadPoolExecutor | None = None  # started on the first write
        # The writer thread's own connection, kept between transactions: checking one out of
        # the pool (a new `Connection`, its event dispatch, the pool's reset) cost a fifth
        # of a small write's CPU. Used and closed on that thread only.
        self._writer_conn: Connection | None = None

    def __repr__(self) -> str:
        return f"SqliteMetadataStore({str(self.path)!r})"

    def _error_details(self) -> dict[str, Any]:
        # A local file path is useful context and holds no secret.
        return {"path": str(self.path)}

    @property
    def location(self) -> str:
        return str(self.path)

    async def _store_exists(self) -> bool:
        return await asyncio.to_thread(self.path.exists)

    def _create_engine(self) -> Engine:
        engine = create_engine(
            URL.create("sqlite+pysqlite", database=str(self.path)),
            # Most recently returned connection first: the writer thread keeps reusing a
            # warm connection instead of cycling through the whole pool.
            pool_use_lifo=True,
            connect_args={
                # sqlite3's own busy timeout, in force from the moment the file is opened.
                "timeout": self._busy_timeout,
                # Transactions run on worker threads; the pool hands a connection to one
                # transaction (one thread) at a time.
                "check_same_thread": False,
            },
        )
        busy_ms = int(self._busy_timeout * 1000)
        synchronous = self._synchronous

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
            # Take BEGIN away from the sqlite3 module (it would skip it before SELECTs and
            # DDL); the "begin" hook below emits the right BEGIN for each transaction.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
                cursor.execute("PRAGMA foreign_keys = ON")
                # A REPLACE that removes a row fires its DELETE trigger too (the append-only
                # guards of migration 0004 would not see it otherwise).
                cursor.execute("PRAGMA recursive_triggers = ON")
                cursor.execute(f"PRAGMA synchronous = {synchronous}")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            mode = conn.get_execution_options().get(_BEGIN_OPTION, "deferred")
            statement = _BEGIN_STATEMENTS[mode]
            if statement is not None:
                conn.exec_driver_sql(statement)

        return engine

    async def open(self) -> None:
        try:
            await super().open()
        except BaseException:
            if self._engine is None:
                if self._writer is not None:
                    await run_in_thread(self._drop_writer_connection, executor=self._writer)
                self._stop_writer()
            raise

    async def close(self) -> None:
        try:
            if self._writer is not None:
                await run_in_thread(self._drop_writer_connection, executor=self._writer)
            await super().close()
        finally:
            self._stop_writer()

    def _writer_connection(self, engine: Engine) -> Connection:
        """On the writer thread: its connection, opened again if it was dropped or broke."""
        conn = self._writer_conn
        if conn is None or conn.closed or conn.invalidated:
            conn = self._writer_conn = engine.connect()
        return conn

    def _drop_writer_connection(self) -> None:
        conn, self._writer_conn = self._writer_conn, None
        if conn is not None:
            conn.close()

    def _writer_thread(self) -> ThreadPoolExecutor:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="strongroom-sqlite-writer"
            )
        return self._writer

    def _stop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.shutdown(wait=False)  # queued work still runs; the thread then exits

    async def _prepare(self, engine: Engine) -> None:
        with map_os_errors("open", backend=self.backend, path=str(self.path)):
            await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)

        def enable_wal(conn: Connection) -> None:
            # journal_mode is persistent in the file; setting it again is a cheap no-op.
            conn.exec_driver_sql("PRAGMA journal_mode = WAL")

        # Outside a transaction: SQLite refuses to change the journal mode inside one.
        with map_db_errors("open", self.backend, **self._error_details()):
            await self._with_retry(enable_wal, "none", serialize=True)

    async def _run_transaction(self, fn: Operation[T], *, write: bool) -> T:
        return await self._with_retry(fn, "immediate" if write else "deferred", serialize=write)

    async def _with_retry(self, fn: Operation[T], begin: BeginMode, *, serialize: bool) -> T:
        async def once() -> T:
            if serialize:
                # The backoff pause is outside the lock: other writers go on meanwhile.
                async with self._write_lock:
                    return await self._attempt(fn, begin, self._writer_thread())
            return await self._attempt(fn, begin, None)

        return await retry_async(once, self._backoff, retryable=_retry_busy)

    async def _attempt(
        self, fn: Operation[T], begin: BeginMode, executor: ThreadPoolExecutor | None
    ) -> T:
        """One try of the whole transaction (BEGIN, ``fn``, COMMIT) in one worker-thread hop
        (on ``executor``, or the loop's default one)."""
        engine = self._require_engine()

        def transaction() -> T:
            if executor is None:
                with engine.connect() as conn:
                    conn.execution_options(**{_BEGIN_OPTION: begin})
                    with conn.begin():
                        return fn(conn)
            conn = self._writer_connection(engine)
            try:
                conn.execution_options(**{_BEGIN_OPTION: begin})
                with conn.begin():
                    return fn(conn)
            except BaseException:
                if conn.in_transaction() or conn.invalidated:
                    self._drop_writer_connection()  # never reuse one in doubt
                raise

        return await run_in_thread(transaction, executor=executor)


async def open_sqlite_store(
    path: Path,
    *,
    busy_timeout: float = 60.0,
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    max_attempts: int = 8,
) -> SqliteMetadataStore:
    """Create (or migrate) and open the SQLite records store at ``path``; close it when done."""
    store = SqliteMetadataStore(
        path, busy_timeout=busy_timeout, synchronous=synchronous, max_attempts=max_attempts
    )
    await store.open()
    return store
