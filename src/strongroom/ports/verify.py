"""What verify asks of a records store (`VerifyRecords`: blob references, record self-checks,
binding checks) and how it words a record that disagrees with the audit chain: one wording
for every records store (`binding_problem`, `log_head_problem`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable

from strongroom.models import RecordBinding, VerifyProblem

__all__ = [
    "BINDING_REASONS",
    "REFERENCE_BATCH",
    "ReferenceSink",
    "VerifyRecords",
    "binding_problem",
    "log_head_problem",
]

# verify's check of blob references, given (kind, subject, sha256, size_bytes) in batches of at
# most REFERENCE_BATCH as `VerifyRecords.iter_all_record_problems` reads the records.
ReferenceSink = Callable[[list[tuple[str, str, str, int]]], Awaitable[None]]
REFERENCE_BATCH = 1000

# The ``reason`` of every problem `binding_problem` and `log_head_problem` make.
BINDING_REASONS = frozenset(
    {"unbound", "deleted", "resurrected", "digest_mismatch", "log_truncated", "log_head_mismatch"}
)


def binding_problem(
    record_type: str,
    record_id: str,
    digest: str | None,
    latest: tuple[int, RecordBinding] | None,
) -> VerifyProblem | None:
    """What is wrong between a record (its canonical ``digest``; None: the record is missing)
    and its newest binding (audit seq and binding; None: the chain never named it)."""
    subject = f"{record_type}:{record_id}"
    if latest is None:
        if digest is None:
            return None
        return VerifyProblem(
            kind=record_type,
            code="integrity_error",
            subject=subject,
            message=f"{record_type} {record_id} has no entry in the audit chain: it was "
            "written behind strongroom's back",
            details={"reason": "unbound", "expected": None, "found": digest},
        )
    seq, binding = latest
    if binding.digest == digest:
        return None
    if digest is None:
        message = (
            f"{record_type} {record_id} is missing, but audit entry #{seq} records it: "
            "it was deleted behind strongroom's back"
        )
        reason = "deleted"
    elif binding.digest is None:
        message = (
            f"{record_type} {record_id} exists, but audit entry #{seq} records its "
            "deletion: it was put back behind strongroom's back"
        )
        reason = "resurrected"
    else:
        message = (
            f"{record_type} {record_id} is not the record audit entry #{seq} vouches for: "
            "it was edited, re-pointed or rolled back"
        )
        reason = "digest_mismatch"
    return VerifyProblem(
        kind=record_type,
        code="not_found" if reason == "deleted" else "integrity_error",
        subject=subject,
        message=message,
        details={"reason": reason, "audit_seq": seq, "expected": binding.digest, "found": digest},
    )


def log_head_problem(
    run_id: str, seq: int, binding: RecordBinding, found: str | None
) -> VerifyProblem:
    """The run's log no longer holds the head (line ``binding.seq``, hash ``binding.digest``)
    that audit entry ``seq`` carried; ``found`` is the hash of that line now, if any."""
    if found is None:
        message = (
            f"the log of run {run_id} has no line {binding.seq}, which audit entry #{seq} "
            "recorded as its head: lines were removed"
        )
    else:
        message = (
            f"line {binding.seq} of the log of run {run_id} is not the one audit entry #{seq} "
            "recorded: the log was rewritten"
        )
    return VerifyProblem(
        kind="log_chain",
        code="integrity_error",
        subject=f"log:{run_id}",
        message=message,
        details={
            "reason": "log_truncated" if found is None else "log_head_mismatch",
            "audit_seq": seq,
            "line": binding.seq,
            "expected": binding.digest,
            "found": found,
        },
    )


class VerifyRecords(ABC):
    """What verify reads of a records store beyond the chains (conformance:
    `strongroom.testing.VerifyRecordsTests`)."""

    @abstractmethod
    def iter_binding_problems(self) -> AsyncIterator[VerifyProblem]:
        """Every record whose canonical digest is not the one its latest binding carries, has
        no binding, or is missing while the chain says it exists (and log heads the chain
        carried that the log no longer has)."""

    @abstractmethod
    def iter_blob_references(self) -> AsyncIterator[tuple[str, str, str, int]]:
        """Every (kind, subject_id, sha256, size_bytes) a record holds: kind is 'snapshot'
        (subject 'run_id@revision'), 'artifact', 'object' or 'definition' (a published
        definition version, subject 'kind/definition_id@version'). Values are the ones reads
        use."""

    async def iter_record_problems(self) -> AsyncIterator[VerifyProblem]:
        """Records whose stored form contradicts itself: a row whose copy used for reads does
        not validate or disagrees with the columns kept for indexing (a hand edit).

        Note for implementers: a store that keeps one copy of each record yields nothing,
        which is this default.
        """
        return
        yield  # an async generator that yields nothing

    async def iter_all_record_problems(
        self, references: ReferenceSink | None = None
    ) -> AsyncIterator[VerifyProblem]:
        """What `iter_record_problems` and `iter_binding_problems` yield, together (verify
        calls this), and, when ``references`` is given, every blob reference of
        `iter_blob_references` passed to it in batches of at most `REFERENCE_BATCH`. A store
        that can do all of it in one read of each record overrides it (the SQL stores do)."""
        async for problem in self.iter_record_problems():
            yield problem
        async for problem in self.iter_binding_problems():
            yield problem
        if references is not None:
            batch: list[tuple[str, str, str, int]] = []
            async for reference in self.iter_blob_references():
                batch.append(reference)
                if len(batch) >= REFERENCE_BATCH:
                    await references(batch)
                    batch = []
            if batch:
                await references(batch)
