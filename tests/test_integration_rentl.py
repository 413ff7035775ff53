"""rentl's storage ports on a vault (`strongroom.integrations.rentl`), on every backend pair.

The first tests mirror rentl's own storage suites (tests/integration/storage/test_protocol.py,
the filesystem feature and tests/unit/io/test_storage_adapters.py) call for call, with the
vault stores in place of rentl's filesystem ones; the rest pin what strongroom adds or
changes (None returns, error shapes, index fields kept, level names, checksums, status
mirroring, verify). The last test SIGKILLs the example pipeline (examples/rentl_pipeline)
mid-phase and checks that the restart redoes no completed phase.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest
import uuid6
from pydantic import Field

from _blob_tamper import write_stored_blob
from strongroom import Vault
from strongroom.integrations.rentl import (
    ArtifactStoreProtocol,
    LogStoreProtocol,
    RentlStores,
    RunStateStoreProtocol,
    StorageBatchError,
    StorageError,
    StorageErrorCode,
    rentl_stores,
)
from strongroom.integrations.rentl.schemas import (
    ArtifactFormat,
    ArtifactMetadata,
    ArtifactRole,
    BaseSchema,
    LogEntry,
    LogLevel,
    PhaseName,
    PhaseProgress,
    PhaseStatus,
    ProgressPercentMode,
    ProgressSummary,
    RunError,
    RunIndexRecord,
    RunMetadata,
    RunProgress,
    RunState,
    RunStateRecord,
    RunStatus,
    StorageReference,
    VersionInfo,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "rentl_pipeline" / "pipeline.py"

# -- backends -----------------------------------------------------------------------------------

PAIRS = [
    pytest.param((False, False), id="sqlite-local"),
    pytest.param((True, False), id="postgres-local", marks=pytest.mark.postgres),
    pytest.param((False, True), id="sqlite-s3", marks=pytest.mark.s3),
    pytest.param((True, True), id="postgres-s3", marks=[pytest.mark.postgres, pytest.mark.s3]),
    pytest.param(None, id="memory"),
]


@pytest.fixture(params=PAIRS)
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    if request.param is None:
        return "memory://", None
    postgres, s3 = request.param
    url = request.getfixturevalue("pg_url") if postgres else str(tmp_path / "vault")
    blobs = request.getfixturevalue("s3_blob_url") if s3 else str(tmp_path / "blobs")
    assert isinstance(url, str)
    assert isinstance(blobs, str)
    return url, (blobs if (postgres or s3) else None)


@pytest.fixture
async def vault(urls: tuple[str, str | None]) -> AsyncIterator[Vault]:
    url, blobs = urls
    opened = await Vault.open(url, blobs_url=blobs)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def stores(vault: Vault) -> RentlStores:
    return rentl_stores(vault)


# -- rentl's builders (as in rentl's tests) -------------------------------------------------------


class _TestPayload(BaseSchema):
    name: str = Field(..., description="Payload name")
    value: int = Field(..., description="Payload value")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _run_metadata(run_id: UUID, status: RunStatus = RunStatus.PENDING) -> RunMetadata:
    return RunMetadata(
        run_id=run_id,
        schema_version=VersionInfo(major=0, minor=1, patch=0),
        status=status,
        current_phase=None,
        created_at=_now(),
        started_at=None,
        completed_at=None,
    )


def _run_state(run_id: UUID, status: RunStatus = RunStatus.PENDING) -> RunState:
    summary = ProgressSummary(
        percent_complete=None,
        percent_mode=ProgressPercentMode.UNAVAILABLE,
        eta_seconds=None,
        notes=None,
    )
    progress = RunProgress(
        phases=[
            PhaseProgress(
                phase=PhaseName.INGEST,
                status=PhaseStatus.PENDING,
                summary=summary,
                metrics=None,
                started_at=None,
                completed_at=None,
            )
        ],
        summary=summary,
        phase_weights=None,
    )
    return RunState(
        metadata=_run_metadata(run_id, status),
        progress=progress,
        artifacts=[],
        phase_history=None,
        phase_revisions=None,
        last_error=None,
        qa_summary=None,
    )


def _index_record(
    run_id: UUID,
    status: RunStatus = RunStatus.PENDING,
    project_name: str = "test",
    updated_at: str | None = None,
) -> RunIndexRecord:
    return RunIndexRecord(
        metadata=_run_metadata(run_id, status),
        project_name=project_name,
        source_language="ja",
        target_languages=["en"],
        updated_at=updated_at or _now(),
        progress=None,
        last_error=None,
    )


def _artifact_metadata(
    run_id: UUID,
    artifact_id: UUID | None = None,
    fmt: ArtifactFormat = ArtifactFormat.JSON,
    description: str | None = None,
) -> ArtifactMetadata:
    return ArtifactMetadata(
        artifact_id=artifact_id or uuid6.uuid7(),
        run_id=run_id,
        role=ArtifactRole.PHASE_OUTPUT,
        phase=PhaseName.INGEST,
        target_language=None,
        format=fmt,
        created_at=_now(),
        location=StorageReference(backend=None, path="/tmp/placeholder.json", uri=None),
        description=description,
        size_bytes=None,
        checksum_sha256=None,
        metadata=None,
    )


def _log_entry(
    run_id: UUID, event: str = "protocol_test", level: LogLevel = LogLevel.INFO
) -> LogEntry:
    return LogEntry(
        timestamp=_now(),
        level=level,
        event=event,
        run_id=run_id,
        phase=None,
        message="Protocol compliance test log entry",
        data=None,
    )


# -- rentl's protocol suite (tests/integration/storage/test_protocol.py) ------------------------


def test_stores_implement_the_protocols(stores: RentlStores) -> None:
    assert isinstance(stores.run_state, RunStateStoreProtocol)
    assert isinstance(stores.artifacts, ArtifactStoreProtocol)
    assert isinstance(stores.logs, LogStoreProtocol)


async def test_run_index_round_trip(stores: RentlStores) -> None:
    run_id = uuid6.uuid7()
    saved = _index_record(run_id, RunStatus.PENDING, "test-project")
    await stores.run_state.save_run_index(saved)
    listed = await stores.run_state.list_run_index()
    assert any(r.metadata.run_id == run_id for r in listed)


async def test_list_run_index_filters_by_status(stores: RentlStores) -> None:
    await stores.run_state.save_run_index(_index_record(uuid6.uuid7(), RunStatus.PENDING))
    await stores.run_state.save_run_index(_index_record(uuid6.uuid7(), RunStatus.COMPLETED))
    pending = await stores.run_state.list_run_index(status=RunStatus.PENDING)
    assert len(pending) == 1
    assert all(r.metadata.status == RunStatus.PENDING for r in pending)


async def test_json_artifact_round_trip(stores: RentlStores) -> None:
    run_id = uuid6.uuid7()
    original = _TestPayload(name="test", value=42)
    stored = await stores.artifacts.write_artifact_json(_artifact_metadata(run_id), original)
    loaded = await stores.artifacts.load_artifact_json(stored.artifact_id, _TestPayload)
    assert loaded == original


async def test_list_artifacts_returns_the_runs_artifacts(stores: RentlStores) -> None:
    run_id = uuid6.uuid7()
    for i in range(3):
        await stores.artifacts.write_artifact_json(
            _artifact_metadata(run_id, description=f"Artifact {i}"),
            _TestPayload(name=f"artifact_{i}", value=i),
        )
    await stores.artifacts.write_artifact_json(  # another run's
        _artifact_metadata(uuid6.uuid7()), _TestPayload(name="other", value=9)
    )
    listed = await stores.artifacts.list_artifacts(run_id)
    assert [a.description for a in listed] == ["Artifact 0", "Artifact 1", "Artifact 2"]


async def test_append_log_and_reference(stores: RentlStores) -> None:
    run_id = uuid6.uuid7()
    await stores.logs.append_log(_log_entry(run_id))
    reference = await stores.logs.get_log_reference(run_id)
    assert reference is not None
    assert reference.run_id == run_id
    assert reference.entry_count == 1
    assert reference.location.uri is not None
    (entry,) = await stores.logs.read_logs(run_id)
    assert entry.event == "protocol_test"
    assert entry.message == "Protocol compliance test log entry"


# -- rentl's adapter unit tests (tests/unit/io/test_storage_adapters.py) -------------------------


async def test_run_state_round_trip(stores: RentlStores) -> None:
    run_id = uuid6.uuid7()
    record = RunStateRecord(
        run_id=run_id,
        stored_at="2026-01-26T00:00:01Z",
        state=_run_state(run_id),
        location=None,
        checksum_sha256=None,
    )
    await stores.run_state.save_run_state(record)
    loaded = await stores.run_state.load_run_state(run_id)
    assert loaded is not None
    assert loaded.state == record.state
    assert loaded.stored_at == record.stored_at

    index = RunIndexRecord(
        metadata=record.state.metadata,
        project_name="demo",
        source_language="en",
        target_languages=["ja"],
        updated_at="2026-01-26T00:00:02Z",
        progress=record.state.progress.summary,
        last_error=None,
    )
    await stores.run_state.save_run_index(index)
    records = await stores.run_state.list_run_index()
    assert records[0].metadata.run_id == run_id


async def test_latest_run_state_wins(stores: RentlStores) -> None:
    run_id = uuid6.uuid7()
    for status in (RunStatus.PENDING, RunStatus.RUNNING):
        await stores.run_state.save_run_state(
            RunStateRecord(run_id=run_id, stored_at=_now(), state=_run_state(run_id, status))
        )
    loaded = await stores.run_state.load_run_state(run_id)
    assert loaded is not None
    assert loaded.state.metadata.status == RunStatus.RUNNING


async def test_stored_artifact_has_real_location_size_and_checksum(
    stores: RentlStores, vault: Vault
) -> None:
    run_id = uuid6.uuid7()
    stored = await stores.artifacts.write_artifact_json(
        _artifact_metadata(run_id), _TestPayload(name="hello", value=1)
    )
    assert stored.location.uri is not None
    assert stored.location.uri != "/tmp/placeholder.json"
    (item,) = await vault.artifacts.list(run_id=str(run_id), namespace="rentl")
    data = await vault.artifacts.get_bytes(item.artifact_id)
    assert stored.checksum_sha256 == hashlib.sha256(data).hexdigest()
    assert stored.size_bytes == len(data)
    assert json.loads(data) == {"name": "hello", "value": 1}
    if stored.location.path is not None:  # local blobs: rentl can open the file itself
        assert await asyncio.to_thread(Path(stored.location.path).read_bytes) == data


async def test_write_rejects_the_wrong_format(stores: RentlStores) -> None:
    metadata = _artifact_metadata(uuid6.uuid7(), fmt=ArtifactFormat.JSONL)
    with pytest.raises(StorageError) as caught:
        await stores.artifacts.write_artifact_json(metadata, _TestPayload(name="x", value=1))
    assert caught.value.info.code == StorageErrorCode.UNSUPPORTED_FORMAT
    assert caught.value.info.message == "Artifact format must be json"
    with pytest.raises(StorageError) as caught:
        await stores.artifacts.write_artifact_jsonl(_artifact_metadata(uuid6.uuid7()), [])
    assert caught.value.info.code == StorageErrorCode.UNSUPPORTED_FORMAT


async def test_jsonl_artifact_round_trip(stores: RentlStores) -> None:
    run_id = uuid6.uuid7()
    metadata = _artifact_metadata(run_id, fmt=ArtifactFormat.JSONL)
    payloads = [_TestPayload(name="one", value=1), _TestPayload(name="two", value=2)]
    stored = await stores.artifacts.write_artifact_jsonl(metadata, payloads)
    assert stored.format == ArtifactFormat.JSONL
    loaded = await stores.artifacts.load_artifact_jsonl(stored.artifact_id, _TestPayload)
    assert loaded == payloads
    empty = await stores.artifacts.write_artifact_jsonl(
        _artifact_metadata(run_id, fmt=ArtifactFormat.JSONL), []
    )
    assert await stores.artifacts.load_artifact_jsonl(empty.artifact_id, _TestPayload) == []


async def test_missing_artifact_is_not_found(stores: RentlStores) -> None:
    missing = uuid6.uuid7()
    for load in (stores.artifacts.load_artifact_json, stores.artifacts.load_artifact_jsonl):
        with pytest.raises(StorageError) as caught:
            await load(missing, _TestPayload)
        info = caught.value.info
        assert info.code == StorageErrorCode.NOT_FOUND
        assert info.message == "Artifact not found"
        assert info.details is not None
        assert info.details.artifact_id == missing


async def test_payload_that_does_not_fit_the_model(stores: RentlStores) -> None:
    stored = await stores.artifacts.write_artifact_json(
        _artifact_metadata(uuid6.uuid7()), VersionInfo(major=1, minor=2, patch=3)
    )
    with pytest.raises(StorageError) as caught:
        await stores.artifacts.load_artifact_json(stored.artifact_id, _TestPayload)
    assert caught.value.info.code == StorageErrorCode.VALIDATION_ERROR
    assert caught.value.info.message == "Artifact payload failed schema validation"
    with pytest.raises(StorageError) as caught:
        await stores.artifacts.load_artifact_jsonl(stored.artifact_id, _TestPayload)
    assert caught.value.info.code == StorageErrorCode.UNSUPPORTED_FORMAT
    assert caught.value.info.message == "Artifact is not JSONL"


async def test_log_store_rejects_mixed_run_ids(stores: RentlStores) -> None:
    entries = [_log_entry(uuid6.uuid7()), _log_entry(uuid6.uuid7())]
    with pytest.raises(StorageError) as caught:
        await stores.logs.append_logs(entries)
    assert caught.value.info.code == StorageErrorCode.VALIDATION_ERROR
    assert caught.value.info.details is not None
    assert caught.value.info.details.reason == "mixed_run_ids"


# -- what the vault adds or changes ---------------------------------------------------------------


async def test_absent_things_are_none_or_empty(stores: RentlStores) -> None:
    unknown = uuid6.uuid7()
    assert await stores.run_state.load_run_state(unknown) is None
    assert await stores.logs.get_log_reference(unknown) is None
    assert await stores.run_state.list_run_index() == []
    assert await stores.artifacts.list_artifacts(unknown) == []
    await stores.logs.append_logs([])  # nothing to do, no error
    # A run that exists (an artifact made it) but has no log yet: still no log file.
    await stores.artifacts.write_artifact_json(
        _artifact_metadata(unknown), _TestPayload(name="a", value=1)
    )
    assert await stores.logs.get_log_reference(unknown) is None
    assert await stores.run_state.load_run_state(unknown) is None


async def test_error_shape_and_response(stores: RentlStores) -> None:
    with pytest.raises(StorageError) as caught:
        await stores.artifacts.load_artifact_json(uuid6.uuid7(), _TestPayload)
    info = caught.value.info
    assert set(info.model_dump()) == {"code", "message", "details"}
    assert info.details is not None
    assert set(info.details.model_dump()) == {
        "operation",
        "run_id",
        "artifact_id",
        "backend",
        "path",
        "uri",
        "reason",
    }
    assert info.details.operation == "load_artifact_json"
    assert info.details.backend in ("sqlite", "postgres", "custom")
    response = info.to_error_response()
    assert (response.code, response.exit_code) == ("not_found", 23)
    with pytest.raises(StorageError) as caught:
        await stores.run_state.load_run_state("not-a-uuid")  # type: ignore[arg-type]
    assert caught.value.info.code == StorageErrorCode.VALIDATION_ERROR


async def test_index_keeps_every_rentl_field(stores: RentlStores, vault: Vault) -> None:
    run_id = uuid6.uuid7()
    record = RunIndexRecord(
        metadata=_run_metadata(run_id, RunStatus.FAILED).model_copy(
            update={"current_phase": PhaseName.QA, "started_at": "2026-01-26T00:00:00Z"}
        ),
        project_name="Visual Novel: Route A",  # not a strongroom name: kept all the same
        source_language="ja",
        target_languages=["en", "pt-BR"],
        updated_at="2026-01-26T00:00:09.5+02:00",
        progress=ProgressSummary(percent_complete=42.5, percent_mode=ProgressPercentMode.ESTIMATED),
        last_error=RunError(code="qa_failed", message="QA found issues", details={"n": 3}),
    )
    await stores.run_state.save_run_index(record)
    (listed,) = await stores.run_state.list_run_index()
    assert listed == record
    run = await vault.runs.get(str(run_id))
    assert run.current_phase == "qa"
    assert run.last_error is not None
    assert run.last_error.code == "qa_failed"


async def test_list_run_index_sorts_limits_and_keeps_the_latest_save(stores: RentlStores) -> None:
    first, second = uuid6.uuid7(), uuid6.uuid7()
    await stores.run_state.save_run_index(_index_record(first, updated_at="2026-01-01T00:00:00Z"))
    await stores.run_state.save_run_index(_index_record(second, updated_at="2026-01-02T00:00:00Z"))
    await stores.run_state.save_run_index(
        _index_record(first, RunStatus.RUNNING, updated_at="2026-01-03T00:00:00Z")
    )
    listed = await stores.run_state.list_run_index()
    assert [(r.metadata.run_id, r.metadata.status) for r in listed] == [
        (first, RunStatus.RUNNING),
        (second, RunStatus.PENDING),
    ]
    assert [r.metadata.run_id for r in await stores.run_state.list_run_index(limit=1)] == [first]
    assert await stores.run_state.list_run_index(status=RunStatus.COMPLETED) == []
    # Index records are not rentl artifacts of the run.
    assert await stores.artifacts.list_artifacts(first) == []


async def test_log_levels_map_both_ways(stores: RentlStores, vault: Vault) -> None:
    run_id = uuid6.uuid7()
    entries = [_log_entry(run_id, f"event_{level.value}", level) for level in LogLevel]
    await stores.logs.append_logs(entries)
    stored = await vault.logs.read(str(run_id))
    assert [e.level.value for e in stored] == ["debug", "info", "warning", "error"]
    back = await stores.logs.read_logs(run_id)
    assert [e.level for e in back] == ["debug", "info", "warn", "error"]
    assert [e.timestamp for e in back] == [e.timestamp for e in entries]


async def test_a_batch_with_bad_entries_stores_nothing(stores: RentlStores) -> None:
    run_id = uuid6.uuid7()
    good = _log_entry(run_id)
    bad = LogEntry.model_construct(**{**good.model_dump(), "message": "", "event": "Bad Event"})
    with pytest.raises(StorageBatchError) as caught:
        await stores.logs.append_logs([good, bad, bad])
    assert len(caught.value.errors) == 2
    assert all(e.code == StorageErrorCode.VALIDATION_ERROR for e in caught.value.errors)
    assert await stores.logs.get_log_reference(run_id) is None
    with pytest.raises(StorageError) as single:
        await stores.logs.append_log(bad)
    assert single.value.info.code == StorageErrorCode.VALIDATION_ERROR


async def test_status_mirror_close_run_and_verify(stores: RentlStores, vault: Vault) -> None:
    run_id = uuid6.uuid7()
    save = stores.run_state.save_run_state
    await save(RunStateRecord(run_id=run_id, stored_at=_now(), state=_run_state(run_id)))
    assert (await vault.runs.get(str(run_id))).status.value == "pending"
    await save(
        RunStateRecord(run_id=run_id, stored_at=_now(), state=_run_state(run_id, RunStatus.RUNNING))
    )
    assert (await vault.runs.get(str(run_id))).status.value == "running"
    await stores.logs.append_log(_log_entry(run_id, "run_started"))
    await save(
        RunStateRecord(
            run_id=run_id, stored_at=_now(), state=_run_state(run_id, RunStatus.COMPLETED)
        )
    )
    # rentl logs after completing a run, and may re-run it: the log stays open.
    assert (await vault.runs.get(str(run_id))).status.value == "paused"
    await stores.logs.append_log(_log_entry(run_id, "run_completed"))

    await stores.run_state.close_run(run_id)
    run = await vault.runs.get(str(run_id))
    assert run.status.value == "completed"
    reference = await stores.logs.get_log_reference(run_id)
    assert reference is not None
    assert reference.entry_count == 2
    with pytest.raises(StorageError) as caught:
        await stores.logs.append_log(_log_entry(run_id, "too_late"))
    assert caught.value.info.code == StorageErrorCode.CONFLICT

    history = await vault.snapshots.history(str(run_id))
    assert len(history) == 3
    report = await vault.verify()
    assert report.ok, report.problems


async def test_a_url_opens_the_vault_lazily(tmp_path: Path) -> None:
    stores = rentl_stores(tmp_path / "lazy")
    try:
        run_id = uuid6.uuid7()
        await stores.logs.append_log(_log_entry(run_id))
        assert await stores.logs.get_log_reference(run_id) is not None
    finally:
        await stores.aclose()
    async with await Vault.open(tmp_path / "lazy", create=False) as vault:
        assert len(await vault.logs.read(str(run_id))) == 1


async def test_tampered_artifact_is_an_io_error(tmp_path: Path) -> None:
    async with await Vault.open(tmp_path / "vault") as vault:
        stores = rentl_stores(vault)
        stored = await stores.artifacts.write_artifact_json(
            _artifact_metadata(uuid6.uuid7()), _TestPayload(name="x", value=1)
        )
        assert stored.location.path is None  # a small blob: a row of the records store
        assert stored.checksum_sha256 is not None
        await asyncio.to_thread(
            write_stored_blob, tmp_path / "vault", stored.checksum_sha256, b'{"name":"y","value":2}'
        )
        fresh = rentl_stores(vault)  # no cached id
        with pytest.raises(StorageError) as caught:
            await fresh.artifacts.load_artifact_json(stored.artifact_id, _TestPayload)
    info = caught.value.info
    assert info.code == StorageErrorCode.IO_ERROR
    assert info.details is not None
    assert info.details.reason is not None
    assert info.details.reason.startswith("integrity_error")


# -- the example, SIGKILLed mid-phase ------------------------------------------------------------


def _progress(work: Path) -> list[str]:
    marker = work / "phases.log"
    return marker.read_text().split() if marker.exists() else []


def test_example_resumes_after_sigkill_without_redoing_a_phase(tmp_path: Path) -> None:
    """Run the 4-phase example, SIGKILL it once it is inside `translate` (its second phase,
    seen through the side file each phase execution appends to), restart it and check that
    `ingest` ran once, `translate` ran again, and everything completes and verifies."""
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "RENTL_EXAMPLE_HOLD": "translate"}
    out = (tmp_path / "first.out").open("wb")
    with out:
        child = subprocess.Popen(
            [sys.executable, str(EXAMPLE), str(work)], stdout=out, stderr=out, env=env
        )
        deadline = time.monotonic() + 120
        while not (work / "translating").exists():
            assert child.poll() is None, (tmp_path / "first.out").read_text()
            assert time.monotonic() < deadline, "the example never reached translate"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert _progress(work) == ["ingest.started", "ingest.completed", "translate.started"]

    env.pop("RENTL_EXAMPLE_HOLD")
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), str(work)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    phases = _progress(work)
    assert phases.count("ingest.started") == 1
    assert phases.count("translate.started") == 2
    assert phases.count("translate.completed") == 1
    for phase in ("qa", "export"):
        assert phases.count(f"{phase}.started") == phases.count(f"{phase}.completed") == 1
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["resumed_from"] == ["ingest"]
    assert summary["segments"] == 200
    assert summary["exported"] == 200

    verified = subprocess.run(
        [sys.executable, "-m", "strongroom", "verify", "--vault", str(work / "vault")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
