"""rentl's storage schemas, mirrored: the same field names, types, defaults and rules as
``rentl_schemas`` (``base``, ``primitives``, ``pipeline``, ``progress``, ``qa``, ``results``,
``logs``, ``storage``), so records round-trip between rentl and strongroom unchanged.

rentl itself needs Python 3.14 and is not a dependency: these models let a rentl-style
pipeline (and the tests) speak rentl's shapes on Python 3.11. The stores accept rentl's own
models just as well (they only read a model's JSON), and `RentlSchemas.from_rentl` makes
them return rentl's classes when rentl is installed.

What is not mirrored: the cross-field checks of rentl's progress and result metrics (the
per-phase metric key tables of ``PHASE_METRIC_DEFINITIONS``); a record rentl accepts is
accepted here too.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
    model_validator,
)

__all__ = [
    "CHECKSUM_PATTERN",
    "ArtifactFormat",
    "ArtifactId",
    "ArtifactManifest",
    "ArtifactMetadata",
    "ArtifactReference",
    "ArtifactRole",
    "BaseSchema",
    "FileFormat",
    "LanguageCode",
    "LogEntry",
    "LogFileReference",
    "LogLevel",
    "PhaseArtifacts",
    "PhaseDependency",
    "PhaseName",
    "PhaseProgress",
    "PhaseResultDimension",
    "PhaseResultMetric",
    "PhaseResultSummary",
    "PhaseRevision",
    "PhaseRunRecord",
    "PhaseStatus",
    "ProgressMetric",
    "ProgressPercentMode",
    "ProgressSummary",
    "ProgressTotalStatus",
    "ProgressUnit",
    "QaCategory",
    "QaSeverity",
    "QaSummary",
    "ResultMetricUnit",
    "RunError",
    "RunId",
    "RunIndexRecord",
    "RunMetadata",
    "RunProgress",
    "RunState",
    "RunStateRecord",
    "RunStatus",
    "StorageBackend",
    "StorageReference",
    "Timestamp",
    "VersionInfo",
]

ISO_8601_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$"
LANGUAGE_CODE_PATTERN = r"^[a-z]{2}(?:-[A-Z]{2})?$"
EVENT_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
CHECKSUM_PATTERN = r"^[a-f0-9]{64}$"


class BaseSchema(BaseModel):
    """rentl's base schema configuration (strict, extra fields ignored, enum values kept)."""

    model_config = ConfigDict(
        extra="ignore",
        validate_assignment=True,
        validate_default=True,
        str_strip_whitespace=True,
        use_enum_values=True,
        strict=True,
    )


def _validate_uuid7(value: UUID) -> UUID:
    if value.version != 7:
        raise ValueError("UUID must be version 7")
    return value


Uuid7 = Annotated[UUID, AfterValidator(_validate_uuid7)]
RunId = Uuid7
ArtifactId = Uuid7
PhaseRunId = Uuid7
Timestamp = Annotated[str, Field(pattern=ISO_8601_PATTERN)]
LanguageCode = Annotated[str, Field(pattern=LANGUAGE_CODE_PATTERN)]
EventName = Annotated[str, Field(pattern=EVENT_NAME_PATTERN)]
MetricKey = Annotated[str, Field(pattern=EVENT_NAME_PATTERN)]


class PhaseName(StrEnum):
    INGEST = "ingest"
    CONTEXT = "context"
    PRETRANSLATION = "pretranslation"
    TRANSLATE = "translate"
    QA = "qa"
    EDIT = "edit"
    EXPORT = "export"


class FileFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"
    TXT = "txt"


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class PhaseStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


def _phase(value: str | PhaseName | None) -> PhaseName | None:
    if value is None or isinstance(value, PhaseName):
        return value
    return PhaseName(value)


class VersionInfo(BaseSchema):
    major: int = Field(..., ge=0, description="Major version number")
    minor: int = Field(..., ge=0, description="Minor version number")
    patch: int = Field(..., ge=0, description="Patch version number")

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


# -- qa / results ----------------------------------------------------------------------------


class QaSeverity(StrEnum):
    INFO = "info"
    MINOR = "minor"
    MAJOR = "major"
    CRITICAL = "critical"


class QaCategory(StrEnum):
    GRAMMAR = "grammar"
    TERMINOLOGY = "terminology"
    STYLE = "style"
    CONSISTENCY = "consistency"
    FORMATTING = "formatting"
    CONTEXT = "context"
    CULTURAL = "cultural"
    OTHER = "other"


