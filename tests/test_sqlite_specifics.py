"""What only the SQLite records store promises: WAL, one writer at a time across processes
without "database is locked", index-only run pages, and errors that name the file but
never a secret."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy.exc as sa_exc
from sqlalchemy import ClauseElement, create_engine

from strongroom.adapters._sql import (
    encode_run_cursor,
    format_timestamp,
    map_db_errors,
    run_index_statements,
)
from strongroom.adapters._sqlite import SqliteMetadataStore, open_sqlite_store
from strongroom.errors import Conflict, NotFound, StorageIOError, UnsupportedFormat
from strongroom.ids import new_id
from strongroom.models import LogEntry, LogLevel, Run, RunQuery, RunStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteMetadataStore]:
    opened = await open_sqlite_store(tmp_path / "records.db")
    yield opened
    await opened.close()


def run_record(**fields: object) -> Run:
    return Run.model_validate({"run_id": new_id(), "project": "alpha", "actor": "ada", **fields})


# -- journal and locking -----------------------------------------------------------------------


async def test_database_is_in_wal_mode(store: SqliteMetadataStore) -> None:
    await store.insert_run(run_record())
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()
    assert store.path.with_name(store.path.name + "-wal").exists()


async def test_open_creates_missing_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "records.db"
    store = await open_sqlite_store(path)
    await store.close()
    assert path.is_file()


async def test_a_write_waits_for_another_writer_instead_of_failing(
    store: SqliteMetadataStore,
) -> None:
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        insert = asyncio.create_task(store.insert_run(run := run_record()))
        await asyncio.sleep(0.5)
        assert not insert.done()  # waiting for the lock, not failed
        other.execute("COMMIT")
        await asyncio.wait_for(insert, timeout=30)
    finally:
        other.close()
    assert (await store.get_run(run.run_id)).run_id == run.run_id


async def test_reads_proceed_while_another_process_holds_the_write_lock(
    store: SqliteMetadataStore,
) -> None:
    await store.insert_run(run := run_record())
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE runs SET purpose = 'uncommitted'")
        seen = await asyncio.wait_for(store.get_run(run.run_id), timeout=5)
        assert seen.purpose == ""
    finally:
        other.execute("ROLLBACK")
        other.close()


async def test_a_lock_held_past_every_retry_is_a_locked_io_error_naming_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "records.db"
    store = await open_sqlite_store(path, busy_timeout=0.05, max_attempts=2)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageIOError) as caught:
            await store.insert_run(run_record())
    finally:
        other.execute("ROLLBACK")
        other.close()
        await store.close()
    assert caught.value.code == "io_error"
    assert caught.value.details["reason"] == "database_locked"
    assert caught.value.details["path"] == str(path)
    assert caught.value.details["operation"] == "insert_run"
    assert isinstance(caught.value.__cause__, sa_exc.OperationalError)


async def test_concurrent_coroutines_of_one_store_interleave_reads_and_writes(
    store: SqliteMetadataStore,
) -> None:
    shared = run_record()
    await store.insert_run(shared)

    async def bump() -> bool:
        current = await store.get_run(shared.run_id)
        try:
            await store.update_run(current, expected_version=current.version)
        except Conflict:
            return False
        return True

    results = await asyncio.gather(*(bump() for _ in range(40)))
    assert (await store.get_run(shared.run_id)).version == 1 + sum(results)


async def test_timestamps_are_fixed_width_utc_text_so_text_order_is_time_order(
    store: SqliteMetadataStore,
) -> None:
    plus_five = timezone(timedelta(hours=5))
    moments = [
        datetime(2026, 1, 1, 12, 0, 0, tzinfo=plus_five),  # 07:00 UTC, no microseconds
        datetime(2026, 1, 1, 7, 0, 0, 1, tzinfo=UTC),
        datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC),  # a three-digit year
        datetime(2026, 1, 1, 6, 59, 59, 999999, tzinfo=UTC),
    ]
    for moment in moments:
        await store.insert_run(run_record(created_at=moment, updated_at=moment))
    with sqlite3.connect(store.path) as conn:
        stored = [row[0] for row in conn.execute("SELECT created_at FROM runs ORDER BY created_at")]
    conn.close()
    assert {len(text) for text in stored} == {32}
    assert all(text.endswith("+00:00") for text in stored)
    assert stored == [format_timestamp(moment) for moment in sorted(moments)]
    page = await store.query_runs(RunQuery(descending=False))
    assert [run.created_at for run in page.items] == sorted(moments)
    assert all(run.created_at.utcoffset() == timedelta(0) for run in page.items)


# -- many processes, one file ------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path

    from strongroom.adapters._sqlite import open_sqlite_store
    from strongroom.errors import Conflict
    from strongroom.models import LogEntry, LogQuery, Run, RunQuery, SnapshotRecord

    async def main(path, worker, operations, shared_ids):
        store = await open_sqlite_store(Path(path))
        report = {"inserted": 0, "updates": {}, "snapshots": {}, "log_lines": 0,
                  "reads": 0, "conflicts": 0, "own_run": None}
        for run_id in shared_ids:  # every worker races to create the shared runs
            try:
                await store.insert_run(Run(run_id=run_id, project="shared", actor="w"))
            except Conflict:
                pass
        own = Run(run_id=f"00000000-0000-7000-8000-{worker:012d}", project="own", actor="w")
        await store.insert_run(own)
        report["own_run"] = own.run_id
        next_seq = 1

        async def one(i):
            nonlocal next_seq
            shared = shared_ids[i % len(shared_ids)]
            kind = i % 5
            try:
                if kind == 0:
                    await store.insert_run(Run(
                        run_id=f"{worker:08d}-0000-7000-9000-{i:012d}", project="p", actor="w"))
                    report["inserted"] += 1
                elif kind == 1:
                    run = await store.get_run(shared)
                    await store.update_run(
                        run.model_copy(update={"purpose": f"w{worker} op{i}"}),
                        expected_version=run.version)
                    report["updates"][shared] = report["updates"].get(shared, 0) + 1
                elif kind == 2:
                    first, next_seq = next_seq, next_seq + 20
                    await store.append_log_entries([
                        LogEntry(run_id=own.run_id, seq=s, timestamp=own.created_at,
                                 level="info", event="tick", prev_hash="0" * 64,
                                 hash=f"{s:064x}")
                        for s in range(first, first + 20)])
                    report["log_lines"] += 20
                elif kind == 3:
                    revision = len(await store.list_snapshots(shared)) + 1
                    await store.insert_snapshot(SnapshotRecord(
                        run_id=shared, revision=revision, sha256="a" * 64, size_bytes=i))
                    report["snapshots"][shared] = report["snapshots"].get(shared, 0) + 1
                else:
                    await store.query_runs(RunQuery(project="p", limit=20))
                    await store.read_log_entries(own.run_id, LogQuery(limit=50))
                    report["reads"] += 1
            except Conflict:
                report["conflicts"] += 1

        for start in range(0, operations, 4):  # four coroutines at a time per process
            await asyncio.gather(*(one(i) for i in range(start, min(start + 4, operations))))
        await store.close()
        print(json.dumps(report))

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(",")))
    """
)


