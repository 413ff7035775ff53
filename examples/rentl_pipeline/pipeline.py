"""A rentl-style translation pipeline (ingest -> translate -> qa -> export over 200 segments)
that stores everything through rentl's storage ports only, on a strongroom vault.

    python pipeline.py WORKDIR [VAULT_URL [BLOBS_URL]]

The vault defaults to WORKDIR/vault. Run it, kill it (even with SIGKILL) and run it again: the
restart finds the unfinished run in the run index, loads its state, reads the completed
phases' outputs back from their artifacts and runs only the phases that had not completed.

Each phase execution appends ``<phase>.started`` / ``<phase>.completed`` to
WORKDIR/phases.log, so a test can count executions. ``RENTL_EXAMPLE_HOLD=translate`` makes
the named phase stop halfway (it touches WORKDIR/translating and waits to be killed).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import uuid6
from pydantic import Field

# The one line that differs from a filesystem-backed rentl pipeline: where the ports come from.
from strongroom.integrations.rentl import RentlStores, rentl_stores
from strongroom.integrations.rentl.schemas import (
    ArtifactFormat,
    ArtifactMetadata,
    ArtifactReference,
    ArtifactRole,
    BaseSchema,
    FileFormat,
    LogEntry,
    LogLevel,
    PhaseArtifacts,
    PhaseName,
    PhaseProgress,
    PhaseRunRecord,
    PhaseStatus,
    ProgressPercentMode,
    ProgressSummary,
    RunIndexRecord,
    RunMetadata,
    RunProgress,
    RunState,
    RunStateRecord,
    RunStatus,
    StorageReference,
    VersionInfo,
)

PROJECT = "rentl-example"
PHASES = [PhaseName.INGEST, PhaseName.TRANSLATE, PhaseName.QA, PhaseName.EXPORT]
SEGMENTS = 200
TARGET = "en"


class Segment(BaseSchema):
    line_id: str = Field(..., description="Line identifier")
    text: str = Field(..., description="Source text")


class Translation(BaseSchema):
    line_id: str = Field(..., description="Line identifier")
    source: str = Field(..., description="Source text")
    text: str = Field(..., description="Translated text")


class QaResult(BaseSchema):
    line_id: str = Field(..., description="Line identifier")
    ok: bool = Field(..., description="Whether the line passed QA")
    issue: str | None = Field(None, description="What is wrong, if anything")


class ExportLine(BaseSchema):
    line_id: str = Field(..., description="Line identifier")
    text: str = Field(..., description="Final text")
    flagged: bool = Field(..., description="QA flagged the line")


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def mark(work: Path, what: str) -> None:
    with (work / "phases.log").open("a") as handle:
        handle.write(what + "\n")
        handle.flush()
        os.fsync(handle.fileno())


async def hold(work: Path, phase: PhaseName) -> None:
    if os.environ.get("RENTL_EXAMPLE_HOLD") == phase.value:
        (work / "translating").touch()
        await asyncio.Event().wait()  # never set: the test SIGKILLs us here


# -- the phases: pure functions of the previous phases' outputs --------------------------------


def ingest() -> list[Segment]:
    return [Segment(line_id=f"line_{i}", text=f"文 {i}: こんにちは世界") for i in range(SEGMENTS)]


def translate_one(segment: Segment) -> Translation:
    body = segment.text.split(": ", 1)[1].replace("こんにちは世界", "hello world")
    return Translation(line_id=segment.line_id, source=segment.text, text=body.capitalize())


def qa(translations: list[Translation]) -> list[QaResult]:
    return [
        QaResult(line_id=t.line_id, ok=not t.line_id.endswith("7"), issue=None)
        if not t.line_id.endswith("7")
        else QaResult(line_id=t.line_id, ok=False, issue="style: lines ending in 7 are suspect")
        for t in translations
    ]


def export(translations: list[Translation], results: list[QaResult]) -> list[ExportLine]:
    flagged = {r.line_id for r in results if not r.ok}
    return [
        ExportLine(line_id=t.line_id, text=t.text, flagged=t.line_id in flagged)
        for t in translations
    ]


# -- the orchestrator: rentl's run state bookkeeping over the ports ------------------------------


class Run:
    def __init__(self, stores: RentlStores, run_id: UUID, state: RunState) -> None:
        self.stores = stores
        self.run_id = run_id
        self.state = state

    @classmethod
    def new(cls, stores: RentlStores) -> Run:
        run_id = uuid6.uuid7()
        unavailable = ProgressSummary(percent_mode=ProgressPercentMode.UNAVAILABLE)
        state = RunState(
            metadata=RunMetadata(
                run_id=run_id,
                schema_version=VersionInfo(major=0, minor=1, patch=0),
                status=RunStatus.PENDING,
                created_at=now(),
            ),
            progress=RunProgress(
                phases=[
                    PhaseProgress(phase=p, status=PhaseStatus.PENDING, summary=unavailable)
                    for p in PHASES
                ],
                summary=unavailable,
            ),
            artifacts=[],
            phase_history=[],
        )
        return cls(stores, run_id, state)

    def completed(self) -> dict[str, PhaseRunRecord]:
        return {
            str(r.phase): r
            for r in self.state.phase_history or []
            if r.status == PhaseStatus.COMPLETED and not r.stale
        }

    async def log(self, event: str, message: str, phase: PhaseName | None = None) -> None:
        entry = LogEntry(
            timestamp=now(),
            level=LogLevel.INFO,
            event=event,
            run_id=self.run_id,
            phase=phase,
            message=message,
        )
        await self.stores.logs.append_log(entry)

    async def persist(self) -> None:
        stamp = now()
        done = len(self.completed())
        percent = 100.0 * done / len(PHASES)
        self.state.progress.summary = ProgressSummary(
            percent_complete=percent, percent_mode=ProgressPercentMode.LOWER_BOUND
        )
        store = self.stores.run_state
        await store.save_run_state(
            RunStateRecord(run_id=self.run_id, stored_at=stamp, state=self.state)
        )
        await store.save_run_index(
            RunIndexRecord(
                metadata=self.state.metadata,
                project_name=PROJECT,
                source_language="ja",
                target_languages=[TARGET],
                updated_at=stamp,
                progress=self.state.progress.summary,
            )
        )

    def set_phase(self, phase: PhaseName, status: PhaseStatus) -> None:
        for progress in self.state.progress.phases:
            if progress.phase == phase:
                progress.status = status
                if status == PhaseStatus.RUNNING:
                    progress.started_at = now()
                else:
                    progress.completed_at = now()

    async def phase(self, work: Path, phase: PhaseName, outputs: list[BaseSchema]) -> None:
        """Store a finished phase's outputs as one JSONL artifact and record completion."""
        metadata = ArtifactMetadata(
            artifact_id=uuid6.uuid7(),
            run_id=self.run_id,
            role=ArtifactRole.EXPORT if phase == PhaseName.EXPORT else ArtifactRole.PHASE_OUTPUT,
            phase=phase,
            target_language=None if phase == PhaseName.INGEST else TARGET,
            format=ArtifactFormat.JSONL,
            created_at=now(),
            location=StorageReference(path="pending.jsonl"),
            description=f"{phase.value} output",
        )
        stored = await self.stores.artifacts.write_artifact_jsonl(metadata, outputs)
        await self.log("artifact_persisted", f"{len(outputs)} records", phase)
        self.state.artifacts.append(
            PhaseArtifacts(
                phase=phase,
                artifacts=[
                    ArtifactReference(
                        artifact_id=stored.artifact_id,
                        path=stored.location.path or stored.location.uri or "vault",
                        uri=stored.location.uri,
                        format=FileFormat.JSONL,
                        created_at=stored.created_at,
                    )
                ],
            )
        )
        history = self.state.phase_history or []
        history.append(
            PhaseRunRecord(
                phase_run_id=uuid6.uuid7(),
                phase=phase,
                revision=1,
                status=PhaseStatus.COMPLETED,
                artifact_ids=[stored.artifact_id],
                completed_at=now(),
            )
        )
        self.state.phase_history = history
        self.set_phase(phase, PhaseStatus.COMPLETED)
        self.state.metadata.current_phase = None
        await self.log(f"{phase.value}_completed", "Phase completed", phase)
        await self.persist()
        mark(work, f"{phase.value}.completed")

    async def output(self, phase: PhaseName, model: type[BaseSchema]) -> list[BaseSchema]:
        record = self.completed()[phase.value]
        (artifact_id,) = record.artifact_ids or []
        loaded: list[BaseSchema] = await self.stores.artifacts.load_artifact_jsonl(
            artifact_id, model
        )
        return loaded