class QaSummary(BaseSchema):
    total_issues: int = Field(..., ge=0, description="Total issue count")
    by_category: dict[QaCategory, int] = Field(..., description="Issue counts by category")
    by_severity: dict[QaSeverity, int] = Field(..., description="Issue counts by severity")


class ResultMetricUnit(StrEnum):
    COUNT = "count"
    LINES = "lines"
    SCENES = "scenes"
    ROUTES = "routes"
    TERMS = "terms"
    NOTES = "notes"
    ISSUES = "issues"
    EDITS = "edits"
    CHARACTERS = "characters"
    COLUMNS = "columns"
    RATIO = "ratio"


class PhaseResultDimension(BaseSchema):
    key: MetricKey = Field(..., description="Dimension key in snake_case")
    value: str = Field(..., min_length=1, description="Dimension value")


class PhaseResultMetric(BaseSchema):
    metric_key: MetricKey = Field(..., description="Metric identifier in snake_case")
    unit: ResultMetricUnit = Field(..., description="Metric unit")
    value: int | float = Field(..., ge=0, description="Metric value")
    notes: str | None = Field(None, description="Optional metric notes")


class PhaseResultSummary(BaseSchema):
    phase: PhaseName = Field(..., description="Phase name")
    target_language: LanguageCode | None = Field(None, description="Target language")
    metrics: list[PhaseResultMetric] = Field(..., min_length=1, description="Metrics")
    qa_summary: QaSummary | None = Field(None, description="QA summary for QA outputs")
    dimensions: list[PhaseResultDimension] | None = Field(None, description="Dimensions")

    _coerce_phase = field_validator("phase", mode="before")(_phase)


# -- progress ---------------------------------------------------------------------------------


class ProgressUnit(StrEnum):
    LINES = "lines"
    SCENES = "scenes"
    CHARACTERS = "characters"
    ISSUES = "issues"
    EDITS = "edits"


class ProgressTotalStatus(StrEnum):
    UNKNOWN = "unknown"
    DISCOVERING = "discovering"
    ESTIMATED = "estimated"
    LOCKED = "locked"


class ProgressPercentMode(StrEnum):
    UNAVAILABLE = "unavailable"
    LOWER_BOUND = "lower_bound"
    ESTIMATED = "estimated"
    FINAL = "final"


class ProgressSummary(BaseSchema):
    percent_complete: float | None = Field(None, ge=0, le=100, description="Percent complete")
    percent_mode: ProgressPercentMode = Field(..., description="Percent reporting mode")
    eta_seconds: float | None = Field(None, ge=0, description="Estimated seconds remaining")
    notes: str | None = Field(None, description="Optional context for progress reporting")

    @model_validator(mode="after")
    def _validate_percent_mode(self) -> ProgressSummary:
        unavailable = self.percent_mode == ProgressPercentMode.UNAVAILABLE
        if self.percent_complete is None and not unavailable:
            raise ValueError("percent_mode must be unavailable when percent_complete is None")
        if self.percent_complete is not None and unavailable:
            raise ValueError("percent_mode cannot be unavailable when percent_complete is set")
        return self


class ProgressMetric(BaseSchema):
    metric_key: MetricKey = Field(..., description="Metric identifier in snake_case")
    unit: ProgressUnit = Field(..., description="Metric unit type")
    completed_units: int = Field(..., ge=0, description="Completed unit count")
    total_units: int | None = Field(None, ge=0, description="Total unit count when known")
    total_status: ProgressTotalStatus = Field(..., description="Total unit status")
    percent_complete: float | None = Field(None, ge=0, le=100, description="Percent complete")
    percent_mode: ProgressPercentMode = Field(..., description="Percent reporting mode")
    eta_seconds: float | None = Field(None, ge=0, description="Estimated seconds remaining")
    notes: str | None = Field(None, description="Optional context for the metric")


class PhaseProgress(BaseSchema):
    phase: PhaseName = Field(..., description="Phase name")
    status: PhaseStatus = Field(..., description="Phase status")
    summary: ProgressSummary = Field(..., description="Summary progress for the phase")
    metrics: list[ProgressMetric] | None = Field(None, description="Metric breakdown")
    started_at: Timestamp | None = Field(None, description="Phase start timestamp")
    completed_at: Timestamp | None = Field(None, description="Phase completion timestamp")

    _coerce_phase = field_validator("phase", mode="before")(_phase)


class RunProgress(BaseSchema):
    phases: list[PhaseProgress] = Field(..., min_length=1, description="Phase progress list")
    summary: ProgressSummary = Field(..., description="Summary progress for the run")
    phase_weights: dict[PhaseName, float] | None = Field(None, description="Phase weights")

    @model_validator(mode="after")
    def _validate_phases(self) -> RunProgress:
        if len({phase.phase for phase in self.phases}) != len(self.phases):
            raise ValueError("phase entries must be unique")
        return self


