"""What the orchestrator persists about a playbook run: one `PlanState` in the run state
snapshot's ``data["orchestrator"]``, with a `StepState` per step. Everything resume needs is
here: the definitions' digests (to refuse drift), the run's inputs, and per step its status,
pinned tool, output artifact (or inline output) and last error.

Ids and digests are plain strings here, not the validated id types: every value comes from
a definition the registry validated or from the orchestrator itself, the snapshot holding
them is read back digest-verified, and re-validating ten thousand steps on every resume
costs more than the rest of the resume."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from strongroom.errors import ErrorInfo
from strongroom.models import Record, UtcDatetime
from strongroom.models.artifacts import ArtifactRole

__all__ = ["STATE_KEY", "PlanState", "StepState", "StepStatus"]

STATE_KEY = "orchestrator"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    WAITING_APPROVAL = "waiting_approval"
    CANCELLED = "cancelled"


class StepState(Record):
    step_id: str
    status: StepStatus = StepStatus.PENDING
    tool_id: str
    tool_version: str
    manifest_digest: str
    tool_ref: str = Field(description="The step's tool reference as the playbook wrote it.")
    upstream: list[str] = Field(default_factory=list)
    output_role: ArtifactRole = ArtifactRole.PHASE_OUTPUT
    starts: int = Field(default=0, ge=0, description="Times the orchestrator started it.")
    request_id: str | None = None
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    output_artifact_id: str | None = None
    output_sha256: str | None = None
    output: Any = Field(default=None, description="Inline output when it is not stored.")
    artifact_ids: list[str] = Field(default_factory=list)
    needs_review: bool = False
    error: ErrorInfo | None = None

    @property
    def done(self) -> bool:
        return self.status is StepStatus.COMPLETED

    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class PlanState(Record):
    playbook_ref: str
    playbook_id: str
    playbook_version: str
    playbook_digest: str
    project_ref: str | None = None
    project_id: str | None = None
    project_version: str | None = None
    project_digest: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    max_parallel: int = Field(default=4, ge=1, le=256)
    steps: dict[str, StepState] = Field(default_factory=dict)
    order: list[str] = Field(
        default_factory=list, description="Step ids in execution order (snapshots sort keys)."
    )

    def ordered(self) -> list[StepState]:
        """The steps in execution order."""
        known = [self.steps[s] for s in self.order if s in self.steps]
        if len(known) == len(self.steps):
            return known
        listed = set(self.order)
        return known + [s for k, s in self.steps.items() if k not in listed]

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for step in self.steps.values():
            found[step.status.value] = found.get(step.status.value, 0) + 1
        return found

    def completed(self) -> int:
        return sum(1 for step in self.steps.values() if step.done)
