"""The governed execution lane's records: a runner request and a runner response
(contracts.md, "Governed execution lane")."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from strongroom.errors import ErrorInfo
from strongroom.ids import ActorName, Digest, EntityId, SafeName
from strongroom.models._base import JsonValue, Record, UtcDatetime, utcnow
from strongroom.models.registry import GovernanceLevel
from strongroom.models.runs import Trace

__all__ = ["RunnerRequest", "RunnerResponse", "RunnerStatus"]


class RunnerStatus(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


class RunnerRequest(Record):
    """Run one tool once. ``tool_version`` is a version label, a channel (``production``...)
    or ``sha256:<digest>`` of the manifest version; None means the production channel, else
    the newest definition. ``governance`` (when given) must not be below the tool's own
    level: a caller may ask for stricter handling, never for laxer."""

    request_id: EntityId
    run_id: EntityId | None = None
    tool_id: SafeName
    tool_version: str | None = Field(default=None, max_length=128)
    requested_at: UtcDatetime = Field(default_factory=utcnow)
    caller: ActorName = "local"
    input: JsonValue = Field(default_factory=dict)
    governance: GovernanceLevel | None = None
    trace: Trace | None = None
    timeout_seconds: int | None = Field(default=None, ge=1, le=86_400)


class RunnerResponse(Record):
    """What happened. ``needs_review`` is set for A1 tools: the output is a draft that a human
    must review before it is used as a final output. ``attempts`` counts retries + 1."""

    request_id: EntityId
    run_id: EntityId | None = None
    tool_id: SafeName
    tool_version: str
    status: RunnerStatus
    started_at: UtcDatetime
    finished_at: UtcDatetime
    output: Any = None
    error: ErrorInfo | None = None
    trace: Trace | None = None
    needs_review: bool = False
    attempts: int = Field(default=1, ge=1)
    artifact_ids: list[EntityId] = Field(default_factory=list)
    output_sha256: Digest | None = Field(
        default=None, description="sha256 of the stored output artifact (the last artifact id)."
    )
    layers: list[str] = Field(default_factory=list, description="Isolation layers enforced.")
    degraded: bool = False
    usage: dict[str, Any] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is RunnerStatus.SUCCESS