# -- pipeline ---------------------------------------------------------------------------------


class RunError(BaseSchema):
    code: str = Field(..., min_length=1, description="Error code")
    message: str = Field(..., min_length=1, description="Error message")
    details: dict[str, JsonValue] | None = Field(None, description="Structured error details")


class ArtifactReference(BaseSchema):
    artifact_id: ArtifactId = Field(..., description="Artifact identifier")
    path: str = Field(..., min_length=1, description="Artifact path")
    uri: str | None = Field(None, min_length=1, description="Artifact storage URI")
    format: FileFormat = Field(..., description="Artifact format")
    created_at: Timestamp = Field(..., description="ISO-8601 artifact creation timestamp")
    description: str | None = Field(None, description="Human-readable artifact description")


class PhaseDependency(BaseSchema):
    phase: PhaseName = Field(..., description="Dependent phase name")
    revision: int = Field(..., ge=1, description="Dependent phase revision")
    target_language: LanguageCode | None = Field(None, description="Target language")

    _coerce_phase = field_validator("phase", mode="before")(_phase)


class PhaseRevision(BaseSchema):
    phase: PhaseName = Field(..., description="Phase name")
    revision: int = Field(..., ge=1, description="Latest revision number")
    target_language: LanguageCode | None = Field(None, description="Target language")

    _coerce_phase = field_validator("phase", mode="before")(_phase)


class PhaseRunRecord(BaseSchema):
    phase_run_id: PhaseRunId = Field(..., description="Unique phase run identifier")
    phase: PhaseName = Field(..., description="Phase name")
    revision: int = Field(..., ge=1, description="Phase revision number")
    status: PhaseStatus = Field(..., description="Phase execution status")
    target_language: LanguageCode | None = Field(None, description="Target language")
    dependencies: list[PhaseDependency] | None = Field(None, description="Dependencies used")
    artifact_ids: list[ArtifactId] | None = Field(None, description="Artifacts produced")
    started_at: Timestamp | None = Field(None, description="Phase start timestamp")
    completed_at: Timestamp | None = Field(None, description="Phase completion timestamp")
    stale: bool = Field(False, description="Whether the output is stale")
    error: RunError | None = Field(None, description="Error details if failed")
    summary: PhaseResultSummary | None = Field(None, description="Phase result summary")
    message: str | None = Field(None, description="Optional message about the phase run")

    _coerce_phase = field_validator("phase", mode="before")(_phase)


class PhaseArtifacts(BaseSchema):
    phase: PhaseName = Field(..., description="Phase name")
    artifacts: list[ArtifactReference] = Field(..., description="Artifacts of the phase")

    _coerce_phase = field_validator("phase", mode="before")(_phase)


class RunMetadata(BaseSchema):
    run_id: RunId = Field(..., description="Unique run identifier")
    schema_version: VersionInfo = Field(..., description="Schema version for the run")
    status: RunStatus = Field(..., description="Run status")
    current_phase: PhaseName | None = Field(None, description="Current running phase")
    created_at: Timestamp = Field(..., description="Run creation timestamp")
    started_at: Timestamp | None = Field(None, description="Run start timestamp")
    completed_at: Timestamp | None = Field(None, description="Run completion timestamp")

    _coerce_phase = field_validator("current_phase", mode="before")(_phase)


class RunState(BaseSchema):
    metadata: RunMetadata = Field(..., description="Run metadata")
    progress: RunProgress = Field(..., description="Run progress")
    artifacts: list[PhaseArtifacts] = Field(..., description="Phase artifacts")
    phase_history: list[PhaseRunRecord] | None = Field(None, description="Phase run history")
    phase_revisions: list[PhaseRevision] | None = Field(None, description="Latest revisions")
    last_error: RunError | None = Field(None, description="Most recent error if failed")
    qa_summary: QaSummary | None = Field(None, description="Aggregate QA summary")

    @model_validator(mode="after")
    def _validate_phase_revisions(self) -> RunState:
        if self.phase_revisions is None:
            return self
        keys = [(entry.phase, entry.target_language) for entry in self.phase_revisions]
        if len(set(keys)) != len(keys):
            raise ValueError("phase_revisions must be unique by phase and target_language")
        return self


# -- logs -------------------------------------------------------------------------------------