@pytest.mark.slow
async def test_eight_processes_hammering_one_file_never_see_a_locked_database(
    tmp_path: Path,
) -> None:
    path = tmp_path / "vault" / "records.db"  # does not exist yet: the workers race to create it
    processes, operations = 8, 500
    shared_ids = [f"11111111-0000-7000-8000-{n:012d}" for n in range(3)]
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WORKER,
            str(path),
            str(worker),
            str(operations),
            ",".join(shared_ids),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for worker in range(processes)
    ]
    outputs = await asyncio.wait_for(
        asyncio.gather(*(child.communicate() for child in children)), timeout=600
    )
    for child, (_, stderr) in zip(children, outputs, strict=True):
        assert "locked" not in stderr.decode(), stderr.decode()
        assert child.returncode == 0, stderr.decode()
    reports = [json.loads(stdout) for stdout, _ in outputs]

    updates: Counter[str] = Counter()
    snapshots: Counter[str] = Counter()
    for report in reports:
        updates.update(report["updates"])
        snapshots.update(report["snapshots"])

    store = await open_sqlite_store(path)
    try:
        for run_id in shared_ids:
            # Compare-and-set lost no update and let no stale writer through.
            assert (await store.get_run(run_id)).version == 1 + updates[run_id]
            revisions = [s.revision for s in await store.list_snapshots(run_id)]
            assert revisions == list(range(1, snapshots[run_id] + 1))
        for report in reports:
            assert await store.count_log_entries(report["own_run"]) == report["log_lines"]
        page = await store.query_runs(RunQuery(project="p", limit=1))
        assert page.total == sum(report["inserted"] for report in reports)
        assert page.total == processes * len(range(0, operations, 5))
        assert sum(r["reads"] for r in reports) == processes * len(range(4, operations, 5))
    finally:
        await store.close()


