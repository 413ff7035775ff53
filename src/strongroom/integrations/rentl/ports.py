"""rentl's storage ports, mirrored (``rentl_core.ports.storage``): the three async,
runtime-checkable protocols a rentl pipeline stores through. Any object with these methods
is a store to rentl; `strongroom.integrations.rentl.stores` implements them on a vault.

Models are typed as pydantic ``BaseModel`` (rentl's are ``BaseSchema``, a subclass), so
rentl's own records and the mirrored ones in `.schemas` are both accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar, runtime_checkable
from uuid import UUID

from pydantic import BaseModel

from strongroom.integrations.rentl.schemas import (
    ArtifactMetadata,
    LogEntry,
    LogFileReference,
    RunIndexRecord,
    RunStateRecord,
    RunStatus,
)

__all__ = [
    "ArtifactStoreProtocol",
    "LogStoreProtocol",
    "ModelT",
    "RunStateStoreProtocol",
]

ModelT = TypeVar("ModelT", bound=BaseModel)


@runtime_checkable
class RunStateStoreProtocol(Protocol):
    """Persisting run state snapshots and run index records."""

    async def save_run_state(self, record: RunStateRecord) -> None:
        """Persist a run state snapshot."""
        ...

    async def load_run_state(self, run_id: UUID) -> RunStateRecord | None:
        """The latest run state snapshot, or None if the run has none."""
        ...

    async def save_run_index(self, record: RunIndexRecord) -> None:
        """Persist or update a run index record."""
        ...

    async def list_run_index(
        self, status: RunStatus | None = None, limit: int | None = None
    ) -> list[RunIndexRecord]:
        """Run index records, newest update first."""
        ...


@runtime_checkable
class ArtifactStoreProtocol(Protocol):
    """Persisting and reading artifacts."""

    async def write_artifact_json(
        self, metadata: ArtifactMetadata, payload: BaseModel
    ) -> ArtifactMetadata:
        """Persist a JSON artifact; the metadata comes back with location, size, checksum."""
        ...

    async def write_artifact_jsonl(
        self, metadata: ArtifactMetadata, payload: Sequence[BaseModel]
    ) -> ArtifactMetadata:
        """Persist a JSONL artifact; the metadata comes back with location, size, checksum."""
        ...

    async def list_artifacts(self, run_id: UUID) -> list[ArtifactMetadata]:
        """The artifacts of a run."""
        ...

    async def load_artifact_json(self, artifact_id: UUID, model: type[ModelT]) -> ModelT:
        """A JSON artifact parsed into ``model``."""
        ...

    async def load_artifact_jsonl(self, artifact_id: UUID, model: type[ModelT]) -> list[ModelT]:
        """A JSONL artifact parsed line by line into ``model``."""
        ...


@runtime_checkable
class LogStoreProtocol(Protocol):
    """Persisting JSONL log entries."""

    async def append_log(self, entry: LogEntry) -> None:
        """Append one log entry."""
        ...

    async def append_logs(self, entries: list[LogEntry]) -> None:
        """Append several log entries of one run."""
        ...

    async def get_log_reference(self, run_id: UUID) -> LogFileReference | None:
        """The run's log reference, or None if the run has no log."""
        ...
