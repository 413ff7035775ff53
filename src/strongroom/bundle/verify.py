"""Checking a bundle the way ``strongroom verify`` checks a vault: `verify_bundle`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strongroom.bundle.format import MANIFEST, RECORD_KINDS, RecordKind
from strongroom.bundle.reader import BundleReader, problem
from strongroom.models import (
    AuditEntry,
    LogEntry,
    LogReference,
    MerkleCheckpoint,
    VerifyProblem,
    VerifyReport,
    utcnow,
)
from strongroom.services import rehash_blobs, verify_chain
from strongroom.services.audit import merkle_root
from strongroom.services.verify import ProgressCallback

__all__ = ["verify_bundle"]


_REF_KINDS = {
    "snapshots": "snapshot",
    "artifacts": "artifact",
    "objects": "object",
    "definition_versions": "definition",
}


def _noop(stage: str, done: int, total: int | None) -> None:
    return None


async def verify_bundle(path: Path, *, on_progress: ProgressCallback | None = None) -> VerifyReport:
    """Check a finished bundle the way ``strongroom verify`` checks a vault: records files
    against the manifest, every blob re-hashed, every blob reference, every log chain, the
    audit chain and its Merkle checkpoints. Problems are reported, not raised."""
    progress = on_progress or _noop
    report = VerifyReport()
    reader = BundleReader(path)
    await reader.open(check_files=False)
    try:
        file_problems = await asyncio.to_thread(reader.file_problems)
        report.problems.extend(file_problems)
        report.checked["records_files"] = len(RECORD_KINDS)
        if not file_problems:  # unreadable records: the rest would only repeat it
            stored, sizes = await _check_blobs(reader, report, progress)
            walk = _RecordWalk(report.problems, stored, sizes)
            await walk.run(reader, progress)
            walk.report(report)
            _check_audit(walk.audit, walk.checkpoints, report)
            progress("audit", 1, 1)
    finally:
        await reader.close()
    report.finished_at = utcnow()
    return report


async def _check_blobs(
    reader: BundleReader, report: VerifyReport, progress: ProgressCallback
) -> tuple[set[str], dict[str, int]]:
    """Re-hash every blob of the bundle (the one re-hash loop of every verify) and hold the
    count against the manifest's: the digests stored, and the verified size of each good
    blob."""
    digests = [d async for d in reader.blobs.iter_digests()]
    sizes: dict[str, int] = {}
    done = 0

    def verified() -> None:
        nonlocal done
        done += 1
        progress("blobs", done, len(digests))

    outcomes = await rehash_blobs(reader.blobs, digests, verified)
    for digest, outcome in zip(digests, outcomes, strict=True):
        if isinstance(outcome, int):
            sizes[digest] = outcome
        elif outcome is None:  # listed, then gone: nothing else writes to a bundle being read
            report.problems.append(problem("blob", digest, "not_found", f"blob {digest} vanished"))
        else:
            report.problems.append(problem("blob", digest, outcome.code, outcome.message))
    report.checked["blobs"] = len(digests)
    expected_blobs = reader.manifest.get("counts", {}).get("blobs")
    if expected_blobs != len(digests):
        report.problems.append(
            problem(
                "bundle_file",
                MANIFEST,
                "integrity_error",
                f"{MANIFEST} lists {expected_blobs} blobs, the bundle holds {len(digests)}",
            )
        )
    return set(digests), sizes


@dataclass
class _RecordWalk:
    """One pass over the bundle's records: blob references checked against the verified
    blobs, log chains replayed run by run, what the audit checks need kept."""

    problems: list[VerifyProblem]
    stored: set[str]
    sizes: dict[str, int]
    refs: int = 0
    referenced: set[str] = field(default_factory=set)
    audit: list[AuditEntry] = field(default_factory=list)
    checkpoints: list[MerkleCheckpoint] = field(default_factory=list)
    log_refs: dict[str, LogReference] = field(default_factory=dict)
    artifact_ids: set[str] = field(default_factory=set)
    chain: list[LogEntry] = field(default_factory=list)
    chains: int = 0
    log_lines: int = 0
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)

    async def run(self, reader: BundleReader, progress: ProgressCallback) -> None:
        for kind in RECORD_KINDS:
            async for batch in reader.records(kind):
                for record in batch:
                    self.take(kind, record)
                if kind.name == "log_entries":
                    progress("logs", self.chains, None)
            self.close_chain()
            if kind.name == "log_entries":
                progress("logs", self.chains, self.chains)

    def take(self, kind: RecordKind, record: Any) -> None:
        if kind.blob is not None:
            self.check_reference(kind, record)
        if kind.name == "artifacts":
            self.artifact_ids.add(record.artifact_id)
        elif kind.name == "log_entries":
            if self.chain and self.chain[0].run_id != record.run_id:
                self.close_chain()
            self.chain.append(record)
        elif kind.name == "log_references":
            self.log_refs[record.run_id] = record
        elif kind.name == "audit_entries":
            self.audit.append(record)
        elif kind.name == "checkpoints":
            self.checkpoints.append(record)

    def check_reference(self, kind: RecordKind, record: Any) -> None:
        """A record's blob must be in the bundle, with the size the record says."""
        assert kind.blob is not None
        self.refs += 1
        digest, size = kind.blob(record)
        self.referenced.add(digest)
        subject = kind.key(record)
        if digest not in self.stored:
            self.problems.append(
                problem(
                    _REF_KINDS[kind.name],
                    subject,
                    "not_found",
                    f"{kind.label} {subject} refers to missing blob sha256:{digest}",
                )
            )
        elif digest in self.sizes and self.sizes[digest] != size:
            self.problems.append(
                problem(
                    _REF_KINDS[kind.name],
                    subject,
                    "integrity_error",
                    f"{kind.label} {subject} records {size} bytes but its blob "
                    f"has {self.sizes[digest]}",
                )
            )

    def close_chain(self) -> None:
        """Replay the log chain of the run just read."""
        if not self.chain:
            return
        run_id = self.chain[0].run_id
        self.problems.extend(
            verify_chain(self.chain, subject_prefix=f"log:{run_id}", kind="log_chain")
        )
        self.chains += 1
        self.log_lines += len(self.chain)
        self.heads[run_id] = (len(self.chain), self.chain[-1].hash)
        self.chain.clear()

    def report(self, report: VerifyReport) -> None:
        """The counts, and each sealed log held against its chain and its artifact."""
        report.checked["references"] = self.refs
        report.checked["unreferenced_blobs"] = len(set(self.sizes) - self.referenced)
        for run_id, ref in self.log_refs.items():
            if ref.sealed:
                self.problems.extend(self._sealed_log_problems(run_id, ref))
        report.checked["log_chains"] = self.chains
        report.checked["log_entries"] = self.log_lines

    def _sealed_log_problems(self, run_id: str, ref: LogReference) -> list[VerifyProblem]:
        found: list[VerifyProblem] = []
        count, head = self.heads.get(run_id, (0, None))
        if ref.entry_count != count or (count and ref.head_hash != head):
            found.append(
                problem(
                    "log_chain",
                    f"log:{run_id}",
                    "integrity_error",
                    f"log was sealed with {ref.entry_count} entries and head {ref.head_hash}, "
                    f"the bundle has {count} entries",
                )
            )
        if ref.sealed_artifact_id and ref.sealed_artifact_id not in self.artifact_ids:
            found.append(
                problem(
                    "log_chain",
                    f"log:{run_id}",
                    "not_found",
                    "sealed log artifact record is missing",
                )
            )
        return found


def _check_audit(
    audit: list[AuditEntry], checkpoints: list[MerkleCheckpoint], report: VerifyReport
) -> None:
    """Replay the audit chain and hold every checkpoint's Merkle root against it."""
    report.problems.extend(verify_chain(audit, subject_prefix="audit", kind="audit_chain"))
    leaves = [bytes.fromhex(e.hash) for e in audit]
    for cp in checkpoints:
        if cp.tree_size > len(leaves) or merkle_root(leaves[: cp.tree_size]) != cp.root_hash:
            report.problems.append(
                problem(
                    "audit_checkpoint",
                    f"checkpoint@{cp.tree_size}",
                    "integrity_error",
                    "Merkle root of the audit entries does not match the checkpoint",
                )
            )
    report.checked["audit_entries"] = len(audit)
    report.checked["audit_checkpoints"] = len(checkpoints)
