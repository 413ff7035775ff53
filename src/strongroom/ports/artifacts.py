"""The artifacts port: the records describing a run's stored outputs (the bytes are blobs).
Inserts are all-or-nothing; every write takes ``audit`` (see `strongroom.ports.metadata`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from strongroom.models import ArtifactMetadata, ArtifactQuery, AuditEvent

__all__ = ["ArtifactRecords"]


class ArtifactRecords(ABC):
    """Artifact records (conformance: `strongroom.testing.ArtifactRecordsTests`)."""

    @abstractmethod
    async def insert_artifacts(
        self, artifacts: Sequence[ArtifactMetadata], *, audit: AuditEvent | None = None
    ) -> None:
        """All-or-nothing. `NotFound` if a run is missing, `Conflict` on a duplicate id."""

    @abstractmethod
    async def get_artifact(self, artifact_id: str) -> ArtifactMetadata: ...

    @abstractmethod
    async def list_artifacts(self, query: ArtifactQuery) -> list[ArtifactMetadata]:
        """Matching artifacts ordered by artifact_id (time-ordered), after ``query.after_id``."""
