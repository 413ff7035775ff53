"""What only the PostgreSQL records store promises: the migrations build exactly the declared
schema there too, concurrent openers migrate one at a time, concurrent writers never fork a
chain or lose an update, aborted transactions are retried, the pool is what was asked for, the
run index has an index for every filter, and no error or repr ever shows the password.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from sqlalchemy.engine import Connection, make_url

import test_sql_migrations as migrations
from _pg_fixtures import (
    admin_url,
    create_database,
    drop_database,
    fresh_database,
    libpq_url,
)
from strongroom.adapters._postgres import (
    MIGRATION_LOCK_KEY,
    PostgresMetadataStore,
    open_postgres_store,
)
from strongroom.adapters._sql import encode_run_cursor, map_db_errors, run_index_statements
from strongroom.errors import (
    Conflict,
    NotFound,
    OperationTimeout,
    StorageIOError,
    StrongroomError,
    ValidationError,
)
from strongroom.ids import new_id
from strongroom.models import (
    AuditEntry,
    LogEntry,
    LogLevel,
    LogQuery,
    Run,
    RunQuery,
    RunStatus,
    SnapshotRecord,
)
from strongroom.services.identity import IdentityService

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SECRET = "s3cr3t-PG-XYZ"

# -- the migration drift suite (tests/test_sql_migrations.py), on PostgreSQL --------------------


def _takes_backend(test: object) -> bool:
    code = getattr(test, "__code__", None)
    return code is not None and "backend" in code.co_varnames[: code.co_argcount]


# The backend-parametrised tests; the SQLite-only ones take tmp_path instead.
_DRIFT_TESTS: dict[str, Callable[..., Any]] = {
    name: test
    for name, test in vars(migrations).items()
    if name.startswith("test_") and _takes_backend(test)
}
globals().update(_DRIFT_TESTS)  # collected by pytest as tests of this module


def postgres_schema_backend(databases: list[str]) -> migrations.SchemaBackend:
    password = make_url(admin_url()).password

    def new_database() -> str:
        url = create_database()
        databases.append(url)
        return make_url(url).set(drivername="postgresql+psycopg").render_as_string(False)

    def store_for(url: str) -> PostgresMetadataStore:
        parsed = make_url(url)
        if parsed.password == "***":  # str(engine.url) hides it; the tests pass that along
            parsed = parsed.set(password=password)
        return PostgresMetadataStore(parsed)

    return migrations.SchemaBackend("postgresql", new_database, store_for)


@pytest.fixture
def backend(pg_server: str) -> Iterator[migrations.SchemaBackend]:
    databases: list[str] = []
    made = postgres_schema_backend(databases)
    try:
        yield made
    finally:
        for engine in made.engines:
            engine.dispose()
        for url in databases:
            drop_database(url)


def test_the_drift_suite_runs_here() -> None:
    assert "test_migrations_build_exactly_the_declared_schema" in _DRIFT_TESTS
    assert "test_autogenerate_finds_nothing_to_migrate" in _DRIFT_TESTS
    assert "test_concurrent_first_opens_migrate_once" in _DRIFT_TESTS


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[PostgresMetadataStore]:
    opened = await open_postgres_store(pg_url)
    yield opened
    await opened.close()


def run_record(**fields: object) -> Run:
    return Run.model_validate({"run_id": new_id(), "project": "alpha", "actor": "ada", **fields})


def log_entries(run_id: str, seqs: range, tag: str = "") -> list[LogEntry]:
    return [
        LogEntry(
            run_id=run_id,
            seq=seq,
            timestamp=T0,
            level=LogLevel.INFO,
            event="tick",
            message=tag,
            prev_hash=f"{seq - 1:064x}",
            hash=f"{seq:064x}",
        )
        for seq in seqs
    ]


def audit_entries(seqs: range, actor: str = "ada") -> list[AuditEntry]:
    return [
        AuditEntry(
            seq=seq,
            timestamp=T0,
            event="tool.invoked",
            actor=actor,
            subject_type="run",
            subject_id="r",
            prev_hash=f"{seq - 1:064x}",
            hash=f"{seq:064x}",
        )
        for seq in seqs
    ]


def with_password(url: str, password: str) -> str:
    return make_url(url).set(password=password).render_as_string(hide_password=False)


def rendered(error: BaseException) -> str:
    """Everything an error can show: message, details, repr, and the whole cause chain."""
    parts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    if isinstance(error, StrongroomError):
        parts.append(json.dumps(error.to_dict()))
    return "\n".join(parts)


# -- opening and migrating ---------------------------------------------------------------------


async def test_opening_waits_for_the_migration_lock_another_opener_holds(pg_url: str) -> None:
    with psycopg.connect(pg_url) as other:  # a transaction holding the lock: another migrator
        other.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        store = PostgresMetadataStore(pg_url)
        opening = asyncio.create_task(store.open())
        await asyncio.sleep(0.5)
        assert not opening.done()  # waiting for the lock, not migrating alongside
        other.rollback()
        await asyncio.wait_for(opening, timeout=30)
    try:
        assert (await store.query_runs(RunQuery())).total == 0
    finally:
        await store.close()


async def test_reopening_an_up_to_date_database_takes_no_migration_lock(pg_url: str) -> None:
    await (await open_postgres_store(pg_url)).close()
    with psycopg.connect(pg_url) as other:
        other.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        again = await asyncio.wait_for(open_postgres_store(pg_url), timeout=10)
        await again.close()


async def test_many_stores_opening_a_new_database_at_once_all_succeed(pg_url: str) -> None:
    stores = [PostgresMetadataStore(pg_url) for _ in range(8)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        await stores[0].insert_run(run := run_record())
        for store in stores:
            assert (await store.get_run(run.run_id)).run_id == run.run_id
    finally:
        for store in stores:
            await store.close()


def test_schema_uses_timestamptz_and_byte_order_keys(pg_url: str) -> None:
    asyncio.run(_open_and_close(pg_url))
    with psycopg.connect(pg_url) as conn:
        columns: dict[str, str] = dict(
            conn.execute(
                "SELECT column_name, data_type || coalesce(' ' || collation_name, '') "
                "FROM information_schema.columns WHERE table_name = 'runs'"
            ).fetchall()
        )
    assert columns["created_at"] == "timestamp with time zone"
    assert columns["run_id"] == "character varying C"
    assert columns["project"] == "character varying C"


async def _open_and_close(url: str) -> None:
    await (await open_postgres_store(url)).close()


# -- transactions ------------------------------------------------------------------------------


async def test_reads_see_one_snapshot_and_writes_run_at_read_committed(
    store: PostgresMetadataStore,
) -> None:
    def settings(conn: Connection) -> tuple[str, str]:
        isolation = conn.scalar(sa.text("SHOW transaction_isolation"))
        read_only = conn.scalar(sa.text("SHOW transaction_read_only"))
        return str(isolation), str(read_only)

    assert await store._read("probe", settings) == ("repeatable read", "on")
    assert await store._write("probe", settings) == ("read committed", "off")
    assert await store._read("probe", settings) == ("repeatable read", "on")  # reset on checkin


def failing_first(times: int, sqlstate: str) -> tuple[Callable[[Connection], int], list[int]]:
    """An operation whose first ``times`` runs fail on the server with ``sqlstate``."""
    calls: list[int] = []

    def op(conn: Connection) -> int:
        calls.append(1)
        conn.execute(sa.text("CREATE TEMP TABLE IF NOT EXISTS probe (n int)"))
        if len(calls) <= times:
            conn.exec_driver_sql(
                f"DO $$ BEGIN RAISE EXCEPTION 'aborted' USING ERRCODE = '{sqlstate}'; END $$"
            )
        return len(calls)

    return op, calls


@pytest.mark.parametrize("sqlstate", ["40001", "40P01"])
async def test_a_transaction_the_server_aborted_is_run_again(
    store: PostgresMetadataStore, sqlstate: str
) -> None:
    op, calls = failing_first(3, sqlstate)
    assert await store._write("probe", op) == 4
    assert len(calls) == 4


async def test_retries_are_bounded_and_end_in_a_rollback_error(pg_url: str) -> None:
    store = await open_postgres_store(pg_url, max_attempts=3)
    try:
        op, calls = failing_first(10, "40P01")
        with pytest.raises(StorageIOError) as caught:
            await store._write("probe", op)
    finally:
        await store.close()
    assert len(calls) == 3
    assert caught.value.details["reason"] == "transaction_rollback"
    assert caught.value.details["operation"] == "probe"


async def test_other_errors_are_not_retried(store: PostgresMetadataStore) -> None:
    op, calls = failing_first(10, "22012")  # division_by_zero
    with pytest.raises(ValidationError):
        await store._write("probe", op)
    assert len(calls) == 1


def terminate_connections(url: str) -> int:
    database = make_url(url).database
    with psycopg.connect(libpq_url(admin_url()), autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return len(rows)


async def test_pooled_connections_killed_by_the_server_are_replaced(pg_url: str) -> None:
    store = await open_postgres_store(pg_url)  # pool_pre_ping on: checked before use
    try:
        await store.insert_run(run := run_record())
        assert terminate_connections(pg_url) >= 1
        await store.update_run(run, expected_version=1)  # a write: no failed call at all
        assert (await store.get_run(run.run_id)).version == 2
    finally:
        await store.close()


async def test_without_pre_ping_a_read_on_a_killed_connection_is_run_again(pg_url: str) -> None:
    store = await open_postgres_store(pg_url, pool_pre_ping=False, pool_size=1, max_overflow=0)
    try:
        await store.insert_run(run := run_record())
        assert terminate_connections(pg_url) == 1
        assert (await store.get_run(run.run_id)).run_id == run.run_id
        # A write is not re-run (its COMMIT may have landed): the caller is told.
        assert terminate_connections(pg_url) == 1
        with pytest.raises(StorageIOError) as caught:
            await store.update_run(run, expected_version=1)
        assert caught.value.details["reason"] in ("operator_intervention", "connection_lost")
        assert (await store.get_run(run.run_id)).version == 1
    finally:
        await store.close()


# -- concurrent writers ------------------------------------------------------------------------


@pytest.fixture
async def two_stores(pg_url: str) -> AsyncIterator[tuple[PostgresMetadataStore, ...]]:
    stores = (await open_postgres_store(pg_url), await open_postgres_store(pg_url))
    yield stores
    for store in stores:
        await store.close()


async def test_an_append_racing_an_uncommitted_one_waits_then_conflicts(
    store: PostgresMetadataStore, pg_url: str
) -> None:
    await store.insert_run(run := run_record())
    await store.append_log_entries(log_entries(run.run_id, range(1, 3)))
    with psycopg.connect(pg_url) as other:
        # Another writer appended seq 3 from the same head and has not committed yet.
        other.execute(
            "INSERT INTO log_entries (run_id, seq, level, event, timestamp, hash, body) "
            "VALUES (%s, 3, 'info', 'tick', now(), %s, '{}')",
            (run.run_id, "f" * 64),
        )
        ours = asyncio.create_task(store.append_log_entries(log_entries(run.run_id, range(3, 5))))
        await asyncio.sleep(0.5)
        assert not ours.done()  # blocked on the other's seq 3, not appending beside it
        other.commit()
        with pytest.raises(Conflict) as caught:
            await asyncio.wait_for(ours, timeout=30)
    assert caught.value.details["reason"] == "unique_violation"
    assert await store.count_log_entries(run.run_id) == 3


async def test_log_appenders_on_two_connections_never_fork_the_chain(
    two_stores: tuple[PostgresMetadataStore, ...],
) -> None:
    first, second = two_stores
    await first.insert_run(run := run_record())
    winners: list[str] = []
    for round_ in range(20):
        head = await first.log_head(run.run_id)
        start = (head.seq if head else 0) + 1
        batches = [
            store.append_log_entries(log_entries(run.run_id, range(start, start + 3), name))
            for store, name in ((first, "first"), (second, "second"))
        ]
        results = await asyncio.gather(*batches, return_exceptions=True)
        assert sum(result is None for result in results) == 1, (round_, results)
        assert all(isinstance(r, Conflict) for r in results if r is not None)
        winners.append("first" if results[0] is None else "second")
    entries = await first.read_log_entries(run.run_id, LogQuery(limit=1000))
    assert [entry.seq for entry in entries] == list(range(1, 61))
    # Each batch of three is one writer's, whole: no interleaving, no duplicate position.
    assert [entries[i].message for i in range(0, 60, 3)] == winners
    assert all(len({e.message for e in entries[i : i + 3]}) == 1 for i in range(0, 60, 3))


async def test_audit_appenders_on_two_connections_never_fork_the_chain(
    two_stores: tuple[PostgresMetadataStore, ...],
) -> None:
    first, second = two_stores
    for _ in range(20):
        head = await first.audit_head()
        start = (head.seq if head else 0) + 1
        results = await asyncio.gather(
            first.append_audit_entries(audit_entries(range(start, start + 2), "first")),
            second.append_audit_entries(audit_entries(range(start, start + 2), "second")),
            return_exceptions=True,
        )
        assert sum(result is None for result in results) == 1, results
        assert all(isinstance(r, Conflict) for r in results if r is not None)
    entries = await first.read_audit_entries(limit=1000)
    assert [entry.seq for entry in entries] == list(range(1, 41))
    assert all(entries[i].actor == entries[i + 1].actor for i in range(0, 40, 2))


async def test_compare_and_set_updates_from_two_connections_lose_nothing(
    two_stores: tuple[PostgresMetadataStore, ...],
) -> None:
    first, second = two_stores
    await first.insert_run(shared := run_record())

    async def bump(store: PostgresMetadataStore) -> bool:
        current = await store.get_run(shared.run_id)
        try:
            await store.update_run(
                current.model_copy(update={"purpose": f"{id(store)}"}),
                expected_version=current.version,
            )
        except Conflict:
            return False
        return True

    results = await asyncio.gather(*(bump(two_stores[i % 2]) for i in range(60)))
    assert any(results)
    assert (await second.get_run(shared.run_id)).version == 1 + sum(results)


async def test_snapshot_revisions_from_two_connections_are_distinct(
    two_stores: tuple[PostgresMetadataStore, ...],
) -> None:
    first = two_stores[0]
    await first.insert_run(run := run_record())
    for revision in range(1, 11):
        results = await asyncio.gather(
            *(
                store.insert_snapshot(
                    SnapshotRecord(
                        run_id=run.run_id, revision=revision, sha256=f"{n:064x}", size_bytes=n
                    )
                )
                for n, store in enumerate(two_stores)
            ),
            return_exceptions=True,
        )
        assert sum(result is None for result in results) == 1, results
    assert [s.revision for s in await first.list_snapshots(run.run_id)] == list(range(1, 11))


# -- the pool ----------------------------------------------------------------------------------


def test_pool_settings_come_from_arguments_then_url_then_defaults(pg_url: str) -> None:
    defaults = PostgresMetadataStore(pg_url)
    assert (defaults.pool_size, defaults.max_overflow, defaults.pool_timeout) == (5, 10, 30.0)
    assert defaults.pool_pre_ping is True
    from_url = PostgresMetadataStore(
        f"{pg_url}?pool_size=2&max_overflow=0&pool_timeout=2.5&pool_recycle=60"
        "&pool_pre_ping=false&application_name=probe"
    )
    assert (from_url.pool_size, from_url.max_overflow, from_url.pool_timeout) == (2, 0, 2.5)
    assert (from_url.pool_recycle, from_url.pool_pre_ping) == (60, False)
    assert "pool_size" not in from_url._url.query  # not handed to libpq, which would refuse it
    assert from_url._url.query["application_name"] == "probe"
    overridden = PostgresMetadataStore(f"{pg_url}?pool_size=2", pool_size=7)
    assert overridden.pool_size == 7


@pytest.mark.parametrize(
    "query",
    ["pool_size=0", "pool_size=many", "max_overflow=-1", "pool_timeout=0", "pool_pre_ping=2"],
)
def test_invalid_pool_settings_are_validation_errors(pg_url: str, query: str) -> None:
    with pytest.raises(ValidationError) as caught:
        PostgresMetadataStore(f"{pg_url}?{query}")
    assert caught.value.details["option"] == query.split("=")[0]


def backend_pids(url: str) -> set[int]:
    database = make_url(url).database
    with psycopg.connect(libpq_url(admin_url()), autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            (database, "strongroom"),
        ).fetchall()
    return {pid for (pid,) in rows}


async def test_the_store_never_opens_more_connections_than_its_pool(pg_url: str) -> None:
    store = await open_postgres_store(pg_url, pool_size=2, max_overflow=1)
    try:
        assert store._engine is not None
        pool = store._engine.pool
        assert isinstance(pool, sa.QueuePool)
        assert (pool.size(), pool._max_overflow) == (2, 1)
        seen: set[int] = set()
        lock = threading.Lock()

        def slow_read(conn: Connection) -> None:
            pid = conn.scalar(sa.text("SELECT pg_backend_pid() FROM pg_sleep(0.05)"))
            with lock:
                seen.add(int(pid))

        await asyncio.gather(*(store._read("probe", slow_read) for _ in range(24)))
        assert 1 <= len(seen) <= 3
        assert len(backend_pids(pg_url)) <= 3
    finally:
        await store.close()
    # close() closes every connection (a server backend exits a moment after its client left)
    for _ in range(100):
        if not backend_pids(pg_url):
            break
        await asyncio.sleep(0.05)
    assert backend_pids(pg_url) == set()


async def test_an_exhausted_pool_is_a_timeout_error(pg_url: str) -> None:
    store = await open_postgres_store(pg_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    try:
        assert store._engine is not None
        held = store._engine.connect()  # someone else holds the only connection
        try:
            with pytest.raises(OperationTimeout) as caught:
                await store.get_run(new_id())
        finally:
            held.close()
        assert caught.value.details["reason"] == "pool_timeout"
        await store.insert_run(run_record())  # and the store works again once it is free
    finally:
        await store.close()


# -- errors and secrets ------------------------------------------------------------------------


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_refused_connection_is_an_io_error_naming_host_and_database(
    pg_server: str,
) -> None:
    port = unused_port()
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:{port}/vault_db?sslpassword={SECRET}"
    store = PostgresMetadataStore(url)
    with pytest.raises(StorageIOError) as caught:
        await store.open()
    error = caught.value
    assert error.code == "io_error"
    assert error.details == {
        "operation": "open",
        "backend": "postgresql",
        "reason": "connection_refused",
        "host": "127.0.0.1",
        "port": port,
        "database": "vault_db",
    }
    assert "refused" in error.message.lower()
    assert isinstance(error.__cause__, sa_exc.OperationalError)
    for text in (rendered(error), repr(store), str(store)):
        assert SECRET not in text
    with pytest.raises(StorageIOError, match="not open"):
        await store.get_run(new_id())


async def test_a_missing_database_is_not_found(pg_server: str) -> None:
    url = with_password(
        make_url(admin_url()).set(database="strongroom_no_such_database").render_as_string(False),
        SECRET,
    )
    store = PostgresMetadataStore(url)
    with pytest.raises(NotFound) as caught:
        await store.open()
    assert caught.value.details["reason"] == "unknown_database"
    assert caught.value.details["database"] == "strongroom_no_such_database"
    assert "does not exist" in caught.value.message
    assert SECRET not in rendered(caught.value) + repr(store)


async def test_an_unknown_role_is_an_authentication_error(pg_url: str) -> None:
    url = make_url(pg_url).set(username="strongroom_no_such_role", password=SECRET)
    store = PostgresMetadataStore(url)
    with pytest.raises(StorageIOError) as caught:
        await store.open()
    assert caught.value.details["reason"] == "authentication_failed"
    assert SECRET not in rendered(caught.value) + repr(store)


async def test_errors_on_an_open_store_name_the_database_but_never_the_password(
    pg_url: str,
) -> None:
    # trust authentication accepts any password: the secret is in the engine's URL all along
    store = await open_postgres_store(with_password(pg_url, SECRET))
    try:
        assert SECRET not in repr(store) + store.redacted_url
        await store.insert_run(run := run_record())
        with pytest.raises(Conflict) as conflict:
            await store.insert_run(run)
        op, _ = failing_first(99, "57P03")  # cannot_connect_now, not retried
        with pytest.raises(StorageIOError) as io_error:
            await store._write("probe", op)
    finally:
        await store.close()
    for error in (conflict.value, io_error.value):
        assert SECRET not in rendered(error)
        assert error.details["database"] == make_url(pg_url).database
        assert "user" not in error.details
        assert "password" not in json.dumps(error.details)


@pytest.mark.parametrize(
    ("message", "error", "reason"),
    [
        (
            'connection failed: connection to server at "10.0.0.5", port 5432 failed: '
            'FATAL:  password authentication failed for user "vault"',
            StorageIOError,
            "authentication_failed",
        ),
        (
            "connection failed: ... failed: FATAL:  sorry, too many clients already",
            StorageIOError,
            "too_many_connections",
        ),
        (
            "connection failed: ... failed: FATAL:  the database system is starting up",
            StorageIOError,
            "server_unavailable",
        ),
        ("failed to resolve host 'db.invalid': [Errno -2]", StorageIOError, "unknown_host"),
        (
            'connection failed: ... failed: FATAL:  database "vault" does not exist',
            NotFound,
            "unknown_database",
        ),
    ],
)
def test_connection_failures_without_a_sqlstate_get_a_reason(
    message: str, error: type[StrongroomError], reason: str
) -> None:
    """libpq's connection errors carry no SQLSTATE; the failures a user must act on differently
    are told apart by their message (the ones a local server can produce are tested above)."""
    driver_error = psycopg.OperationalError(message)
    with pytest.raises(error) as caught, map_db_errors("open", "postgresql", host="db"):
        raise sa_exc.OperationalError(None, None, driver_error)
    assert caught.value.details["reason"] == reason


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://root:{SECRET}@db/x",
        f"postgresql+asyncpg://root:{SECRET}@db/x",
        f"not a url {SECRET}",
    ],
)
def test_urls_of_other_databases_are_refused_without_echoing_the_password(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        PostgresMetadataStore(url)
    assert SECRET not in rendered(caught.value)


# -- the run index stays on its indexes --------------------------------------------------------


def seed_runs(url: str, count: int = 20_000) -> None:
    """Runs spread over 50 projects, 20 actors and 10 playbooks, one in 20 running, and fresh
    statistics, so the planner costs the indexes as it would on a real run index."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO runs (run_id, project, playbook_id, actor, status, purpose, "
            "created_at, updated_at, version, body) "
            "SELECT gen_random_uuid()::text, 'p' || mod(i, 50), 'b' || mod(i, 10), "
            "'a' || mod(i, 20), "
            "CASE WHEN mod(i, 20) = 0 THEN 'running' WHEN mod(i, 7) = 0 THEN 'failed' "
            "ELSE 'completed' END, '', now() - i * interval '1 minute', "
            "now() - i * interval '30 seconds', 1, '{}' "
            "FROM generate_series(1, %s) AS i",
            (count,),
        )
        conn.execute("ANALYZE runs")


