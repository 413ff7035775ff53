"""The SQL records store (on SQLite) honours the MetadataStore port, record type by record type.

A stop-gap until the shared conformance suite exists; the behaviour specified here is the
port's, so these tests should keep passing when that suite is run against the same store.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from _sql_tamper import drop_append_only_guards
from strongroom.adapters._sql import encode_run_cursor
from strongroom.adapters._sqlite import SqliteMetadataStore, open_sqlite_store
from strongroom.errors import Conflict, IntegrityError, NotFound, ValidationError
from strongroom.ids import new_id
from strongroom.models import (
    ArtifactFormat,
    ArtifactMetadata,
    ArtifactQuery,
    ArtifactRole,
    AuditEntry,
    BlobLocation,
    CatalogObject,
    LogEntry,
    LogLevel,
    LogQuery,
    LogReference,
    MerkleCheckpoint,
    Namespace,
    PlaybookRef,
    Provider,
    ProviderType,
    Run,
    RunQuery,
    RunStatus,
    SnapshotRecord,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DIGEST_A = "a" * 64
DIGEST_B = "b" * 64


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteMetadataStore]:
    opened = await open_sqlite_store(tmp_path / "vault" / "records.db")
    yield opened
    await opened.close()


def make_run(**fields: Any) -> Run:
    values: dict[str, Any] = {
        "run_id": new_id(),
        "project": "alpha",
        "actor": "ada",
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(fields)
    return Run(**values)


def make_artifact(run_id: str, **fields: Any) -> ArtifactMetadata:
    artifact_id = fields.pop("artifact_id", new_id())
    values: dict[str, Any] = {
        "artifact_id": artifact_id,
        "run_id": run_id,
        "role": ArtifactRole.PHASE_OUTPUT,
        "format": ArtifactFormat.JSON,
        "media_type": "application/json",
        "location": BlobLocation(backend="local", path="ab/cd", uri="file:///x/ab/cd"),
        "size_bytes": 3,
        "sha256": DIGEST_A,
    }
    values.update(fields)
    return ArtifactMetadata(**values)


def make_log_entries(run_id: str, seqs: range, **fields: Any) -> list[LogEntry]:
    return [
        LogEntry(
            run_id=run_id,
            seq=seq,
            timestamp=T0 + timedelta(seconds=seq),
            level=fields.get("level", LogLevel.INFO),
            event=fields.get("event", "step.done"),
            phase=fields.get("phase"),
            message=f"line {seq}",
            prev_hash=f"{seq - 1:064x}",
            hash=f"{seq:064x}",
        )
        for seq in seqs
    ]


def make_audit_entries(seqs: range) -> list[AuditEntry]:
    return [
        AuditEntry(
            seq=seq,
            timestamp=T0,
            event="tool.invoked",
            actor="ada",
            subject_type="run",
            subject_id="r",
            prev_hash=f"{seq - 1:064x}",
            hash=f"{seq:064x}",
        )
        for seq in seqs
    ]


def make_provider(provider_id: str = "local") -> Provider:
    return Provider(
        provider_id=provider_id,
        name="Local disk",
        type=ProviderType.FILESYSTEM,
        owner="ops",
        base_uri="file:///srv/strongroom",
    )


def make_namespace(namespace_id: str = "runs", provider_id: str = "local") -> Namespace:
    return Namespace(
        namespace_id=namespace_id, provider_id=provider_id, name=namespace_id, default_prefix="r"
    )


def make_object(path: str, namespace_id: str = "runs", **fields: Any) -> CatalogObject:
    values: dict[str, Any] = {
        "object_id": new_id(),
        "namespace_id": namespace_id,
        "path": path,
        "sha256": DIGEST_A,
        "size_bytes": 10,
        "content_type": "application/json",
    }
    values.update(fields)
    return CatalogObject(**values)


async def all_pages(store: SqliteMetadataStore, query: RunQuery) -> tuple[list[Run], set[int]]:
    """Follow next_cursor to the end; returns the runs and every total reported on the way."""
    runs: list[Run] = []
    totals: set[int] = set()
    cursor: str | None = None
    while True:
        page = await store.query_runs(query.model_copy(update={"cursor": cursor}))
        runs.extend(page.items)
        totals.add(page.total)
        if page.next_cursor is None:
            return runs, totals
        cursor = page.next_cursor


# -- runs --------------------------------------------------------------------------------------


async def test_run_round_trips_exactly(store: SqliteMetadataStore) -> None:
    run = make_run(
        playbook=PlaybookRef(playbook_id="translate"),
        purpose="Translate the manual",
        created_at=datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC),
    )
    await store.insert_run(run)
    stored = await store.get_run(run.run_id)
    assert stored == run
    assert stored.created_at.tzinfo is not None
    assert stored.created_at.utcoffset() == timedelta(0)


async def test_inserting_an_existing_run_id_is_a_conflict(store: SqliteMetadataStore) -> None:
    run = make_run()
    await store.insert_run(run)
    with pytest.raises(Conflict) as caught:
        await store.insert_run(run.model_copy(update={"purpose": "again"}))
    assert caught.value.details["run_id"] == run.run_id
    assert (await store.get_run(run.run_id)).purpose == ""


async def test_get_run_of_unknown_id_is_not_found(store: SqliteMetadataStore) -> None:
    with pytest.raises(NotFound):
        await store.get_run(new_id())


async def test_update_run_bumps_the_version_and_stores_the_new_record(
    store: SqliteMetadataStore,
) -> None:
    run = make_run()
    await store.insert_run(run)
    running = run.model_copy(update={"status": RunStatus.RUNNING})
    returned = await store.update_run(running, expected_version=1)
    assert returned.version == 2
    assert returned.status is RunStatus.RUNNING
    assert await store.get_run(run.run_id) == returned


async def test_update_run_with_a_stale_version_is_a_conflict_and_changes_nothing(
    store: SqliteMetadataStore,
) -> None:
    run = make_run()
    await store.insert_run(run)
    await store.update_run(run.model_copy(update={"purpose": "first"}), expected_version=1)
    with pytest.raises(Conflict) as caught:
        await store.update_run(run.model_copy(update={"purpose": "stale"}), expected_version=1)
    assert caught.value.details["actual_version"] == 2
    stored = await store.get_run(run.run_id)
    assert (stored.purpose, stored.version) == ("first", 2)


async def test_update_of_an_unknown_run_is_not_found(store: SqliteMetadataStore) -> None:
    with pytest.raises(NotFound):
        await store.update_run(make_run(), expected_version=1)


# -- run index ---------------------------------------------------------------------------------


async def seed_runs(store: SqliteMetadataStore, count: int) -> list[Run]:
    statuses = [RunStatus.PENDING, RunStatus.RUNNING, RunStatus.COMPLETED]
    runs = [
        make_run(
            project="alpha" if i % 2 else "beta",
            status=statuses[i % 3],
            actor="ada" if i % 5 else "bob",
            playbook=PlaybookRef(playbook_id="translate") if i % 4 == 0 else None,
            # Groups of four runs share a timestamp: pagination must break ties by run_id.
            created_at=T0 + timedelta(minutes=i // 4),
            updated_at=T0 + timedelta(hours=1, minutes=(count - i) // 4),
        )
        for i in range(count)
    ]
    for run in runs:
        await store.insert_run(run)
    return runs


def expected(
    runs: list[Run], keep: Any, sort: str = "created_at", descending: bool = True
) -> list[Run]:
    chosen = [run for run in runs if keep(run)]
    return sorted(chosen, key=lambda run: (getattr(run, sort), run.run_id), reverse=descending)


async def test_pages_cover_every_match_once_in_order_with_a_stable_total(
    store: SqliteMetadataStore,
) -> None:
    runs = await seed_runs(store, 90)
    query = RunQuery(status=[RunStatus.PENDING, RunStatus.RUNNING], project="alpha", limit=7)
    got, totals = await all_pages(store, query)
    want = expected(
        runs, lambda r: r.project == "alpha" and r.status in {RunStatus.PENDING, RunStatus.RUNNING}
    )
    assert [r.run_id for r in got] == [r.run_id for r in want]
    assert totals == {len(want)}


@pytest.mark.parametrize("sort", ["created_at", "updated_at"])
@pytest.mark.parametrize("descending", [True, False])
async def test_keyset_pagination_follows_sort_and_direction(
    store: SqliteMetadataStore, sort: str, descending: bool
) -> None:
    runs = await seed_runs(store, 41)
    query = RunQuery(sort=sort, descending=descending, limit=5)
    got, totals = await all_pages(store, query)
    assert [r.run_id for r in got] == [
        r.run_id for r in expected(runs, lambda r: True, sort, descending)
    ]
    assert totals == {41}


async def test_last_full_page_has_no_next_cursor(store: SqliteMetadataStore) -> None:
    await seed_runs(store, 10)
    page = await store.query_runs(RunQuery(limit=10))
    assert len(page.items) == 10
    assert page.next_cursor is None


CUT_CREATED = T0 + timedelta(minutes=3)
CUT_UPDATED = T0 + timedelta(hours=1, minutes=2)


@pytest.mark.parametrize(
    ("field", "value", "keep"),
    [
        ("actor", "bob", lambda r: r.actor == "bob"),
        ("playbook_id", "translate", lambda r: r.playbook is not None),
        ("project", "beta", lambda r: r.project == "beta"),
        ("created_after", CUT_CREATED, lambda r: r.created_at >= CUT_CREATED),
        ("created_before", CUT_CREATED, lambda r: r.created_at < CUT_CREATED),
        ("updated_after", CUT_UPDATED, lambda r: r.updated_at >= CUT_UPDATED),
        ("updated_before", CUT_UPDATED, lambda r: r.updated_at < CUT_UPDATED),
    ],
)
async def test_each_filter_selects_exactly_the_matching_runs(
    store: SqliteMetadataStore, field: str, value: Any, keep: Any
) -> None:
    runs = await seed_runs(store, 24)
    page = await store.query_runs(RunQuery(**{field: value}, limit=100))
    want = expected(runs, keep)
    assert [r.run_id for r in page.items] == [r.run_id for r in want]
    assert page.total == len(want)
    assert 0 < len(want) < len(runs)


async def test_empty_status_list_matches_nothing(store: SqliteMetadataStore) -> None:
    await seed_runs(store, 3)
    page = await store.query_runs(RunQuery(status=[]))
    assert (page.items, page.total) == ([], 0)


async def test_purpose_contains_is_a_case_insensitive_literal_substring(
    store: SqliteMetadataStore,
) -> None:
    percent = make_run(purpose="Reach 100% Coverage")
    underscore = make_run(purpose="rename snake_case fields")
    decoy = make_run(purpose="100 percent of snakeXcase")
    for run in (percent, underscore, decoy):
        await store.insert_run(run)

    async def ids(needle: str) -> set[str]:
        page = await store.query_runs(RunQuery(purpose_contains=needle))
        return {run.run_id for run in page.items}

    assert await ids("100% cov") == {percent.run_id}
    assert await ids("SNAKE_CASE") == {underscore.run_id}
    assert await ids("%") == {percent.run_id}
    assert await ids("_") == {underscore.run_id}


def raw_cursor(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


SOME_ID = "0192f000-0000-7000-8000-000000000000"


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("not base64 !!", id="not-base64"),
        pytest.param(encode_run_cursor(T0, SOME_ID)[:-3], id="truncated"),
        pytest.param(raw_cursor({"at": "2026-01-01T00:00:00+00:00"}), id="not-a-pair"),
        pytest.param(raw_cursor(["2026-01-01T00:00:00", SOME_ID]), id="naive-time"),
        pytest.param(raw_cursor(["yesterday", SOME_ID]), id="not-a-time"),
        pytest.param(raw_cursor(["2026-01-01T00:00:00+00:00", "../x"]), id="bad-run-id"),
        pytest.param(raw_cursor(["2026-01-01T00:00:00+00:00", 7]), id="run-id-not-text"),
    ],
)
async def test_undecodable_cursor_is_a_validation_error(
    store: SqliteMetadataStore, cursor: str
) -> None:
    with pytest.raises(ValidationError):
        await store.query_runs(RunQuery(cursor=cursor))


# -- snapshots ---------------------------------------------------------------------------------


async def test_snapshots_are_listed_oldest_first_and_latest_is_the_default(
    store: SqliteMetadataStore,
) -> None:
    run = make_run()
    await store.insert_run(run)
    records = [
        SnapshotRecord(run_id=run.run_id, revision=rev, sha256=DIGEST_A, size_bytes=rev)
        for rev in (1, 2, 3)
    ]
    for record in records:
        await store.insert_snapshot(record)
    assert await store.list_snapshots(run.run_id) == records
    assert await store.get_snapshot(run.run_id) == records[-1]
    assert await store.get_snapshot(run.run_id, 2) == records[1]


async def test_snapshot_revision_collision_is_a_conflict(store: SqliteMetadataStore) -> None:
    run = make_run()
    await store.insert_run(run)
    await store.insert_snapshot(
        SnapshotRecord(run_id=run.run_id, revision=1, sha256=DIGEST_A, size_bytes=1)
    )
    with pytest.raises(Conflict):
        await store.insert_snapshot(
            SnapshotRecord(run_id=run.run_id, revision=1, sha256=DIGEST_B, size_bytes=2)
        )
    assert (await store.get_snapshot(run.run_id)).sha256 == DIGEST_A


async def test_snapshot_of_unknown_run_is_not_found(store: SqliteMetadataStore) -> None:
    with pytest.raises(NotFound):
        await store.insert_snapshot(
            SnapshotRecord(run_id=new_id(), revision=1, sha256=DIGEST_A, size_bytes=1)
        )


async def test_missing_snapshots_are_not_found(store: SqliteMetadataStore) -> None:
    run = make_run()
    await store.insert_run(run)
    with pytest.raises(NotFound):
        await store.get_snapshot(run.run_id)
    await store.insert_snapshot(
        SnapshotRecord(run_id=run.run_id, revision=1, sha256=DIGEST_A, size_bytes=1)
    )
    with pytest.raises(NotFound):
        await store.get_snapshot(run.run_id, 2)


# -- artifacts ---------------------------------------------------------------------------------


async def test_artifacts_round_trip_and_filter(store: SqliteMetadataStore) -> None:
    run, other = make_run(), make_run()
    await store.insert_run(run)
    await store.insert_run(other)
    first = make_artifact(run.run_id, phase="draft", tags=["lang=fr", "final"])
    second = make_artifact(run.run_id, role=ArtifactRole.REPORT, namespace="reports")
    third = make_artifact(other.run_id, phase="draft", tags=["final", "final"])
    await store.insert_artifacts([first, second, third])

    assert await store.get_artifact(second.artifact_id) == second

    async def ids(**filters: Any) -> list[str]:
        found = await store.list_artifacts(ArtifactQuery(**filters))
        return [artifact.artifact_id for artifact in found]

    assert await ids(run_id=run.run_id) == [first.artifact_id, second.artifact_id]
    assert await ids(role=ArtifactRole.REPORT) == [second.artifact_id]
    assert await ids(phase="draft") == [first.artifact_id, third.artifact_id]
    assert await ids(namespace="reports") == [second.artifact_id]
    assert await ids(tag="final") == [first.artifact_id, third.artifact_id]
    assert await ids(tag="lang=fr", run_id=run.run_id) == [first.artifact_id]
    assert await ids(after_id=first.artifact_id, limit=1) == [second.artifact_id]


async def test_artifact_batch_is_all_or_nothing_and_names_every_failing_item(
    store: SqliteMetadataStore,
) -> None:
    run = make_run()
    await store.insert_run(run)
    existing = make_artifact(run.run_id)
    await store.insert_artifacts([existing])
    fresh = make_artifact(run.run_id, tags=["x"])
    twice = make_artifact(run.run_id)
    with pytest.raises(Conflict) as conflict:
        await store.insert_artifacts(
            [fresh, twice, twice, make_artifact(run.run_id, artifact_id=existing.artifact_id)]
        )
    assert conflict.value.details["items"] == sorted([existing.artifact_id, twice.artifact_id])
    orphans = [new_id(), new_id()]
    with pytest.raises(NotFound) as missing:
        await store.insert_artifacts([fresh] + [make_artifact(run_id) for run_id in orphans])
    assert missing.value.details["items"] == sorted(orphans)
    assert await store.list_artifacts(ArtifactQuery()) == [existing]
    assert await store.list_artifacts(ArtifactQuery(tag="x")) == []


async def test_unknown_artifact_is_not_found(store: SqliteMetadataStore) -> None:
    with pytest.raises(NotFound):
        await store.get_artifact(new_id())


# -- logs --------------------------------------------------------------------------------------


async def test_log_entries_append_read_head_and_count(store: SqliteMetadataStore) -> None:
    run = make_run()
    await store.insert_run(run)
    assert await store.log_head(run.run_id) is None
    entries = make_log_entries(run.run_id, range(1, 11))
    await store.append_log_entries(entries[:4])
    await store.append_log_entries(entries[4:])
    assert await store.read_log_entries(run.run_id, LogQuery()) == entries
    assert await store.read_log_entries(run.run_id, LogQuery(after_seq=7, limit=2)) == entries[7:9]
    assert await store.log_head(run.run_id) == entries[-1]
    assert await store.count_log_entries(run.run_id) == 10


async def test_log_filters(store: SqliteMetadataStore) -> None:
    run = make_run()
    await store.insert_run(run)
    debug = make_log_entries(run.run_id, range(1, 3), level=LogLevel.DEBUG, phase="draft")
    error = make_log_entries(run.run_id, range(3, 5), level=LogLevel.ERROR, event="step.failed")
    await store.append_log_entries(debug + error)

    async def seqs(**filters: Any) -> list[int]:
        return [e.seq for e in await store.read_log_entries(run.run_id, LogQuery(**filters))]

    assert await seqs(min_level=LogLevel.WARNING) == [3, 4]
    assert await seqs(min_level=LogLevel.DEBUG) == [1, 2, 3, 4]
    assert await seqs(event="step.failed") == [3, 4]
    assert await seqs(phase="draft") == [1, 2]
    assert await seqs(since=T0 + timedelta(seconds=2)) == [2, 3, 4]


async def test_duplicate_log_seq_is_a_conflict_and_inserts_nothing(
    store: SqliteMetadataStore,
) -> None:
    run = make_run()
    await store.insert_run(run)
    await store.append_log_entries(make_log_entries(run.run_id, range(1, 4)))
    with pytest.raises(Conflict):
        await store.append_log_entries(make_log_entries(run.run_id, range(3, 6)))
    assert await store.count_log_entries(run.run_id) == 3


async def test_log_batches_must_continue_the_chain_from_its_head(
    store: SqliteMetadataStore,
) -> None:
    run = make_run()
    await store.insert_run(run)
    await store.append_log_entries(make_log_entries(run.run_id, range(1, 4)))
    for stale in (range(5, 7), range(2, 4)):  # a gap, or a writer that read an old head
        with pytest.raises(Conflict):
            await store.append_log_entries(make_log_entries(run.run_id, stale))
    gappy = make_log_entries(run.run_id, range(4, 7))
    with pytest.raises(Conflict):
        await store.append_log_entries([gappy[0], gappy[2]])
    assert await store.count_log_entries(run.run_id) == 3


async def test_racing_log_appenders_from_the_same_head_get_exactly_one_winner(
    store: SqliteMetadataStore,
) -> None:
    run = make_run()
    await store.insert_run(run)
    batch = make_log_entries(run.run_id, range(1, 51))
    results = await asyncio.gather(
        *(store.append_log_entries(batch) for _ in range(5)), return_exceptions=True
    )
    assert sum(result is None for result in results) == 1
    assert all(isinstance(r, Conflict) for r in results if r is not None)
    assert await store.count_log_entries(run.run_id) == 50


async def test_a_log_batch_spanning_several_runs_is_refused(store: SqliteMetadataStore) -> None:
    first, second = make_run(), make_run()
    await store.insert_run(first)
    await store.insert_run(second)
    mixed = make_log_entries(first.run_id, range(1, 2)) + make_log_entries(
        second.run_id, range(2, 3)
    )
    with pytest.raises(ValidationError):
        await store.append_log_entries(mixed)
    assert await store.count_log_entries(first.run_id) == 0


async def test_log_run_ids_and_references(store: SqliteMetadataStore) -> None:
    runs = [make_run() for _ in range(3)]
    for run in runs:
        await store.insert_run(run)
    for run in runs[:2]:
        await store.append_log_entries(make_log_entries(run.run_id, range(1, 3)))
    assert [rid async for rid in store.iter_log_run_ids()] == sorted(r.run_id for r in runs[:2])

    assert await store.get_log_reference(runs[0].run_id) is None
    ref = LogReference(
        run_id=runs[0].run_id, created_at=T0, updated_at=T0, location="records", entry_count=2
    )
    await store.put_log_reference(ref)
    sealed = ref.model_copy(update={"sealed": True, "entry_count": 3})
    await store.put_log_reference(sealed)
    assert await store.get_log_reference(runs[0].run_id) == sealed


# -- audit -------------------------------------------------------------------------------------


async def test_audit_entries_and_checkpoints(store: SqliteMetadataStore) -> None:
    assert await store.audit_head() is None
    entries = make_audit_entries(range(1, 8))
    await store.append_audit_entries(entries[:3])
    await store.append_audit_entries(entries[3:])
    assert await store.audit_head() == entries[-1]
    assert await store.read_audit_entries() == entries
    assert await store.read_audit_entries(after_seq=2, limit=3) == entries[2:5]
    for stale in (range(7, 9), range(9, 10)):  # overlapping the head, or leaving a gap
        with pytest.raises(Conflict):
            await store.append_audit_entries(make_audit_entries(stale))
    assert (await store.audit_head()) == entries[-1]

    checkpoints = [MerkleCheckpoint(tree_size=n, root_hash=DIGEST_A) for n in (4, 7)]
    for checkpoint in reversed(checkpoints):
        await store.insert_checkpoint(checkpoint)
    assert await store.list_checkpoints() == checkpoints
    with pytest.raises(Conflict):
        await store.insert_checkpoint(MerkleCheckpoint(tree_size=4, root_hash=DIGEST_B))


# -- catalog -----------------------------------------------------------------------------------


async def test_providers_and_namespaces_are_upserted(store: SqliteMetadataStore) -> None:
    await store.put_provider(make_provider("s3"))
    await store.put_provider(make_provider("local"))
    renamed = make_provider("local").model_copy(update={"name": "Local SSD"})
    await store.put_provider(renamed)
    assert await store.get_provider("local") == renamed
    assert [p.provider_id for p in await store.list_providers()] == ["local", "s3"]

    await store.put_namespace(make_namespace("runs", "local"))
    await store.put_namespace(make_namespace("logs", "s3"))
    moved = make_namespace("runs", "s3")
    await store.put_namespace(moved)
    assert await store.get_namespace("runs") == moved
    assert [n.namespace_id for n in await store.list_namespaces("s3")] == ["logs", "runs"]
    assert await store.list_namespaces("local") == []


async def test_catalog_references_must_exist(store: SqliteMetadataStore) -> None:
    with pytest.raises(NotFound):
        await store.put_namespace(make_namespace("runs", "nowhere"))
    with pytest.raises(NotFound):
        await store.put_object(make_object("a.json", namespace_id="nowhere"))
    for getter, missing in (
        (store.get_provider, "nowhere"),
        (store.get_namespace, "nowhere"),
        (store.get_object, new_id()),
    ):
        with pytest.raises(NotFound):
            await getter(missing)


async def test_objects_are_replaced_by_id_and_unique_by_path(store: SqliteMetadataStore) -> None:
    await store.put_provider(make_provider())
    await store.put_namespace(make_namespace())
    obj = make_object("runs/1/run.json")
    await store.put_object(obj)
    replaced = obj.model_copy(update={"sha256": DIGEST_B, "size_bytes": 20})
    await store.put_object(replaced)
    assert await store.get_object(obj.object_id) == replaced
    with pytest.raises(Conflict):
        await store.put_object(make_object("runs/1/run.json"))
    await store.delete_object(obj.object_id)
    with pytest.raises(NotFound):
        await store.delete_object(obj.object_id)
    await store.put_object(make_object("runs/1/run.json"))


async def test_objects_list_by_literal_case_sensitive_prefix_in_path_order(
    store: SqliteMetadataStore,
) -> None:
    await store.put_provider(make_provider())
    await store.put_namespace(make_namespace("runs"))
    await store.put_namespace(make_namespace("logs"))
    paths = ["runs/b.json", "runs/a.json", "Runs/c.json", "runsX/d.json", "run_s/e.json"]
    for path in paths:
        await store.put_object(make_object(path))
    await store.put_object(make_object("runs/z.json", namespace_id="logs"))

    async def listed(namespace_id: str | None = None, **kwargs: Any) -> list[str]:
        return [o.path for o in await store.list_objects(namespace_id, **kwargs)]

    assert await listed("runs") == sorted(paths)
    assert await listed("runs", prefix="runs/") == ["runs/a.json", "runs/b.json"]
    assert await listed("runs", prefix="run_") == ["run_s/e.json"]
    assert await listed(prefix="runs/") == ["runs/a.json", "runs/b.json", "runs/z.json"]
    assert await listed("runs", limit=2) == sorted(paths)[:2]


# -- references and tampering ------------------------------------------------------------------


async def test_blob_references_cover_every_record_kind_across_pages(
    store: SqliteMetadataStore,
) -> None:
    run = make_run()
    await store.insert_run(run)
    await store.insert_snapshot(
        SnapshotRecord(run_id=run.run_id, revision=1, sha256=DIGEST_A, size_bytes=5)
    )
    artifacts = [make_artifact(run.run_id, sha256=DIGEST_B, size_bytes=i) for i in range(1201)]
    await store.insert_artifacts(artifacts)
    await store.put_provider(make_provider())
    await store.put_namespace(make_namespace())
    obj = make_object("runs/1/run.json")
    await store.put_object(obj)

    refs = [ref async for ref in store.iter_blob_references()]
    assert refs[0] == ("snapshot", f"{run.run_id}@1", DIGEST_A, 5)
    assert refs[1:-1] == sorted(
        ("artifact", a.artifact_id, DIGEST_B, a.size_bytes) for a in artifacts
    )
    assert refs[-1] == ("object", obj.object_id, DIGEST_A, 10)


def edit_row(db: Path, sql: str, *params: Any) -> None:
    with sqlite3.connect(db) as conn:
        drop_append_only_guards(conn)  # an intruder who owns the file drops them first
        assert conn.execute(sql, params).rowcount == 1
    conn.close()


async def test_a_hand_edited_row_that_no_longer_validates_is_an_integrity_error(
    store: SqliteMetadataStore,
) -> None:
    run = make_run()
    await store.insert_run(run)
    edit_row(
        store.path,
        'UPDATE runs SET body = replace(body, \'"status":"pending"\', \'"status":"hacked"\')',
    )
    with pytest.raises(IntegrityError):
        await store.get_run(run.run_id)
    with pytest.raises(IntegrityError):
        await store.query_runs(RunQuery())


async def test_log_entries_are_read_from_the_body_not_the_index_columns(
    store: SqliteMetadataStore,
) -> None:
    run = make_run()
    await store.insert_run(run)
    [entry] = make_log_entries(run.run_id, range(1, 2))
    await store.append_log_entries([entry])
    edit_row(store.path, "UPDATE log_entries SET hash = ?, level = 'error'", "0" * 64)
    assert await store.log_head(run.run_id) == entry
