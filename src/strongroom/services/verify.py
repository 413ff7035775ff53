"""`strongroom verify`: re-hash every blob, check every record's blob exists with the right
size, replay every run log chain and the audit chain with its Merkle checkpoints (and, when
given, the heads anchored outside the vault), check every record against the digest its latest
audit binding carries, and check the registry (definition blobs, channel history).

Every chain is read by the rows' own keys in pages, so memory is bounded by a page and a
forged value inside a row cannot make the walk go back or loop."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from strongroom.errors import IntegrityError, NotFound, StrongroomError
from strongroom.integrity import SignedTreeHead
from strongroom.models import VerifyProblem, VerifyReport, utcnow
from strongroom.ports import BlobStore, MetadataStore, RegistryRecords
from strongroom.services._replay import AuditReplay
from strongroom.services.audit import AuditService
from strongroom.services.logs import LogService
from strongroom.services.registry import verify_registry

__all__ = ["ProgressCallback", "verify_vault"]

# (stage, done, total or None when unknown)
ProgressCallback = Callable[[str, int, int | None], None]


def _noop(stage: str, done: int, total: int | None) -> None:
    return None


async def verify_vault(
    store: MetadataStore,
    blobs: BlobStore,
    logs: LogService,
    audit: AuditService,
    *,
    on_progress: ProgressCallback | None = None,
    anchors: Sequence[SignedTreeHead] = (),
    trusted_keys: Collection[str] | None = None,
) -> VerifyReport:
    """Check everything; ``anchors`` are signed heads read from a witness outside the vault
    (the chain must extend each), ``trusted_keys`` the public keys (hex) whose signatures on
    checkpoints and anchors count (None: any valid signature)."""
    progress = on_progress or _noop
    report = VerifyReport()
    problems = report.problems

    digests = [d async for d in blobs.iter_digests()]
    sizes: dict[str, int] = {}
    for i, digest in enumerate(digests, start=1):
        try:
            sizes[digest] = (await blobs.verify(digest)).size_bytes
        except IntegrityError as exc:
            problems.append(_problem("blob", digest, exc))
        except NotFound:
            pass  # deleted while we walked: not a corruption
        except StrongroomError as exc:
            problems.append(_problem("blob", digest, exc))
        progress("blobs", i, len(digests))
    report.checked["blobs"] = len(digests)

    referenced: set[str] = set()
    damaged = {p.subject: p for p in problems}
    refs = 0
    async for kind, subject, digest, size in store.iter_blob_references():
        refs += 1
        referenced.add(digest)
        if digest not in sizes:
            if not await blobs.exists(digest):
                problems.append(
                    VerifyProblem(
                        kind=kind,
                        code="not_found",
                        subject=subject,
                        message=f"{kind} {subject} refers to missing blob sha256:{digest}",
                        details={"sha256": digest},
                    )
                )
            elif digest in damaged:
                # Reported once under "blob"; name who depends on it there.
                problem = damaged[digest]
                problem.details.setdefault("referenced_by", []).append(f"{kind}:{subject}")
        elif sizes[digest] != size:
            problems.append(
                VerifyProblem(
                    kind=kind,
                    code="integrity_error",
                    subject=subject,
                    message=f"{kind} {subject} records {size} bytes but its blob has "
                    f"{sizes[digest]}",
                    details={"sha256": digest},
                )
            )
        progress("references", refs, None)
    report.checked["references"] = refs
    for problem in damaged.values():
        users = problem.details.get("referenced_by")
        if users:
            problem.message += f" (used by {', '.join(users[:5])}"
            problem.message += f" and {len(users) - 5} more)" if len(users) > 5 else ")"
    report.checked["unreferenced_blobs"] = len(set(sizes) - referenced)

    records = 0
    async for problem in store.iter_record_problems():
        records += 1
        problems.append(problem)
    progress("records", 1, 1)
    report.checked["inconsistent_records"] = records

    run_ids = [r async for r in store.iter_log_run_ids()]
    lines = 0
    for i, run_id in enumerate(run_ids, start=1):
        count, found = await logs.verify_run(run_id)
        lines += count
        problems.extend(found)
        progress("logs", i, len(run_ids))
    report.checked["log_chains"] = len(run_ids)
    report.checked["log_entries"] = lines

    head = await audit.head()
    replay = AuditReplay(await audit.checkpoints(), anchors, trusted_keys)
    replay.plan_proof(head.seq if head else 0)
    total = head.seq if head else None
    async for row in audit.rows():
        replay.feed(row)
        if replay.count % 1000 == 0:
            progress("audit", replay.count, total)
    replay.finish()
    problems.extend(replay.problems)
    report.checked["audit_entries"] = replay.count
    report.checked["audit_checkpoints"] = len(replay.checkpoints)
    report.checked["signed_checkpoints"] = replay.signed_checkpoints
    report.checked["anchored_heads"] = len(replay.anchors)
    progress("audit", replay.count, replay.count)

    bound = 0
    async for problem in store.iter_binding_problems():
        bound += 1
        problems.append(problem)
    report.checked["binding_problems"] = bound
    progress("bindings", 1, 1)

    if isinstance(store, RegistryRecords):
        counts, found = await verify_registry(store, blobs, audit, verified=sizes)
        problems.extend(found)
        report.checked.update(counts)
        progress("registry", 1, 1)

    report.finished_at = utcnow()
    return report


def _problem(kind: str, subject: str, exc: StrongroomError) -> VerifyProblem:
    return VerifyProblem(
        kind=kind, code=exc.code, subject=subject, message=exc.message, details=exc.details
    )
