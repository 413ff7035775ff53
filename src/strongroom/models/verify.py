"""The report `strongroom verify` produces."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from strongroom.models._base import Record, UtcDatetime, utcnow

__all__ = ["VerifyProblem", "VerifyReport"]


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

    @property
    def ok(self) -> bool:
        return not self.problems
