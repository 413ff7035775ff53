"""Run persistence records: the run, its state snapshots and the run index query/page."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from strongroom.errors import ErrorInfo
from strongroom.ids import ActorName, Digest, EntityId, FileName, SafeName
from strongroom.models._base import Record, SingleLineText, Text, UtcDatetime, utcnow

__all__ = [
    "ALLOWED_TRANSITIONS",
    "DEFAULT_COUNT_LIMIT",
    "MAX_LABELS",
    "MAX_METRICS",
    "RUN_STATS_MAX_DAYS",
    "RUN_STATS_SAMPLE",
    "TERMINAL_STATUSES",
    "ArtifactRef",
    "DayCount",
    "LabelKey",
    "LabelValue",
    "MetricFilter",
    "MetricKey",
    "MetricPoint",
    "MetricValue",
    "PhaseEvent",
    "PlaybookDurations",
    "PlaybookRef",
    "Progress",
    "Run",
    "RunOutcome",
    "RunPage",
    "RunQuery",
    "RunSnapshot",
    "RunSource",
    "RunState",
    "RunStats",
    "RunStatsQuery",
    "RunStatus",
    "SnapshotRecord",
    "StepFailures",
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


# -- labels and metrics -----------------------------------------------------------------------

MAX_LABELS: Final = 64
"""How many labels one run may carry."""
MAX_METRICS: Final = 256
"""How many metrics (distinct keys) one run may carry."""

_KEY_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"

LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=_KEY_PATTERN)]
"""A label's key: 1-64 characters, a letter or digit first, then letters, digits, ``. _ : / -``."""

LabelValue = Annotated[SingleLineText, StringConstraints(max_length=256)]
"""A label's value: free text on one line, at most 256 characters."""

MetricKey = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=_KEY_PATTERN)]
"""A metric's key: the same rule as a label's key."""


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise PydanticCustomError(
            "not_a_number", "a metric must be a finite number, not {value}", {"value": str(value)}
        )
    return value


MetricValue = Annotated[float, AfterValidator(_finite)]
"""A metric's value: a finite float (NaN and the infinities are refused, ``not_a_number``)."""


def _empty(value: dict[str, Any]) -> bool:
    return not value


class MetricFilter(Record):
    """One condition on a run's metric: ``metrics.<key> <op> <value>``. A run without the
    metric never matches (not even ``!=``)."""

    key: MetricKey
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    value: MetricValue


class MetricPoint(Record):
    """One logged value of a metric series (a ``metric`` line of the run's log)."""

    key: MetricKey
    value: MetricValue
    step: int | None = Field(default=None, ge=0, le=2**63 - 1)
    at: UtcDatetime
    seq: int = Field(ge=1, description="The log line that recorded it.")


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
    # Left out of the record's JSON (and so of its digest) while empty: a run written before
    # labels and metrics existed keeps the digest its audit binding carries.
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict,
        max_length=MAX_LABELS,
        exclude_if=_empty,
        description="Free-form string labels (key -> value), indexed for `RunQuery.labels`.",
    )
    metrics: dict[MetricKey, MetricValue] = Field(
        default_factory=dict,
        max_length=MAX_METRICS,
        exclude_if=_empty,
        description="The latest value of each metric (the series is in the run's log).",
    )
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
    """Filters for the run index. Every filter is optional; results are sorted by time, or
    by a metric (``sort="metrics.cost"``: runs without that metric are left out)."""

    status: list[RunStatus] | None = None
    project: SafeName | None = None
    playbook_id: SafeName | None = None
    actor: ActorName | None = None
    previous_run_id: EntityId | None = Field(
        default=None, description="Runs that name this run as their previous run: its successors."
    )
    created_after: UtcDatetime | None = None
    created_before: UtcDatetime | None = None
    updated_after: UtcDatetime | None = None
    updated_before: UtcDatetime | None = None
    purpose_contains: str | None = Field(default=None, min_length=1, max_length=200)
    labels: dict[LabelKey, LabelValue] | None = Field(
        default=None,
        max_length=MAX_LABELS,
        description="Runs carrying every one of these labels (key = value).",
    )
    where: list[MetricFilter] | None = Field(
        default=None,
        max_length=32,
        description="Runs whose metrics meet every condition (runs without the metric don't).",
    )
    sort: Annotated[
        str,
        StringConstraints(
            max_length=80,
            pattern=r"^(created_at|updated_at|metrics\.[A-Za-z0-9][A-Za-z0-9._:/-]{0,63})$",
        ),
    ] = Field(
        default="created_at",
        description="created_at, updated_at or metrics.KEY (runs without KEY are left out).",
    )
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

    @property
    def sort_metric(self) -> str | None:
        """The metric key of a ``metrics.KEY`` sort, else None."""
        return self.sort.removeprefix("metrics.") if self.sort.startswith("metrics.") else None


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