# -- the run index stays on its indexes --------------------------------------------------------


def query_plan(store: SqliteMetadataStore, statement: ClauseElement) -> list[str]:
    engine = create_engine(f"sqlite:///{store.path}")
    sql = str(statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    try:
        with engine.connect() as conn:
            return [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (
            RunQuery(status=[RunStatus.RUNNING], project="alpha"),
            "ix_runs_status_project_created",
        ),
        (
            RunQuery(status=[RunStatus.RUNNING], project="alpha", sort="updated_at"),
            "ix_runs_status_project_updated",
        ),
        (RunQuery(project="alpha", descending=False), "ix_runs_project_created"),
        (RunQuery(status=[RunStatus.FAILED]), "ix_runs_status_created"),
        (RunQuery(actor="ada"), "ix_runs_actor_created"),
        (RunQuery(playbook_id="translate"), "ix_runs_playbook_created"),
        (RunQuery(), "ix_runs_created"),
        (RunQuery(sort="updated_at"), "ix_runs_updated"),
    ],
)
async def test_run_pages_and_totals_are_answered_from_one_index_without_sorting(
    store: SqliteMetadataStore, query: RunQuery, index: str
) -> None:
    paged = query.model_copy(update={"cursor": encode_run_cursor(T0, new_id())})
    count_stmt, page_stmt = run_index_statements(paged)
    page_plan = query_plan(store, page_stmt)
    count_plan = query_plan(store, count_stmt)
    assert any(index in step for step in page_plan), page_plan
    assert not any("TEMP B-TREE" in step for step in page_plan), page_plan
    assert any("COVERING INDEX" in step for step in count_plan), count_plan


# -- error mapping -----------------------------------------------------------------------------


async def test_a_file_that_is_not_a_database_is_refused_unchanged_naming_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "records.db"
    content = b"this is not an SQLite database, just some text" * 100
    path.write_bytes(content)
    store = SqliteMetadataStore(path)
    with pytest.raises(UnsupportedFormat) as caught:
        await store.open()
    assert caught.value.details["path"] == str(path)
    assert caught.value.details["backend"] == "sqlite"
    assert caught.value.details["reason"] == "not_a_vault"
    assert "[SQL:" not in caught.value.message
    assert path.read_bytes() == content
    with pytest.raises(StorageIOError, match="not open"):
        await store.get_run(new_id())


async def test_a_database_path_under_a_regular_file_is_an_io_error(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory")
    with pytest.raises(StorageIOError) as caught:
        await open_sqlite_store(blocker / "records.db")
    assert caught.value.details["path"] == str(blocker / "records.db")


def test_driver_messages_never_carry_credentials() -> None:
    secret = "s3cr3t-Pa55"
    driver_error = Exception(
        f'connection to "postgresql://alice:{secret}@db.internal:5432/vault" failed: '
        f"password={secret} sslpassword='{secret}'"
    )
    with pytest.raises(StorageIOError) as caught, map_db_errors("open", "postgresql"):
        raise sa_exc.OperationalError("SELECT 1", {"password": secret}, driver_error)
    error = caught.value
    rendered = json.dumps(error.to_dict()) + str(error) + repr(error)
    assert secret not in rendered
    assert "db.internal" in error.message  # the host is useful and not a secret
    assert error.details == {
        "operation": "open",
        "backend": "postgresql",
        "reason": "database_error",
    }


async def test_constraint_errors_map_to_conflict_and_not_found(
    store: SqliteMetadataStore,
) -> None:
    run = run_record()
    await store.insert_run(run)
    with pytest.raises(Conflict) as conflict:
        await store.insert_run(run)
    assert conflict.value.details["reason"] == "unique_violation"
    assert conflict.value.details["constraint"] == "runs.run_id"
    assert isinstance(conflict.value.__cause__, sa_exc.IntegrityError)
    orphan = LogEntry(
        run_id=new_id(),
        seq=1,
        timestamp=T0,
        level=LogLevel.INFO,
        event="tick",
        prev_hash="0" * 64,
        hash="1" * 64,
    )
    with pytest.raises(NotFound) as missing:
        await store.append_log_entries([orphan])
    assert missing.value.details["reason"] == "foreign_key_violation"
