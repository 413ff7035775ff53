"""Mass Relay's execution and persistence contracts as pydantic models that keep every field:
the named fields are typed, anything else is kept as it came (``extra="allow"``), and
timestamps stay the text they were, so ``model_dump(exclude_unset=True)`` of a parsed
document is the document, field for field.

The conversions to and from strongroom's own records are functions of `.runner` and
`.persistence`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "PERSISTENCE_ID_FIELDS",
    "ErrorObject",
    "PersistenceDocument",
    "PersistenceStorage",
    "PythonRunnerRequest",
    "PythonRunnerResponse",
    "TraceObject",
]


class _Document(BaseModel):
    model_config = ConfigDict(extra="allow")

    def document(self) -> dict[str, Any]:
        """The document as given: the fields that were set, unknown ones included."""
        return self.model_dump(mode="json", exclude_unset=True)


class TraceObject(_Document):
    trace_id: str = Field(min_length=1, max_length=128)
    span_id: str = Field(min_length=1, max_length=128)


class GovernanceObject(_Document):
    level: Literal["A0", "A1", "A2", "A3"]
    requires_hitl: bool | None = None
    requires_run_logging: bool | None = None


class PythonRunnerRequest(_Document):
    """PythonRunnerRequest{request_id, run_id, tool_id, tool_version, requested_at, caller,
    input, governance, trace{trace_id, span_id}, timeout_seconds}."""

    request_id: str = Field(min_length=1, max_length=128)
    run_id: str | None = Field(default=None, min_length=1, max_length=128)
    tool_id: str
    tool_version: str | None = None
    requested_at: str | None = None
    caller: str | None = None
    input: Any = None
    governance: GovernanceObject | None = None
    trace: TraceObject | None = None
    timeout_seconds: float | None = Field(default=None, ge=1)


class ErrorObject(_Document):
    code: str
    message: str
    details: Any = None


class PythonRunnerResponse(_Document):
    """PythonRunnerResponse{request_id, run_id, tool_id, tool_version, status success|failure,
    started_at, finished_at, output, error?{code, message, details?}, trace}."""

    request_id: str
    run_id: str | None = None
    tool_id: str
    tool_version: str | None = None
    status: Literal["success", "failure"]
    started_at: str
    finished_at: str
    output: Any = None
    error: ErrorObject | None = None
    trace: TraceObject | None = None


class PersistenceStorage(_Document):
    provider_id: str
    namespace_id: str
    object_path: str
    checksum: str = Field(description="sha256:<hex>")
    size_bytes: int = Field(ge=0)
    content_type: str


PERSISTENCE_ID_FIELDS: dict[str, str] = {
    "run": "run_id",
    "playbook": "playbook_id",
    "project_config": "project_id",
    "tool_manifest": "manifest_id",
    "sandbox_policy": "sandbox_id",
}
"""strongroom's persistence subject -> the id field of Mass Relay's record of it."""


class PersistenceDocument(_Document):
    """Run/Playbook/ProjectConfig PersistenceRecord{<id>, stored_at, format json, version,
    storage{provider_id, namespace_id, object_path, checksum, size_bytes, content_type}}: the
    id field is ``run_id``, ``playbook_id`` or ``project_id`` (kept as an extra field)."""

    stored_at: str
    format: Literal["json"] = "json"
    version: str = Field(min_length=1, max_length=64)
    storage: PersistenceStorage

    def subject(self) -> tuple[str, str]:
        """(strongroom subject, id): which id field the record has, and its value."""
        extra = self.model_extra or {}
        for subject, field in PERSISTENCE_ID_FIELDS.items():
            if isinstance(extra.get(field), str):
                return subject, extra[field]
        raise ValueError(
            "a persistence record names its subject with one of "
            + ", ".join(PERSISTENCE_ID_FIELDS.values())
        )
