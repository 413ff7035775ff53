"""The sample run of ``make demo``: a simulated document-translation pipeline (ingest →
translate → qa → export) recorded in a vault by `record_demo_run`. No model is called, but
everything stored is real: the run and its phases, log lines (one carrying a fake API key,
redacted before storage), a state snapshot after each phase, and JSONL, JSON, CSV and zip
artifacts; the vault is verified at the end and the result returned as a `DemoResult`.
"""

from __future__ import annotations

import asyncio
import csv
import io
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from strongroom.models import (
    ArtifactMetadata,
    ArtifactRef,
    ErrorInfo,
    LogLevel,
    LogQuery,
    PhaseEvent,
    Progress,
    Run,
    RunState,
    SnapshotRecord,
    VerifyReport,
)
from strongroom.vault import Vault

__all__ = [
    "DOCUMENT",
    "FAKE_API_KEY",
    "PHASES",
    "PROJECT",
    "TARGET_LANGUAGE",
    "DemoResult",
    "PhaseSummary",
    "SourceSegment",
    "TranslatedSegment",
    "TranslationBatch",
    "record_demo_run",
]

PROJECT = "demo-docs"
PHASES = ("ingest", "translate", "qa", "export")
TARGET_LANGUAGE = "fr"
DOCUMENT = "user-guide.md"
FAKE_API_KEY = "sk-demo-1234567890abcdef"  # not a real key: it shows redaction at work


class SourceSegment(BaseModel):
    segment_id: str
    document: str
    position: int
    text: str


class TranslatedSegment(BaseModel):
    segment_id: str
    language: str
    source: str
    target: str


class TranslationBatch(BaseModel):
    document: str
    language: str
    engine: str
    segments: list[TranslatedSegment]


_SOURCE_AND_TARGET = [
    (
        "Welcome to the strongroom user guide.",
        "Bienvenue dans le guide de l'utilisateur de strongroom.",
    ),
    (
        "Every run keeps a history of its state.",
        "Chaque exécution conserve l'historique de son état.",
    ),
    (
        "Artifacts are stored once and never change.",
        "Les artefacts sont stockés une fois et ne changent jamais.",
    ),
    ("Logs are chained by hash.", "Les journaux sont chaînés par empreinte SHA-256."),
    (
        "Run verify to prove nothing was altered.",
        "Lancez verify pour prouver que rien n'a été modifié.",
    ),
    ("Thank you for reading.", "Merci de votre lecture."),
]
# A translation this much longer than its source gets a QA warning.
_LENGTH_RATIO_LIMIT = 1.6


@dataclass
class PhaseSummary:
    name: str
    artifacts: list[ArtifactMetadata] = field(default_factory=list)
    log_lines: int = 0
    revision: int = 0


@dataclass
class DemoResult:
    """What `record_demo_run` did: enough to print a summary or assert on in tests."""

    run: Run
    phases: list[PhaseSummary]
    artifacts: list[ArtifactMetadata]
    snapshots: list[SnapshotRecord]
    log_entries: int
    redacted_example: str
    report: VerifyReport
    runs_in_vault: int