@pytest.fixture(scope="module")
def seeded_url(pg_server: str) -> Iterator[str]:
    """One migrated database of seeded runs (over the last one or two weeks) for the module."""
    with fresh_database() as url:
        asyncio.run(_open_and_close(url))
        seed_runs(url)
        yield url


def explain(url: str, statement: sa.ClauseElement) -> str:
    """The plan, with sequential scans and sorts priced out as on a table far too big to scan
    or sort per page."""
    engine = sa.create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    try:
        sql = str(statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
        with engine.connect() as conn:
            conn.exec_driver_sql("SET enable_seqscan = off")
            conn.exec_driver_sql("SET enable_sort = off")
            return "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + sql))
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (RunQuery(status=[RunStatus.RUNNING], project="p1"), "ix_runs_status_project_created"),
        (
            RunQuery(status=[RunStatus.RUNNING], project="p1", sort="updated_at"),
            "ix_runs_status_project_updated",
        ),
        (RunQuery(project="p1", descending=False), "ix_runs_project_created"),
        (RunQuery(project="p1", sort="updated_at"), "ix_runs_project_updated"),
        (RunQuery(status=[RunStatus.FAILED]), "ix_runs_status_created"),
        (RunQuery(actor="a1"), "ix_runs_actor_created"),
        (RunQuery(playbook_id="b1"), "ix_runs_playbook_created"),
        (RunQuery(), "ix_runs_created"),
        (RunQuery(sort="updated_at"), "ix_runs_updated"),
        (RunQuery(created_after=T0), "ix_runs_created"),
    ],
)
def test_run_pages_are_answered_from_one_index_without_sorting(
    seeded_url: str, query: RunQuery, index: str
) -> None:
    middle = datetime.now(UTC) - timedelta(days=3)
    paged = query.model_copy(update={"cursor": encode_run_cursor(middle, new_id())})
    count_stmt, page_stmt = run_index_statements(paged)
    page_plan = explain(seeded_url, page_stmt)
    assert f"Index Scan Backward using {index} " in page_plan or (
        f"Index Scan using {index} " in page_plan
    ), page_plan
    assert "Sort" not in page_plan, page_plan
    count_plan = explain(seeded_url, count_stmt)
    assert "Seq Scan" not in count_plan, count_plan


async def test_an_unsigned_act_is_recorded_as_the_role_the_database_authenticated(
    store: PostgresMetadataStore, pg_url: str
) -> None:
    """On PostgreSQL the principal is ``current_user`` as the server sees it, whatever the
    process's OS account or environment says."""
    user = make_url(pg_url).username or "postgres"
    assert await store.session_role() == user
    assert await IdentityService(store).principal() == f"pg:{user}"
