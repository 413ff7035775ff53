"""Run persistence records: the run, its state snapshots and the run index query/page."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from strongroom.errors import ErrorInfo
from strongroom.ids import ActorName, Digest, EntityId, FileName, SafeName
from strongroom.models._base import Record, Text, UtcDatetime, utcnow

__all__ = [
    "ALLOWED_TRANSITIONS",
    "DEFAULT_COUNT_LIMIT",
    "TERMINAL_STATUSES",
    "ArtifactRef",
    "PhaseEvent",
    "PlaybookRef",
    "Progress",
    "Run",
    "RunOutcome",
    "RunPage",
    "RunQuery",
    "RunSnapshot",
    "RunSource",
    "RunState",
    "RunStatus",
    "SnapshotRecord",
    "Trace",
]


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})

# The run state machine. Anything else is a `conflict`.
ALLOWED_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.PENDING: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED, RunStatus.FAILED}),
    RunStatus.RUNNING: frozenset(
        {RunStatus.PAUSED, RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED}
    ),
    # Waiting (for an approval, say): resumed, or given up.
    RunStatus.PAUSED: frozenset({RunStatus.RUNNING, RunStatus.FAILED, RunStatus.CANCELLED}),
    RunStatus.COMPLETED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.CANCELLED: frozenset(),
}


class RunOutcome(StrEnum):
    """How a finished run ended; ``partial`` = completed with some steps failed."""

    SUCCESS = "success"
    PARTIAL = "partial"
    FAILURE = "failure"


class RunSource(StrEnum):
    CONTROL_PLANE = "control-plane"
    GOVERNED_EXECUTION = "governed-execution"


class Trace(Record):
    trace_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    span_id: str = Field(pattern=r"^[0-9a-f]{16}$")


class PlaybookRef(Record):
    playbook_id: SafeName
    version_digest: Digest | None = None


class ArtifactRef(Record):
    """A pointer from a run's inputs/outputs to an artifact."""

    artifact_id: EntityId
    sha256: Digest
    name: FileName | None = None


class Progress(Record):
    steps_total: int | None = Field(default=None, ge=0)
    steps_completed: int = Field(default=0, ge=0)
    message: str | None = Field(default=None, max_length=1000)


class Run(Record):
    """The run record (one row of the run index). ``version`` is the row version used for
    compare-and-set updates; every accepted update increments it."""

    run_id: EntityId
    project: SafeName
    playbook: PlaybookRef | None = None
    actor: ActorName
    source: RunSource = RunSource.CONTROL_PLANE
    purpose: Text = Field(default="", max_length=4000)
    status: RunStatus = RunStatus.PENDING
    outcome: RunOutcome | None = None
    current_phase: SafeName | None = None
    current_step: SafeName | None = None
    created_at: UtcDatetime = Field(default_factory=utcnow)
    updated_at: UtcDatetime = Field(default_factory=utcnow)
    started_at: UtcDatetime | None = None
    completed_at: UtcDatetime | None = None
    inputs: list[ArtifactRef] = Field(default_factory=list)
    outputs: list[ArtifactRef] = Field(default_factory=list)
    trace: Trace | None = None
    last_error: ErrorInfo | None = None
    progress: Progress = Field(default_factory=Progress)
    summary: Text | None = Field(
        default=None, max_length=4000, description="What the run did, in a few sentences."
    )
    parent_run_id: EntityId | None = None
    previous_run_id: EntityId | None = None
    version: int = Field(default=1, ge=1)


class PhaseEvent(Record):
    phase: SafeName
    status: Literal["started", "completed", "failed", "skipped"]
    at: UtcDatetime = Field(default_factory=utcnow)
    revision: int | None = Field(default=None, ge=0)
    artifact_ids: list[EntityId] = Field(default_factory=list)
    error: ErrorInfo | None = None


class RunState(Record):
    """The full resumable state of a run at one point in time."""

    phase_history: list[PhaseEvent] = Field(default_factory=list)
    phase_revisions: dict[str, int] = Field(default_factory=dict)
    phase_artifacts: dict[str, list[EntityId]] = Field(default_factory=dict)
    progress: Progress = Field(default_factory=Progress)
    last_error: ErrorInfo | None = None
    data: dict[str, Any] = Field(default_factory=dict, description="Free-form pipeline state.")


class SnapshotRecord(Record):
    """Metadata of one snapshot revision; the state itself is a blob addressed by sha256."""

    run_id: EntityId
    revision: int = Field(ge=1)
    created_at: UtcDatetime = Field(default_factory=utcnow)
    sha256: Digest
    size_bytes: int = Field(ge=0)


class RunSnapshot(Record):
    """A loaded snapshot: its record and the verified state."""

    record: SnapshotRecord
    state: RunState


# `RunQuery.count_limit`'s default: totals above it are reported as "10,000+".
DEFAULT_COUNT_LIMIT = 10_000


class RunQuery(Record):
    """Filters for the run index. Every filter is optional; results are sorted by time."""

    status: list[RunStatus] | None = None
    project: SafeName | None = None
    playbook_id: SafeName | None = None
    actor: ActorName | None = None
    created_after: UtcDatetime | None = None
    created_before: UtcDatetime | None = None
    updated_after: UtcDatetime | None = None
    updated_before: UtcDatetime | None = None
    purpose_contains: str | None = Field(default=None, min_length=1, max_length=200)
    sort: Literal["created_at", "updated_at"] = "created_at"
    descending: bool = True
    limit: int = Field(default=50, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=512)
    count_limit: int | None = Field(
        default=DEFAULT_COUNT_LIMIT,
        ge=1,
        le=1_000_000,
        description=(
            "Count at most this many matching runs for `total`: the database stops reading "
            "after count_limit + 1 matches, and more are reported as `total` = count_limit "
            "with `total_is_exact` false. null = an exact count, which reads every match "
            "(the whole group; every run for `purpose_contains`)."
        ),
    )


class RunPage(Record):
    items: list[Run]
    total: int = Field(
        ge=0,
        description=(
            "Runs matching the filters, ignoring the cursor; at most the query's "
            "`count_limit` (see `total_is_exact`)."
        ),
    )
    total_is_exact: bool = Field(
        default=True,
        description=(
            "False when more than the query's `count_limit` runs match: `total` is then the "
            "limit (shown as e.g. 10,000+). The cursor still walks every matching run."
        ),
    )
    next_cursor: str | None = None
