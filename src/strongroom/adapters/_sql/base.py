"""What every SQL record kind builds on: the engine and its lifecycle, migrating on open, and
`_read` / `_write`, which run one transaction under `map_db_errors`; plus the small statement
runners and the body parser that the record-kind modules share.

An `Operation` is a plain synchronous function of a sync `Connection`: the whole transaction
(BEGIN, every statement, COMMIT) runs on a worker thread in one hop from the event loop
(`run_in_thread`), instead of one loop-to-thread round trip per statement.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from abc import abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from typing import Any, Final, Self, TypeAlias, TypeVar

import pydantic
from sqlalchemy import Column, Executable, Row, Select, Table, inspect, literal, tuple_
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine

from strongroom.adapters._sql.errors import map_db_errors
from strongroom.adapters._sql.schema import (
    current_revisions,
    known_revisions,
    schema_heads,
    upgrade_to_head,
)
from strongroom.errors import (
    IntegrityError,
    NotFound,
    StorageIOError,
    UnsupportedFormat,
    ValidationError,
)
from strongroom.ports.metadata import MetadataStore
from strongroom.retry import Backoff

__all__ = [
    "MAX_RECORD_CHARS",
    "PAGE_CHARS",
    "PAGE_SIZE",
    "TRANSACTION_BACKOFF",
    "AnyRow",
    "Operation",
    "SqlStoreBase",
    "check_limit",
    "fetch_all",
    "fetch_first",
    "fetch_scalar",
    "parse_body",
    "rows_within_budget",
    "run_in_thread",
]

T = TypeVar("T")


def _survey(conn: Connection) -> tuple[frozenset[str], frozenset[str]]:
    """The database's Alembic revisions and, unless they are the shipped heads (the common
    open), its table names (default schema); read only."""
    revisions = current_revisions(conn)
    if revisions == schema_heads():
        return frozenset(), revisions
    return frozenset(inspect(conn).get_table_names()), revisions


M = TypeVar("M", bound=pydantic.BaseModel)

# One transaction's work, run on a worker thread with the transaction already begun.
Operation = Callable[[Connection], T]
AnyRow: TypeAlias = Row[*tuple[Any, ...]]

# Rows fetched per round trip by the streaming iterators (each page is its own short read
# transaction, so a slow consumer never pins a snapshot or blocks a WAL checkpoint).
PAGE_SIZE: Final = 500

# verify reads every stored body, and its memory stays bounded whatever a row holds: a page is
# at most `PAGE_SIZE` rows and `PAGE_CHARS` body characters (and at least one row), and a body
# over `MAX_RECORD_CHARS` is reported without being read. strongroom itself never writes a
# body that large (an audit write binds at most `MAX_BINDINGS_PER_ENTRY` records per entry).
MAX_RECORD_CHARS: Final = 16 << 20
PAGE_CHARS: Final = 4 << 20

# How a backend re-runs a whole transaction the database refused for now (SQLite busy,
# PostgreSQL deadlock or serialization failure): full jitter below 10 ms doubling up to 2 s;
# each store replaces ``attempts`` with its ``max_attempts``.
TRANSACTION_BACKOFF: Final = Backoff(attempts=8, base=0.01, cap=2.0)


def rows_within_budget(sizes: Iterable[int | None]) -> int:
    """How many of the rows whose body lengths are ``sizes`` (in order) make one page: up to
    and including the row that reaches `PAGE_CHARS`; a body over `MAX_RECORD_CHARS` costs
    nothing (it is not read)."""
    count = total = 0
    for size in sizes:
        count += 1
        if size is not None and size <= MAX_RECORD_CHARS:
            total += size
        if total >= PAGE_CHARS:
            break
    return count


def parse_body(model: type[M], body: str, kind: str, subject: str) -> M:
    try:
        return model.model_validate_json(body)
    except pydantic.ValidationError as exc:
        raise IntegrityError(
            f"stored {kind} {subject} does not validate: the row was edited or corrupted",
            kind=kind,
            subject=subject,
            reason="invalid_stored_record",
        ) from exc


def check_limit(limit: int, operation: str) -> None:
    if limit < 1:
        raise ValidationError(
            f"{operation}: limit must be at least 1", operation=operation, field="limit"
        )


# ``params`` bind the ``bindparam`` placeholders of a statement built once at import: a
# statement reused that way skips SQLAlchemy's per-call construction and cache-key work.


def fetch_all(stmt: Executable, params: Mapping[str, Any] | None = None) -> Operation[list[AnyRow]]:
    def op(conn: Connection) -> list[AnyRow]:
        return list(conn.execute(stmt, params).all())

    return op


def fetch_first(
    stmt: Executable, params: Mapping[str, Any] | None = None
) -> Operation[AnyRow | None]:
    def op(conn: Connection) -> AnyRow | None:
        return conn.execute(stmt, params).first()

    return op


def fetch_scalar(stmt: Executable, params: Mapping[str, Any] | None = None) -> Operation[Any]:
    def op(conn: Connection) -> Any:
        return conn.scalar(stmt, params)

    return op


async def run_in_thread(fn: Callable[..., T], *args: Any, executor: Executor | None = None) -> T:
    """``fn(*args)`` on a worker thread (the loop's default executor unless given), with the
    caller's context variables.

    A thread cannot be interrupted: if the caller is cancelled, this still waits for ``fn``
    to finish (its transaction commits or rolls back) before the cancellation propagates, so
    a lock the caller holds (the SQLite write lock) is never released while its transaction
    is still running.
    """
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args)
    future = loop.run_in_executor(executor, call)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if not future.done():
            await asyncio.wait([future])
        raise


class SqlStoreBase(MetadataStore):
    """The engine, lifecycle and transactions of `SqlMetadataStore`. Subclasses supply the
    engine and the transaction discipline (`_create_engine`, optionally `_prepare` and
    `_run_transaction`)."""

    backend: str = "sql"

    def __init__(self, *, create: bool = True) -> None:
        self._engine: Engine | None = None
        self._open_lock = asyncio.Lock()
        self.allow_create = create
        """False: `open` refuses a database without a strongroom schema (`NotFound`) instead of
        creating the schema in it."""
        self.schema_created = False
        """Set by `open` when it created the schema in an empty database (what ``strongroom
        init`` reports as created rather than opened)."""

    # -- backend hooks ----------------------------------------------------------------------

    @abstractmethod
    def _create_engine(self) -> Engine:
        """A new (sync) engine for this store (connections are made lazily). Its connections
        must be usable from any worker thread, one thread at a time."""

    async def _prepare(self, engine: Engine) -> None:
        """Runs once in `open` before migrations (create directories, set file modes...)."""

    def _error_details(self) -> dict[str, Any]:
        """Context attached to every mapped error; must never hold credentials."""
        return {}

    @property
    def location(self) -> str:
        """Where the records live, for messages (never with a credential)."""
        return self.backend

    async def _store_exists(self) -> bool:
        """Whether there is a database to look into yet (SQLite: the file)."""
        return True

    def _lock_for_migration(self, conn: Connection) -> None:
        """Make concurrent openers migrate one at a time, inside the migration transaction.
        SQLite needs nothing (its write transaction is exclusive); PostgreSQL would take a
        transaction-scoped advisory lock here."""

    async def _run_transaction(self, fn: Operation[T], *, write: bool) -> T:
        """Run ``fn`` in one transaction on a worker thread; a backend adds locking and
        retries here."""
        engine = self._require_engine()

        def transaction() -> T:
            with engine.connect() as conn, conn.begin():
                return fn(conn)

        return await run_in_thread(transaction)

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        async with self._open_lock:  # a second caller waits until the schema is ready
            if self._engine is not None:
                return
            engine = self._create_engine()
            self._engine = engine
            try:
                # Before `_prepare`, which may write (SQLite's WAL mode).
                current = await self._check_vault()
                await self._prepare(engine)
                await self._migrate(current)
            except BaseException:
                self._engine = None
                await run_in_thread(engine.dispose)
                raise

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await run_in_thread(engine.dispose)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _check_vault(self) -> frozenset[str] | None:
        """Refuse, having only read, a database that is not a strongroom vault: another
        program's tables stay as they are (``not_a_vault``); an empty database gets a schema
        only when the store may create one (else `NotFound`, ``no_vault``). Returns the
        schema revisions it read (None: no database yet), so `_migrate` need not read them
        again."""
        if not await self._store_exists():
            if not self.allow_create:
                raise self._no_vault()
            return None
        try:
            tables, revisions = await self._read("open", _survey)
        except StorageIOError as exc:
            if exc.details.get("reason") != "not_a_database":
                raise
            raise UnsupportedFormat(
                f"{self.location} is not a strongroom vault (not a database file); nothing "
                "was changed in it",
                operation="open",
                backend=self.backend,
                reason="not_a_vault",
                **self._error_details(),
            ) from None
        if revisions & known_revisions() or (revisions and "runs" in tables):
            return revisions  # ours (a newer strongroom's is reported by `_migrate`)
        if tables:
            shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
            raise UnsupportedFormat(
                f"{self.location} is not a strongroom vault: it holds other tables ({shown}); "
                "nothing was changed in it. Name a strongroom vault with --vault, or a new "
                "directory / an empty database to create one with `strongroom init`",
                operation="open",
                backend=self.backend,
                reason="not_a_vault",
                tables=len(tables),
                **self._error_details(),
            )
        if not self.allow_create:
            raise self._no_vault()
        return revisions

    def _no_vault(self) -> NotFound:
        return NotFound(
            f"no strongroom vault in {self.location}: create one with `strongroom init` "
            "(or check --vault)",
            operation="open_vault",
            backend=self.backend,
            reason="no_vault",
            **self._error_details(),
        )

    async def _migrate(self, current: frozenset[str] | None = None) -> None:
        """Bring the schema to head; ``current``: the revisions `_check_vault` read."""
        heads = schema_heads()
        if current is None:
            current = await self._read("open", current_revisions)
        if current == heads:
            return  # the common case: one indexed read, no write lock
        if not current:
            self.schema_created = True
        unknown = current - known_revisions()
        if unknown:
            raise UnsupportedFormat(
                "the records database was migrated by a newer strongroom "
                f"(schema revision {', '.join(sorted(unknown))}); upgrade strongroom to open it",
                operation="open",
                backend=self.backend,
                reason="schema_too_new",
                **self._error_details(),
            )

        def upgrade(conn: Connection) -> None:
            self._lock_for_migration(conn)
            upgrade_to_head(conn)

        await self._write("migrate", upgrade)

    def _not_found(self, operation: str, message: str, **details: Any) -> NotFound:
        return NotFound(message, operation=operation, backend=self.backend, **details)

    def _require_engine(self) -> Engine:
        if self._engine is None:
            raise StorageIOError(
                "the records store is not open (call open() first)",
                backend=self.backend,
                reason="not_open",
            )
        return self._engine

    async def _read(self, operation: str, fn: Operation[T], **details: Any) -> T:
        with map_db_errors(operation, self.backend, **self._error_details(), **details):
            return await self._run_transaction(fn, write=False)

    async def _write(self, operation: str, fn: Operation[T], **details: Any) -> T:
        with map_db_errors(operation, self.backend, **self._error_details(), **details):
            return await self._run_transaction(fn, write=True)

    @staticmethod
    def _upsert(
        conn: Connection, table: Table, values: Mapping[str, Any], key: Sequence[str]
    ) -> Executable:
        """INSERT ... ON CONFLICT (key) DO UPDATE: atomic insert-or-replace on both dialects."""
        dialect = conn.dialect.name
        changed = [name for name in values if name not in key]
        if dialect == "sqlite":
            sq = sqlite_dialect.insert(table).values(dict(values))
            return sq.on_conflict_do_update(
                index_elements=list(key), set_={name: sq.excluded[name] for name in changed}
            )
        if dialect == "postgresql":
            pg = postgresql.insert(table).values(dict(values))
            return pg.on_conflict_do_update(
                index_elements=list(key), set_={name: pg.excluded[name] for name in changed}
            )
        raise UnsupportedFormat(f"no upsert for SQL dialect {dialect!r}", backend=dialect)

    @staticmethod
    def _insert_if_absent(
        conn: Connection, table: Table, values: Mapping[str, Any], key: Sequence[str]
    ) -> Executable:
        """INSERT ... ON CONFLICT (key) DO NOTHING: atomic insert-if-absent on both dialects."""
        dialect = conn.dialect.name
        if dialect == "sqlite":
            return (
                sqlite_dialect.insert(table)
                .values(dict(values))
                .on_conflict_do_nothing(index_elements=list(key))
            )
        if dialect == "postgresql":
            return (
                postgresql.insert(table)
                .values(dict(values))
                .on_conflict_do_nothing(index_elements=list(key))
            )
        raise UnsupportedFormat(f"no insert-if-absent for SQL dialect {dialect!r}", backend=dialect)

    async def _keyset_pages(
        self, base: Select[*tuple[Any, ...]], keys: Sequence[Column[Any]]
    ) -> AsyncIterator[AnyRow]:
        """Every row of ``base`` in key order, one short read transaction per page, so a slow
        consumer never pins a snapshot (or, on SQLite, holds back WAL checkpoints)."""
        after: tuple[Any, ...] | None = None
        while True:
            stmt = base.order_by(*keys).limit(PAGE_SIZE)
            if after is not None:
                bound = [literal(value, key.type) for value, key in zip(after, keys, strict=True)]
                stmt = stmt.where(tuple_(*keys) > tuple_(*bound))
            rows = await self._read("iterate", fetch_all(stmt))
            for row in rows:
                yield row
            if len(rows) < PAGE_SIZE:
                return
            after = tuple(getattr(rows[-1], key.name) for key in keys)
