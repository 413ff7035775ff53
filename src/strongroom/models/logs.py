"""Log records: log lines as written, chained entries as stored, and the log reference."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from strongroom.ids import Digest, EntityId, SafeName
from strongroom.models._base import MAX_INT64, JsonObject, Record, UtcDatetime, utcnow
from strongroom.models.canonical import Canon

__all__ = ["LEVEL_ORDER", "LogEntry", "LogLevel", "LogLine", "LogQuery", "LogReference"]


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


LEVEL_ORDER: dict[LogLevel, int] = {level: i for i, level in enumerate(LogLevel)}


class LogLine(Record):
    """One log line as a caller writes it (run_id is filled in by the log service)."""

    timestamp: UtcDatetime = Field(default_factory=utcnow)
    level: LogLevel = LogLevel.INFO
    event: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
    phase: SafeName | None = None
    message: str = Field(default="", max_length=65536)
    data: JsonObject = Field(default_factory=dict)


class LogEntry(Record):
    """A stored log line, hash-chained per run: ``hash`` = sha256 of the canonical JSON of the
    entry without ``hash`` (which includes ``prev_hash``). See `strongroom.models.chain`."""

    run_id: EntityId
    seq: int = Field(ge=1)
    timestamp: UtcDatetime
    level: LogLevel
    event: str
    phase: SafeName | None = None
    message: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    prev_hash: Digest
    hash: Digest
    canon: Canon | None = Field(
        default=None,
        description="How ``hash`` was taken: 'jcs' = SHA-256 of RFC 8785 canonical JSON. "
        "Absent on entries written before it (CPython's sorted json.dumps).",
    )


class LogReference(Record):
    run_id: EntityId
    format: str = "jsonl"
    created_at: UtcDatetime
    updated_at: UtcDatetime
    location: str = Field(
        description="Where the log lives: the records store, or the sealed artifact."
    )
    entry_count: int = Field(ge=0)
    head_hash: Digest | None = None
    sealed: bool = False
    sealed_artifact_id: EntityId | None = None


class LogQuery(Record):
    min_level: LogLevel | None = None
    event: str | None = Field(default=None, max_length=128)
    phase: SafeName | None = None
    since: UtcDatetime | None = None
    after_seq: int = Field(default=0, ge=0, le=MAX_INT64)
    limit: int = Field(default=1000, ge=1, le=100000)
