"""Checking a bundle the way ``strongroom verify`` checks a vault: `verify_bundle`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from strongroom.bundle.format import MANIFEST, RECORD_KINDS
from strongroom.bundle.reader import BundleReader, problem
from strongroom.models import (
    AuditEntry,
    LogEntry,
    LogReference,
    MerkleCheckpoint,
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
    problems = report.problems
    reader = BundleReader(path)
    await reader.open(check_files=False)
    file_problems = await asyncio.to_thread(reader.file_problems)
    problems.extend(file_problems)
    report.checked["records_files"] = len(RECORD_KINDS)
    if file_problems:  # unreadable records: the rest would only repeat it
        report.finished_at = utcnow()
        return report

    digests = [d async for d in reader.blobs.iter_digests()]
    sizes: dict[str, int] = {}
    done = 0

    def verified() -> None:
        nonlocal done
        done += 1
        progress("blobs", done, len(digests))

    for digest, outcome in zip(
        digests, await rehash_blobs(reader.blobs, digests, verified), strict=True
    ):
        if isinstance(outcome, int):
            sizes[digest] = outcome
        elif outcome is None:  # listed, then gone: nothing else writes to a bundle being read
            problems.append(problem("blob", digest, "not_found", f"blob {digest} vanished"))
        else:
            problems.append(problem("blob", digest, outcome.code, outcome.message))
    report.checked["blobs"] = len(digests)
    expected_blobs = reader.manifest.get("counts", {}).get("blobs")
    if expected_blobs != len(digests):
        problems.append(
            problem(
                "bundle_file",
                MANIFEST,
                "integrity_error",
                f"{MANIFEST} lists {expected_blobs} blobs, the bundle holds {len(digests)}",
            )
        )

    refs = 0
    stored = set(digests)
    referenced: set[str] = set()
    audit: list[AuditEntry] = []
    checkpoints: list[MerkleCheckpoint] = []
    log_refs: dict[str, LogReference] = {}
    artifact_ids: set[str] = set()
    chain: list[LogEntry] = []
    chains = log_lines = 0
    heads: dict[str, tuple[int, str]] = {}

    def close_chain() -> None:
        nonlocal chains, log_lines
        if chain:
            run_id = chain[0].run_id
            problems.extend(verify_chain(chain, subject_prefix=f"log:{run_id}", kind="log_chain"))
            chains += 1
            log_lines += len(chain)
            heads[run_id] = (len(chain), chain[-1].hash)
            chain.clear()

    for kind in RECORD_KINDS:
        async for batch in reader.records(kind):
            for record in batch:
                if kind.blob is not None:
                    refs += 1
                    digest, size = kind.blob(record)
                    referenced.add(digest)
                    subject = kind.key(record)
                    if digest not in stored:
                        problems.append(
                            problem(
                                _REF_KINDS[kind.name],
                                subject,
                                "not_found",
                                f"{kind.label} {subject} refers to missing blob sha256:{digest}",
                            )
                        )
                    elif digest in sizes and sizes[digest] != size:
                        problems.append(
                            problem(
                                _REF_KINDS[kind.name],
                                subject,
                                "integrity_error",
                                f"{kind.label} {subject} records {size} bytes but its blob "
                                f"has {sizes[digest]}",
                            )
                        )
                if kind.name == "artifacts":
                    artifact_ids.add(record.artifact_id)
                elif kind.name == "log_entries":
                    if chain and chain[0].run_id != record.run_id:
                        close_chain()
                    chain.append(record)
                elif kind.name == "log_references":
                    log_refs[record.run_id] = record
                elif kind.name == "audit_entries":
                    audit.append(record)
                elif kind.name == "checkpoints":
                    checkpoints.append(record)
            if kind.name == "log_entries":
                progress("logs", chains, None)
        close_chain()
        if kind.name == "log_entries":
            progress("logs", chains, chains)
    report.checked["references"] = refs
    report.checked["unreferenced_blobs"] = len(set(sizes) - referenced)
    for run_id, ref in log_refs.items():
        if not ref.sealed:
            continue
        count, head = heads.get(run_id, (0, None))
        if ref.entry_count != count or (count and ref.head_hash != head):
            problems.append(
                problem(
                    "log_chain",
                    f"log:{run_id}",
                    "integrity_error",
                    f"log was sealed with {ref.entry_count} entries and head {ref.head_hash}, "
                    f"the bundle has {count} entries",
                )
            )
        if ref.sealed_artifact_id and ref.sealed_artifact_id not in artifact_ids:
            problems.append(
                problem(
                    "log_chain",
                    f"log:{run_id}",
                    "not_found",
                    "sealed log artifact record is missing",
                )
            )
    report.checked["log_chains"] = chains
    report.checked["log_entries"] = log_lines

    problems.extend(verify_chain(audit, subject_prefix="audit", kind="audit_chain"))
    leaves = [bytes.fromhex(e.hash) for e in audit]
    for cp in checkpoints:
        if cp.tree_size > len(leaves) or merkle_root(leaves[: cp.tree_size]) != cp.root_hash:
            problems.append(
                problem(
                    "audit_checkpoint",
                    f"checkpoint@{cp.tree_size}",
                    "integrity_error",
                    "Merkle root of the audit entries does not match the checkpoint",
                )
            )
    report.checked["audit_entries"] = len(audit)
    report.checked["audit_checkpoints"] = len(checkpoints)
    progress("audit", 1, 1)
    await reader.close()
    report.finished_at = utcnow()
    return report
