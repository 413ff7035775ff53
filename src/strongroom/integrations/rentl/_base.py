"""The base of the three stores: the shared vault handle and the record classes."""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel

from strongroom.integrations.rentl import schemas
from strongroom.integrations.rentl._handle import (
    VaultHandle,
)
from strongroom.integrations.rentl.errors import (
    StorageError,
    parse_error_info,
)
from strongroom.vault import Vault

__all__ = ["ARTIFACT_NAMESPACE", "INDEX_NAMESPACE", "INDEX_TAG", "PAGE", "RentlSchemas", "Store"]

#: The artifact namespace of rentl's artifacts, and of the run index records.
ARTIFACT_NAMESPACE = "rentl"
INDEX_NAMESPACE = "rentl-index"
INDEX_TAG = "rentl.run-index"
PAGE = 10_000

_TO_LEVEL = {"debug": "debug", "info": "info", "warn": "warning", "error": "error"}
_FROM_LEVEL = {"debug": "debug", "info": "info", "warning": "warn", "error": "error"}
_PHASE_EVENTS = {
    "running": "started",
    "completed": "completed",
    "failed": "failed",
    "skipped": "skipped",
}
_FINISHED = {"completed", "failed", "cancelled"}


@dataclass(frozen=True)
class RentlSchemas:
    """The classes the stores return records as: the mirrored ones by default, or rentl's
    own (`from_rentl`, where ``rentl_schemas`` is installed)."""

    run_state_record: type[BaseModel] = schemas.RunStateRecord
    run_index_record: type[BaseModel] = schemas.RunIndexRecord
    artifact_metadata: type[BaseModel] = schemas.ArtifactMetadata
    log_file_reference: type[BaseModel] = schemas.LogFileReference
    log_entry: type[BaseModel] = schemas.LogEntry

    @classmethod
    def from_rentl(cls) -> RentlSchemas:
        """rentl's own classes (needs ``rentl_schemas`` importable)."""
        storage = importlib.import_module("rentl_schemas.storage")
        logs = importlib.import_module("rentl_schemas.logs")
        return cls(
            run_state_record=storage.RunStateRecord,
            run_index_record=storage.RunIndexRecord,
            artifact_metadata=storage.ArtifactMetadata,
            log_file_reference=storage.LogFileReference,
            log_entry=logs.LogEntry,
        )


def _handle(vault: Vault | VaultHandle | str | Path, **options: Any) -> VaultHandle:
    return vault if isinstance(vault, VaultHandle) else VaultHandle(vault, **options)


class Store:
    def __init__(
        self,
        vault: Vault | VaultHandle | str | Path,
        *,
        schemas: RentlSchemas | None = None,
        **options: Any,
    ) -> None:
        self.handle = _handle(vault, **options)
        self.schemas = schemas or RentlSchemas()

    async def aclose(self) -> None:
        """Close the vault if this store's handle opened it."""
        await self.handle.aclose()

    def _load(
        self, model: type[BaseModel], payload: object, entity: str, operation: str, **ids: Any
    ) -> Any:
        try:
            return model.model_validate_json(json.dumps(payload))
        except pydantic.ValidationError as exc:
            info = parse_error_info(
                exc, entity=entity, details=self.handle.details(operation, **ids)
            )
            raise StorageError(info) from exc
