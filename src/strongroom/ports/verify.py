"""What verify reports when a record and the audit chain disagree: one wording for every
records store (`MetadataStore.iter_binding_problems`)."""

from __future__ import annotations

from strongroom.models import RecordBinding, VerifyProblem

__all__ = ["BINDING_REASONS", "binding_problem", "log_head_problem"]

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
