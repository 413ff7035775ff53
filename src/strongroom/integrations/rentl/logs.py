"""rentl's log store on a vault (see `.stores`)."""

from __future__ import annotations

from typing import cast
from uuid import UUID

from strongroom.errors import NotFound
from strongroom.integrations.rentl import schemas
from strongroom.integrations.rentl._base import Store
from strongroom.integrations.rentl._handle import (
    as_uuid,
    timestamp,
    validated,
)
from strongroom.integrations.rentl.errors import (
    StorageBatchError,
    StorageError,
    StorageErrorCode,
    StorageErrorInfo,
)
from strongroom.models import LogEntry as StoredLogEntry

__all__ = ["StrongroomLogStore"]

_TO_LEVEL = {"debug": "debug", "info": "info", "warn": "warning", "error": "error"}
_FROM_LEVEL = {"debug": "debug", "info": "info", "warning": "warn", "error": "error"}


class StrongroomLogStore(Store):
    """rentl's ``LogStoreProtocol`` on a vault: each run's log is strongroom's hash-chained,
    redacted run log (sealed into an artifact when the run is closed)."""

    async def append_log(self, entry: schemas.LogEntry) -> None:
        await self.append_logs([entry], operation="append_log")

    async def append_logs(
        self, entries: list[schemas.LogEntry], *, operation: str = "append_logs"
    ) -> None:
        """Append entries of one run in one transaction. Entries that fail rentl's schema
        raise `StorageBatchError` (one info each) and nothing is stored; entries of several
        runs raise ``validation_error`` (``mixed_run_ids``) as rentl does."""
        if not entries:
            return
        parsed: list[schemas.LogEntry] = []
        problems: list[StorageErrorInfo] = []
        for entry in entries:
            try:
                parsed.append(validated(entry, schemas.LogEntry, operation, "Log entry")[0])
            except StorageError as exc:
                problems.append(exc.info)
        if problems:
            if len(entries) == 1:
                raise StorageError(problems[0])
            raise StorageBatchError(problems)
        run_ids = {entry.run_id for entry in parsed}
        if len(run_ids) != 1:
            raise self.handle.fail(
                StorageErrorCode.VALIDATION_ERROR,
                "Log entries must share a run_id",
                operation,
                reason="mixed_run_ids",
            )
        rid = run_ids.pop()
        lines = [
            {
                "timestamp": entry.timestamp,
                "level": _TO_LEVEL[str(entry.level)],
                "event": entry.event,
                "phase": None if entry.phase is None else str(entry.phase),
                "message": entry.message,
                "data": entry.data or {},
            }
            for entry in parsed
        ]
        with self.handle.mapped(operation, run_id=rid):
            vault = await self.handle.ensure_run(str(rid))
            await vault.logs.append_many(str(rid), lines)

    async def get_log_reference(self, run_id: UUID) -> schemas.LogFileReference | None:
        rid = as_uuid(run_id, "get_log_reference")
        with self.handle.mapped("get_log_reference", run_id=rid):
            vault = await self.handle.vault()
            try:
                ref = await vault.logs.reference(str(rid))
            except NotFound:
                return None
            if ref.entry_count == 0 and not ref.sealed:
                return None  # rentl: no log file yet
            if ref.sealed and ref.sealed_artifact_id is not None:
                sealed = await vault.artifacts.get(ref.sealed_artifact_id)
                location = self.handle.blob_reference(sealed.location)
            else:
                location = self.handle.records_reference(f"logs/{rid}")
        payload = {
            "run_id": str(rid),
            "format": "jsonl",
            "created_at": timestamp(ref.created_at),
            "updated_at": timestamp(ref.updated_at),
            "location": location.model_dump(mode="json"),
            "entry_count": ref.entry_count,
        }
        loaded = self._load(
            self.schemas.log_file_reference, payload, "Log reference", "get_log_reference"
        )
        return cast(schemas.LogFileReference, loaded)

    async def read_logs(self, run_id: UUID) -> list[schemas.LogEntry]:
        """Not in rentl's port: the run's log as rentl entries, oldest first (levels mapped
        back, ``critical`` read as ``error``; an empty ``data`` reads as None). Messages are
        as stored, i.e. after the vault's redaction."""
        rid = as_uuid(run_id, "read_logs")
        found: list[StoredLogEntry] = []
        with self.handle.mapped("read_logs", run_id=rid):
            vault = await self.handle.vault()
            try:
                async for entry in vault.logs.iter_entries(str(rid)):
                    found.append(entry)
            except NotFound:
                return []
        return [
            cast(
                schemas.LogEntry,
                self._load(
                    self.schemas.log_entry,
                    {
                        "timestamp": timestamp(entry.timestamp),
                        "level": _FROM_LEVEL.get(entry.level.value, "error"),
                        "event": entry.event,
                        "run_id": entry.run_id,
                        "phase": entry.phase,
                        "message": entry.message or "(empty)",
                        "data": entry.data or None,
                    },
                    "Log entry",
                    "read_logs",
                    run_id=rid,
                ),
            )
            for entry in found
        ]
