"""The report `strongroom verify` produces, and what the audit chain keeps of it."""

from __future__ import annotations

from collections import Counter
from typing import Any, Final

from pydantic import Field

from strongroom.models._base import Record, UtcDatetime, utcnow

__all__ = [
    "VERIFIED_EVENT",
    "VerifiedProblem",
    "VerifyOutcome",
    "VerifyProblem",
    "VerifyRecord",
    "VerifyReport",
]

VERIFIED_EVENT: Final = "vault.verified"
"""The audit event a recorded verify appends (subject ``vault:verify``)."""


class VerifyProblem(Record):
    kind: str = Field(description="blob, snapshot, artifact, log_chain, audit_chain, checkpoint...")
    code: str = Field(description="integrity_error, not_found...")
    subject: str = Field(description="Id or digest of what failed.")
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class VerifyReport(Record):
    started_at: UtcDatetime = Field(default_factory=utcnow)
    finished_at: UtcDatetime | None = None
    checked: dict[str, int] = Field(default_factory=dict)
    problems: list[VerifyProblem] = Field(default_factory=list)
    warnings: list[VerifyProblem] = Field(
        default_factory=list,
        description="What is not a breach but wastes space: unused blobs, staging leftovers "
        "(their count and bytes); they never make the report fail.",
    )

    @property
    def ok(self) -> bool:
        return not self.problems


_KEPT_PROBLEMS: Final = 10  # problems a recorded outcome names (all are counted)


def _clip(value: object, most: int) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= most else text[: most - 3] + "..."


class VerifiedProblem(Record):
    """One problem as a recorded outcome names it: no message, bounded text."""

    kind: str = Field(max_length=64)
    code: str = Field(max_length=64)
    subject: str = Field(max_length=200)
    reason: str | None = Field(default=None, max_length=64)


class VerifyOutcome(Record):
    """What a recorded verify keeps (the ``details`` of its ``vault.verified`` audit entry):
    bounded whatever the report holds: the counts, how many problems of each kind, and the
    first `_KEPT_PROBLEMS` problems without their messages."""

    ok: bool
    started_at: UtcDatetime
    finished_at: UtcDatetime | None = None
    checked: dict[str, int] = Field(default_factory=dict, max_length=64)
    problem_count: int = Field(default=0, ge=0)
    problem_kinds: dict[str, int] = Field(default_factory=dict, max_length=64)
    problems: list[VerifiedProblem] = Field(default_factory=list, max_length=_KEPT_PROBLEMS)

    @classmethod
    def of(cls, report: VerifyReport) -> VerifyOutcome:
        kinds = Counter(_clip(p.kind, 64) for p in report.problems)
        reasons = (p.details.get("reason") for p in report.problems[:_KEPT_PROBLEMS])
        return cls(
            ok=report.ok,
            started_at=report.started_at,
            finished_at=report.finished_at,
            checked=dict(list(report.checked.items())[:64]),
            problem_count=len(report.problems),
            problem_kinds=dict(kinds.most_common(64)),
            problems=[
                VerifiedProblem(
                    kind=_clip(p.kind, 64),
                    code=_clip(p.code, 64),
                    subject=_clip(p.subject, 200),
                    reason=None if reason is None else _clip(reason, 64),
                )
                for p, reason in zip(report.problems, reasons, strict=False)
            ],
        )


class VerifyRecord(Record):
    """The newest recorded verify (`AuditService.last_verify`): when (the audit entry's
    time), by whom (its actor), at which entry, and what it found."""

    seq: int = Field(ge=1)
    timestamp: UtcDatetime
    actor: str
    outcome: VerifyOutcome