class LogEntry(BaseSchema):
    """One JSONL log line: ``{timestamp, level, event, run_id, phase, message, data}``."""

    timestamp: Timestamp = Field(..., description="ISO-8601 timestamp for the log entry")
    level: LogLevel = Field(..., description="Log level")
    event: EventName = Field(..., description="Event name")
    run_id: RunId = Field(..., description="Pipeline run identifier")
    phase: PhaseName | None = Field(None, description="Pipeline phase if applicable")
    message: str = Field(..., min_length=1, description="Log message")
    data: dict[str, JsonValue] | None = Field(None, description="Structured event data")

    _coerce_phase = field_validator("phase", mode="before")(_phase)


# -- storage ----------------------------------------------------------------------------------


class StorageBackend(StrEnum):
    FILESYSTEM = "filesystem"
    SQLITE = "sqlite"
    POSTGRES = "postgres"
    S3 = "s3"
    GCS = "gcs"
    AZURE_BLOB = "azure_blob"
    CUSTOM = "custom"


class ArtifactFormat(StrEnum):
    JSON = "json"
    JSONL = "jsonl"
    CSV = "csv"
    TXT = "txt"


class ArtifactRole(StrEnum):
    PHASE_OUTPUT = "phase_output"
    LOGS = "logs"
    EXPORT = "export"
    RUN_STATE = "run_state"
    REPORT = "report"
    CUSTOM = "custom"


class StorageReference(BaseSchema):
    """Where stored data lives: a filesystem ``path``, a ``uri``, or both."""

    backend: StorageBackend | None = Field(None, description="Storage backend identifier")
    path: str | None = Field(None, min_length=1, description="Filesystem path if applicable")
    uri: str | None = Field(None, min_length=1, description="Storage URI if applicable")

    @model_validator(mode="after")
    def _validate_location(self) -> StorageReference:
        if self.path is None and self.uri is None:
            raise ValueError("path or uri must be provided")
        return self


class ArtifactMetadata(BaseSchema):
    artifact_id: ArtifactId = Field(..., description="Artifact identifier")
    run_id: RunId = Field(..., description="Run identifier")
    role: ArtifactRole = Field(..., description="Artifact role")
    phase: PhaseName | None = Field(None, description="Phase name if applicable")
    target_language: LanguageCode | None = Field(None, description="Target language")
    format: ArtifactFormat = Field(..., description="Artifact format")
    created_at: Timestamp = Field(..., description="Artifact creation timestamp")
    location: StorageReference = Field(..., description="Artifact storage location")
    description: str | None = Field(None, description="Human-readable artifact description")
    size_bytes: int | None = Field(None, ge=0, description="Artifact size in bytes")
    checksum_sha256: str | None = Field(
        None, pattern=CHECKSUM_PATTERN, description="SHA-256 checksum if available"
    )
    metadata: dict[str, JsonValue] | None = Field(None, description="Structured metadata")

    _coerce_phase = field_validator("phase", mode="before")(_phase)


class ArtifactManifest(BaseSchema):
    run_id: RunId = Field(..., description="Run identifier")
    generated_at: Timestamp = Field(..., description="Manifest generation timestamp")
    artifacts: list[ArtifactMetadata] = Field(..., description="Artifacts produced by the run")


class LogFileReference(BaseSchema):
    run_id: RunId = Field(..., description="Run identifier")
    format: ArtifactFormat = Field(ArtifactFormat.JSONL, description="Log file format")
    created_at: Timestamp = Field(..., description="Log file creation timestamp")
    updated_at: Timestamp | None = Field(None, description="Log file update timestamp")
    location: StorageReference = Field(..., description="Log storage location")
    entry_count: int | None = Field(None, ge=0, description="Log entry count if known")


class RunIndexRecord(BaseSchema):
    metadata: RunMetadata = Field(..., description="Run metadata snapshot")
    project_name: str = Field(..., min_length=1, description="Project name")
    source_language: LanguageCode = Field(..., description="Source language code")
    target_languages: list[LanguageCode] = Field(
        ..., min_length=1, description="Target language codes"
    )
    updated_at: Timestamp = Field(..., description="Last update timestamp")
    progress: ProgressSummary | None = Field(None, description="Optional progress summary")
    last_error: RunError | None = Field(None, description="Most recent run error if failed")


class RunStateRecord(BaseSchema):
    run_id: RunId = Field(..., description="Run identifier")
    stored_at: Timestamp = Field(..., description="Snapshot timestamp")
    state: RunState = Field(..., description="Run state snapshot")
    location: StorageReference | None = Field(None, description="Snapshot storage location")
    checksum_sha256: str | None = Field(
        None, pattern=CHECKSUM_PATTERN, description="SHA-256 checksum if available"
    )