class _Pipeline:
    """The simulated pipeline: each phase logs, stores its outputs, updates the run and
    snapshots the resumable state, the way the orchestrator will."""

    def __init__(self, vault: Vault, run: Run) -> None:
        self.vault = vault
        self.run = run
        self.state = RunState(progress=Progress(steps_total=len(PHASES)))
        self.revision = 0
        self.phases: list[PhaseSummary] = []

    async def log(
        self,
        phase: PhaseSummary,
        event: str,
        message: str,
        level: LogLevel = LogLevel.INFO,
        **data: Any,
    ) -> None:
        await self.vault.logs.append(
            self.run.run_id,
            {"level": level, "event": event, "phase": phase.name, "message": message, "data": data},
        )
        phase.log_lines += 1

    async def begin(self, name: str) -> PhaseSummary:
        phase = PhaseSummary(name)
        self.phases.append(phase)
        done = len(self.phases) - 1
        self.run = await self.vault.runs.update(
            self.run.run_id,
            current_phase=name,
            progress=Progress(
                steps_total=len(PHASES), steps_completed=done, message=f"{name} running"
            ),
        )
        self.state.phase_history.append(PhaseEvent(phase=name, status="started"))
        await self.log(phase, "phase.started", f"{name}: started")
        return phase

    async def end(self, phase: PhaseSummary, **data: Any) -> None:
        ids = [a.artifact_id for a in phase.artifacts]
        await self.log(phase, "phase.completed", f"{phase.name}: completed", artifacts=len(ids))
        self.revision += 1
        done = len(self.phases)
        progress = Progress(
            steps_total=len(PHASES), steps_completed=done, message=f"{phase.name} done"
        )
        self.state.phase_history.append(
            PhaseEvent(
                phase=phase.name, status="completed", revision=self.revision, artifact_ids=ids
            )
        )
        self.state.phase_revisions[phase.name] = self.revision
        self.state.phase_artifacts[phase.name] = ids
        self.state.progress = progress
        self.state.data.update(data)
        record = await self.vault.snapshots.save(
            self.run.run_id, self.state, expected_revision=self.revision - 1
        )
        phase.revision = record.revision
        self.run = await self.vault.runs.update(self.run.run_id, progress=progress)

    async def ingest(self) -> list[SourceSegment]:
        phase = await self.begin("ingest")
        segments = [
            SourceSegment(segment_id=f"s-{i:03d}", document=DOCUMENT, position=i, text=source)
            for i, (source, _) in enumerate(_SOURCE_AND_TARGET, start=1)
        ]
        await self.log(
            phase,
            "ingest.segmented",
            f"split {DOCUMENT} into {len(segments)} segments",
            LogLevel.DEBUG,
            document=DOCUMENT,
            segments=len(segments),
        )
        artifact = await self.vault.artifacts.put_models(
            self.run.run_id,
            segments,
            role="phase_output",
            phase="ingest",
            name="source_segments.jsonl",
            description="Source segments of the user guide, one JSON object per line",
            tags=["source", f"doc:{DOCUMENT}"],
        )
        phase.artifacts.append(artifact)
        await self.log(
            phase, "artifact.stored", "source segments stored", artifact_id=artifact.artifact_id
        )
        await self.end(phase, document=DOCUMENT, segments=len(segments))
        return segments

    async def translate(self, segments: list[SourceSegment]) -> TranslationBatch:
        phase = await self.begin("translate")
        # The kind of line that leaks credentials into logs: redaction removes the key before
        # the line is hashed and stored.
        await self.log(
            phase,
            "translate.request",
            f"calling translation API at https://mt.example.com/v1 with api_key={FAKE_API_KEY}",
            LogLevel.DEBUG,
            endpoint="https://mt.example.com/v1",
            api_key=FAKE_API_KEY,
        )
        targets = dict(
            zip([s.segment_id for s in segments], [t for _, t in _SOURCE_AND_TARGET], strict=True)
        )
        batch = TranslationBatch(
            document=DOCUMENT,
            language=TARGET_LANGUAGE,
            engine="demo-mt-1",
            segments=[
                TranslatedSegment(
                    segment_id=s.segment_id,
                    language=TARGET_LANGUAGE,
                    source=s.text,
                    target=targets[s.segment_id],
                )
                for s in segments
            ],
        )
        await self.log(
            phase,
            "translate.batch",
            f"translated {len(batch.segments)} segments into {TARGET_LANGUAGE}",
            chars_in=sum(len(s.source) for s in batch.segments),
            chars_out=sum(len(s.target) for s in batch.segments),
        )
        artifact = await self.vault.artifacts.put_model(
            self.run.run_id,
            batch,
            role="phase_output",
            phase="translate",
            label=TARGET_LANGUAGE,
            name=f"translations.{TARGET_LANGUAGE}.json",
            description="Translated segments",
            tags=[f"lang:{TARGET_LANGUAGE}"],
        )
        phase.artifacts.append(artifact)
        await self.end(phase, target_language=TARGET_LANGUAGE)
        return batch

    async def qa(self, batch: TranslationBatch) -> str:
        phase = await self.begin("qa")
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["segment_id", "source_chars", "target_chars", "length_ratio", "status"])
        warnings = 0
        for seg in batch.segments:
            ratio = len(seg.target) / len(seg.source)
            status = "ok" if ratio <= _LENGTH_RATIO_LIMIT else "warning"
            if status == "warning":
                warnings += 1
                await self.log(
                    phase,
                    "qa.length_ratio",
                    f"segment {seg.segment_id}: translation is {ratio:.2f}x the source length "
                    f"(limit {_LENGTH_RATIO_LIMIT}x)",
                    LogLevel.WARNING,
                    segment_id=seg.segment_id,
                    ratio=round(ratio, 2),
                    limit=_LENGTH_RATIO_LIMIT,
                )
            writer.writerow(
                [seg.segment_id, len(seg.source), len(seg.target), f"{ratio:.2f}", status]
            )
        report = out.getvalue()
        with tempfile.TemporaryDirectory(prefix="strongroom-demo-") as tmp:
            path = Path(tmp) / "qa_report.csv"
            await asyncio.to_thread(path.write_text, report, encoding="utf-8")
            artifact = await self.vault.artifacts.put_file(
                self.run.run_id,
                path,
                role="report",
                phase="qa",
                label=TARGET_LANGUAGE,
                description="Length-ratio QA of every translated segment",
            )
        phase.artifacts.append(artifact)
        await self.log(
            phase,
            "qa.summary",
            f"{len(batch.segments)} segments checked, {warnings} warning(s)",
            checked=len(batch.segments),
            warnings=warnings,
        )
        await self.end(phase, qa_warnings=warnings)
        return report

    async def export(self, batch: TranslationBatch, qa_report: str) -> ArtifactMetadata:
        phase = await self.begin("export")
        files = {
            f"{Path(DOCUMENT).stem}.{TARGET_LANGUAGE}.md": "\n\n".join(
                s.target for s in batch.segments
            )
            + "\n",
            f"translations.{TARGET_LANGUAGE}.json": batch.model_dump_json(indent=2),
            "qa_report.csv": qa_report,
        }
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, text in files.items():
                # A fixed timestamp keeps the archive byte-identical across demo runs, so the
                # vault stores it once however often the demo runs.
                info = zipfile.ZipInfo(name, date_time=(2025, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, text)
        await self.log(
            phase,
            "export.packed",
            f"packed {len(files)} files into the export archive",
            LogLevel.DEBUG,
            files=sorted(files),
        )
        artifact = await self.vault.artifacts.put_bytes(
            self.run.run_id,
            buffer.getvalue(),
            role="export",
            phase="export",
            label=TARGET_LANGUAGE,
            format="binary",
            media_type="application/zip",
            name=f"{Path(DOCUMENT).stem}.{TARGET_LANGUAGE}.zip",
            description="Translated guide, translations and QA report",
        )
        phase.artifacts.append(artifact)
        await self.end(phase, export=artifact.name)
        return artifact


async def record_demo_run(vault: Vault) -> DemoResult:
    """Record one complete sample run in ``vault``, then verify the whole vault."""
    run = await vault.runs.create(
        project=PROJECT,
        actor="demo",
        purpose=f"Translate {DOCUMENT} into French, check length ratios, export a bundle",
    )
    await vault.runs.start(run.run_id)
    pipeline = _Pipeline(vault, run)
    try:
        segments = await pipeline.ingest()
        batch = await pipeline.translate(segments)
        qa_report = await pipeline.qa(batch)
        export = await pipeline.export(batch, qa_report)
    except Exception as exc:
        # A failed run is recorded as failed (with its error) rather than left running.
        await vault.runs.fail(
            run.run_id,
            ErrorInfo(code="demo_failed", message=f"{type(exc).__name__}: {exc}"),
            actor="demo",
        )
        raise
    await vault.runs.update(
        run.run_id,
        outputs=[
            ArtifactRef(artifact_id=export.artifact_id, sha256=export.sha256, name=export.name)
        ],
        progress=Progress(steps_total=len(PHASES), steps_completed=len(PHASES), message="done"),
    )
    final = await vault.runs.complete(run.run_id, actor="demo")  # seals the log
    manifest = await vault.artifacts.manifest(run.run_id)
    snapshots = await vault.snapshots.history(run.run_id)
    log_ref = await vault.logs.reference(run.run_id)
    requests = await vault.logs.read(run.run_id, LogQuery(event="translate.request"))
    redacted = requests[0].message if requests else ""
    report = await vault.verify()
    runs_in_vault = (await vault.runs.list(limit=1, count_limit=None)).total
    return DemoResult(
        run=final,
        phases=pipeline.phases,
        artifacts=manifest.artifacts,
        snapshots=snapshots,
        log_entries=log_ref.entry_count,
        redacted_example=redacted,
        report=report,
        runs_in_vault=runs_in_vault,
    )
