"""The answers of the Control Room API that are views over several records (a run's steps,
a snapshot diff, a comparison, a preview, the host's sandbox layers). Single
records are answered with their own models (`Run`, `RunPage`, `ArtifactMetadata`,
`LogEntry`...), as the CLI's ``--json`` prints them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, Field

from strongroom.errors import ErrorInfo
from strongroom.models import StepWorker

__all__ = [
    "MAX_STEP_WORKERS",
    "ComparedRun",
    "ComparedStep",
    "Comparison",
    "HostLayer",
    "HostReport",
    "Preview",
    "RunSteps",
    "SnapshotDiff",
    "StepView",
    "StepWorker",
]

MAX_STEP_WORKERS: Final = 10_000
"""The most step claims a run's steps list (a run has at most a few thousand)."""


class StepView(BaseModel):
    """One step (an orchestrated playbook step, or a pipeline phase) of a run."""

    step_id: str
    status: str = Field(description="pending, running, completed, failed, skipped...")
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    upstream: list[str] = Field(default_factory=list, description="Steps it waits for.")
    tool: str | None = Field(default=None, description="The step's tool reference.")
    output_artifact_id: str | None = None
    output_sha256: str | None = None
    error: ErrorInfo | None = None


class RunSteps(BaseModel):
    """A run's steps as its latest state snapshot records them, and the workers that ran
    their attempts."""

    run_id: str
    source: Literal["orchestrator", "phases", "none"] = Field(
        description="orchestrator: a playbook run's plan; phases: a pipeline's phase "
        "history; none: the run has no snapshot (yet)."
    )
    revision: int | None = Field(default=None, description="The snapshot revision read.")
    steps: list[StepView] = Field(default_factory=list)
    workers: list[StepWorker] = Field(
        default_factory=list,
        description="The step attempts run by workers (``--executor celery``), by step then "
        f"attempt: who ran each, its state and last heartbeat. At most {MAX_STEP_WORKERS:,} "
        "(``workers_truncated`` says when there were more); empty for a run whose steps ran "
        "in its own process.",
    )
    workers_truncated: bool = Field(
        default=False, description=f"True when the run has more than {MAX_STEP_WORKERS:,} claims."
    )


class SnapshotDiff(BaseModel):
    """A unified diff between two revisions of a run's state (canonical JSON, sorted keys)."""

    run_id: str
    a: int
    b: int
    lines: list[str]
    truncated: bool = Field(description="True when the diff was cut at its line limit.")


class ComparedStep(BaseModel):
    step_id: str
    status: str
    duration_seconds: float | None = None
    output_sha256: str | None = None


class ComparedRun(BaseModel):
    run_id: str
    status: str
    outcome: str | None = None
    playbook: str | None = None
    duration_seconds: float | None = None
    inputs: list[str] = Field(default_factory=list, description="Input artifact ids.")
    labels: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    steps: dict[str, ComparedStep] = Field(default_factory=dict)


class Comparison(BaseModel):
    """Two or more runs side by side; ``same_outputs[step]`` says whether every run that has
    the step produced the same output digest."""

    runs: list[ComparedRun]
    step_ids: list[str]
    same_outputs: dict[str, bool]
    label_keys: list[str]
    metric_keys: list[str]


class Preview(BaseModel):
    """What the Control Room shows of an artifact's content without sending all of it."""

    artifact_id: str
    kind: Literal["table", "json", "text", "image", "none"]
    columns: list[str] = Field(default_factory=list)
    rows: list[list[str]] = Field(default_factory=list)
    text: str | None = None
    media_type: str
    size_bytes: int
    bytes_read: int = Field(description="How much of the content the preview read.")
    truncated: bool = Field(description="True when the preview shows only the beginning.")
    verified: bool = Field(
        description="True when the whole content was read and matched its digest; a preview "
        "of the beginning of a large artifact is not verified."
    )
    note: str | None = None


class HostLayer(BaseModel):
    layer: str
    description: str
    status: Literal["enforced", "unavailable", "disabled", "not_applicable"]


class HostReport(BaseModel):
    """The sandbox layers this host enforces for tool runs (`strongroom sandbox check`)."""

    layers: list[HostLayer]
    facts: dict[str, Any]
    notes: dict[str, str]