class RunStatusCounts(Record):
    """How many runs match a `RunQuery` (its status filter and cursor aside) in each status:
    the status buttons of the Control Room's run index."""

    counts: dict[RunStatus, NonNegativeInt] = Field(
        description="Matches per status (statuses without a match are left out)."
    )
    total: int = Field(ge=0, description="Every match counted (at most count_limit + 1).")
    exact: bool = Field(
        description="False when more than the query's count_limit runs match: the counts "
        "then cover only the first count_limit + 1 matches found (a lower bound each)."
    )


# -- run statistics (the Control Room's overview) ------------------------------------------------

RUN_STATS_MAX_DAYS: Final = 366
"""The longest window `RunStatsQuery` accepts, in days (a leap year)."""

RUN_STATS_SAMPLE: Final = 100_000
"""`RunStats.durations` is computed from at most this many runs: the newest (by
``created_at``, then ``run_id``) finished runs of the window; more -> `RunStats.sampled`."""


class RunStatsQuery(Record):
    """The window and filters of `strongroom.services.runs.RunService.stats`.

    Runs are placed in the window by ``created_at``, half-open: ``since`` inclusive,
    ``until`` exclusive. The window is at most `RUN_STATS_MAX_DAYS` days long, and
    ``until`` must be later than ``since``. The query is frozen: ``until`` was resolved
    (``None`` -> now) when it was made."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True)

    since: UtcDatetime = Field(description="Start of the window (inclusive), by created_at.")
    until: UtcDatetime = Field(
        default_factory=utcnow,
        validate_default=True,
        description=(
            "End of the window (exclusive), by created_at; absent or null = now. At most "
            f"{RUN_STATS_MAX_DAYS} days after `since`."
        ),
    )
    project: SafeName | None = Field(default=None, description="Only this project's runs.")
    playbook_id: SafeName | None = Field(default=None, description="Only this playbook's runs.")

    @field_validator("until", mode="before")
    @classmethod
    def _now_when_absent(cls, value: Any) -> Any:
        return utcnow() if value is None else value

    @field_validator("until")
    @classmethod
    def _bounded_window(cls, value: datetime, info: ValidationInfo) -> datetime:
        since = info.data.get("since")
        if not isinstance(since, datetime):
            return value  # `since` is missing or invalid: that is the error reported
        if value <= since:
            raise PydanticCustomError(
                "empty_window",
                "must be later than since ({since})",
                {"since": since.isoformat()},
            )
        if value - since > timedelta(days=RUN_STATS_MAX_DAYS):
            raise PydanticCustomError(
                "window_too_long",
                "must be at most {max_days} days after since (the window is {days} days)",
                {
                    "max_days": RUN_STATS_MAX_DAYS,
                    "days": round((value - since) / timedelta(days=1), 1),
                },
            )
        return value


class DayCount(Record):
    """How many runs of one status were created on one day (UTC)."""

    day: date = Field(description="The UTC calendar day of the runs' created_at.")
    status: RunStatus = Field(description="The runs' status now (not on that day).")
    count: int = Field(ge=1)


class PlaybookDurations(Record):
    """Run durations of one playbook, in seconds: ``completed_at - started_at`` of the
    window's finished runs (completed, failed, cancelled) that have both set (a run
    cancelled before it started has no duration). Percentiles are nearest-rank: the value at
    rank ceil(p/100 * runs) of the sorted durations, so each is one of the durations."""

    playbook_id: str | None = Field(description="null = runs without a playbook.")
    runs: int = Field(ge=1, description="How many runs were measured.")
    p50_seconds: float
    p90_seconds: float
    p95_seconds: float
    max_seconds: float


class StepFailures(Record):
    """Failed runs of one playbook that stopped at one step; ``failed / runs`` is the
    step's failure rate within the playbook's runs of the window."""

    playbook_id: str | None = Field(description="null = runs without a playbook.")
    step: str | None = Field(
        description="The failed runs' current_step; null = they failed before any step."
    )
    failed: int = Field(ge=1, description="Failed runs that stopped at this step.")
    runs: int = Field(ge=1, description="Every run of the playbook in the window (any status).")


class RunStats(Record):
    """Statistics of the runs created in a window (`RunStatsQuery`), for dashboards.

    Lists are sorted: ``days`` by day then status (in `RunStatus` order), ``durations`` by
    playbook (null first), ``step_failures`` by playbook then step (null first). Days and
    groups without runs are left out."""

    since: UtcDatetime
    until: UtcDatetime
    days: list[DayCount] = Field(
        default_factory=list, description="Runs per UTC day of created_at and status."
    )
    durations: list[PlaybookDurations] = Field(
        default_factory=list,
        description=(
            "Duration percentiles per playbook, from at most the newest "
            f"{RUN_STATS_SAMPLE:,} finished runs (see `sampled`)."
        ),
    )
    step_failures: list[StepFailures] = Field(
        default_factory=list, description="Failed runs per playbook and step they stopped at."
    )
    runs_counted: int = Field(ge=0, description="Every run in the window (the sum of `days`).")
    sampled: bool = Field(
        default=False,
        description=(
            f"True when the window holds more than {RUN_STATS_SAMPLE:,} finished runs: "
            f"`durations` then describe the newest {RUN_STATS_SAMPLE:,} only."
        ),
    )