async def find_or_start(stores: RentlStores) -> tuple[Run, list[str]]:
    """The newest unfinished run of the project (from the run index), or a new one."""
    store = stores.run_state
    for record in await store.list_run_index(status=RunStatus.RUNNING):
        if record.project_name == PROJECT:
            saved = await store.load_run_state(record.metadata.run_id)
            if saved is not None:
                run = Run(stores, saved.run_id, saved.state)
                return run, sorted(run.completed())
    return Run.new(stores), []


async def main(work: Path, url: str, blobs_url: str | None) -> dict[str, object]:
    stores = rentl_stores(url, blobs_url=blobs_url, project=PROJECT)
    try:
        run, resumed_from = await find_or_start(stores)
        run.state.metadata.status = RunStatus.RUNNING
        run.state.metadata.started_at = run.state.metadata.started_at or now()
        await run.persist()
        await run.log("run_started", f"resumed after {resumed_from}" if resumed_from else "new")
        done = run.completed()

        for phase in PHASES:
            if phase.value in done:
                continue
            mark(work, f"{phase.value}.started")
            run.state.metadata.current_phase = phase
            run.set_phase(phase, PhaseStatus.RUNNING)
            await run.persist()
            await run.log(f"{phase.value}_started", "Phase started", phase)
            outputs: list[BaseSchema]
            if phase == PhaseName.INGEST:
                outputs = list(ingest())
            elif phase == PhaseName.TRANSLATE:
                segments = await run.output(PhaseName.INGEST, Segment)
                outputs = []
                for i, segment in enumerate(segments):
                    assert isinstance(segment, Segment)
                    outputs.append(translate_one(segment))
                    if i == SEGMENTS // 2:
                        await hold(work, phase)
            elif phase == PhaseName.QA:
                translations = await run.output(PhaseName.TRANSLATE, Translation)
                outputs = list(qa([t for t in translations if isinstance(t, Translation)]))
            else:
                translations = await run.output(PhaseName.TRANSLATE, Translation)
                results = await run.output(PhaseName.QA, QaResult)
                outputs = list(
                    export(
                        [t for t in translations if isinstance(t, Translation)],
                        [r for r in results if isinstance(r, QaResult)],
                    )
                )
            await run.phase(work, phase, outputs)

        run.state.metadata.status = RunStatus.COMPLETED
        run.state.metadata.completed_at = now()
        await run.persist()
        await run.log("run_completed", "Run completed")
        exported = await run.output(PhaseName.EXPORT, ExportLine)
        segments = await run.output(PhaseName.INGEST, Segment)
        return {
            "run_id": str(run.run_id),
            "resumed_from": resumed_from,
            "segments": len(segments),
            "exported": len(exported),
        }
    finally:
        await stores.aclose()


if __name__ == "__main__":
    workdir = Path(sys.argv[1])
    vault_url = sys.argv[2] if len(sys.argv) > 2 else str(workdir / "vault")
    blobs = sys.argv[3] if len(sys.argv) > 3 else None
    print(json.dumps(asyncio.run(main(workdir, vault_url, blobs))))
