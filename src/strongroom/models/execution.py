"""The governed execution lane's records: a runner request and a runner response
(contracts.md, "Governed execution lane")."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from strongroom.errors import ErrorInfo
from strongroom.ids import ActorName, Digest, EntityId, SafeName
from strongroom.models._base import JsonValue, Record, UtcDatetime, utcnow
from strongroom.models.registry import GovernanceLevel
from strongroom.models.runs import Trace

__all__ = [
    "RequestGovernance",
    "RequestTrace",
    "RunnerRequest",
    "RunnerResponse",
    "RunnerStatus",
    "StepWorker",
]


class RunnerStatus(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


class RequestGovernance(Record):
    """The governance a caller asks for (Mass Relay's ``{level, requires_hitl,
    requires_run_logging}``; a bare level ``"A2"`` means ``{"level": "A2"}``). Only ever
    makes the run stricter: a higher level than the tool's raises it, ``requires_hitl`` adds
    a human review, ``requires_run_logging: false`` is recorded but never turns logging
    off."""

    level: GovernanceLevel
    requires_hitl: bool | None = None
    requires_run_logging: bool | None = None


def _governance(value: Any) -> Any:
    return {"level": value} if isinstance(value, str | GovernanceLevel) else value


_TRACE_ID = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"


class RequestTrace(Record):
    """A caller's trace context. Ids are the caller's own (Mass Relay writes
    ``trace-0a1b2c3d4e``): 1-128 letters, digits and ``._:/-``. When both are W3C-shaped
    (32 and 16 lowercase hex digits) the runner's ad-hoc run also carries them as its
    `strongroom.models.Trace`."""

    trace_id: str = Field(pattern=_TRACE_ID)
    span_id: str = Field(pattern=_TRACE_ID)

    def w3c(self) -> Trace | None:
        """The trace as a run's `Trace` (None: the ids are not W3C hex)."""
        try:
            return Trace(trace_id=self.trace_id, span_id=self.span_id)
        except ValueError:
            return None


def _trace(value: Any) -> Any:
    if isinstance(value, Trace):
        return value.model_dump()
    return value


class RunnerRequest(Record):
    """Run one tool once. ``tool_version`` is a version label, a channel (``production``...)
    or ``sha256:<digest>`` of the manifest version; None means the production channel, else
    the newest definition. ``governance`` (when given) must not be below the tool's own
    level: a caller may ask for stricter handling, never for laxer. ``requested_at``,
    ``timeout_seconds``, ``governance`` and ``trace`` are recorded in the invocation's audit
    records and echoed in the response (Mass Relay's PythonRunnerRequest is this shape:
    `strongroom.integrations.mass_relay`)."""

    request_id: EntityId
    run_id: EntityId | None = None
    external_run_id: str | None = Field(
        default=None,
        pattern=_TRACE_ID,
        description="The caller's own id of the run when it is not a run of this vault "
        "(Mass Relay's): recorded in the audit and echoed; the tool runs on a new run.",
    )
    tool_id: SafeName
    tool_version: str | None = Field(default=None, max_length=128)
    requested_at: UtcDatetime = Field(default_factory=utcnow)
    caller: ActorName = "local"
    input: JsonValue = Field(default_factory=dict)
    governance: Annotated[RequestGovernance | None, BeforeValidator(_governance)] = None
    trace: Annotated[RequestTrace | None, BeforeValidator(_trace)] = None
    timeout_seconds: int | None = Field(default=None, ge=1, le=86_400)


class RunnerResponse(Record):
    """What happened. ``needs_review`` is set for A1 tools: the output is a draft that a human
    must review before it is used as a final output. ``attempts`` counts retries + 1.
    ``requested_at``, ``caller``, ``governance`` (what was asked) and ``timeout_seconds``
    (what was asked) echo the request."""

    request_id: EntityId
    run_id: EntityId | None = None
    tool_id: SafeName
    tool_version: str
    status: RunnerStatus
    started_at: UtcDatetime
    finished_at: UtcDatetime
    output: Any = None
    error: ErrorInfo | None = None
    trace: Annotated[RequestTrace | None, BeforeValidator(_trace)] = None
    external_run_id: str | None = Field(default=None, pattern=_TRACE_ID)
    requested_at: UtcDatetime | None = None
    caller: ActorName | None = None
    governance: RequestGovernance | None = None
    timeout_seconds: int | None = Field(default=None, ge=1, le=86_400)
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


class StepWorker(BaseModel):
    """One attempt of a step as a worker held it: its step claim
    (`strongroom.ports.step_claims.StepClaim`) without the response, as ``strongroom runs
    show`` and the Control Room list it. Built from a claim with
    ``StepWorker.model_validate(claim)`` (attributes are read)."""

    model_config = ConfigDict(from_attributes=True)

    step_id: str
    attempt: int
    worker: str = Field(description="The worker that claimed the attempt.")
    state: Literal["running", "finished", "lost"] = Field(
        description="running: the worker holds it; finished: it recorded how the attempt "
        "ended; lost: its heartbeat stopped and the attempt was declared lost."
    )
    claimed_at: datetime
    heartbeat_at: datetime = Field(description="The worker's last heartbeat.")
    finished_at: datetime | None = Field(
        default=None, description="When it finished or was declared lost."
    )
