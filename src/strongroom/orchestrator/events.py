"""What the orchestrator reports as it goes: one `Event` per run or step transition, for the
CLI's live progress and its ``--json`` event stream (one JSON object per line)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from strongroom.errors import ErrorInfo
from strongroom.models import utcnow

if TYPE_CHECKING:
    from strongroom.orchestrator.driver import Driver
    from strongroom.orchestrator.state import StepState

__all__ = ["Event"]


@dataclass(frozen=True)
class Event:
    kind: str
    run_id: str
    completed: int
    total: int
    step_id: str | None = None
    status: str | None = None
    tool: str | None = None
    duration_seconds: float | None = None
    artifacts: int = 0
    error: dict[str, Any] | None = None
    at: str = field(default_factory=lambda: utcnow().isoformat())

    @classmethod
    def run(cls, kind: str, drive: Driver, *, error: ErrorInfo | None = None) -> Event:
        return cls(
            kind=kind,
            run_id=drive.run_id,
            completed=drive.plan.completed(),
            total=len(drive.plan.steps),
            error=error.model_dump() if error else None,
        )

    @classmethod
    def step(cls, kind: str, drive: Driver, step: StepState) -> Event:
        return cls(
            kind=kind,
            run_id=drive.run_id,
            completed=drive.plan.completed(),
            total=len(drive.plan.steps),
            step_id=step.step_id,
            status=step.status.value,
            tool=f"{step.tool_id}@{step.tool_version}",
            duration_seconds=step.duration_seconds(),
            artifacts=len(step.artifact_ids),
            error=step.error.model_dump() if step.error else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}
