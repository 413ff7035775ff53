"""rentl's artifact store on a vault (see `.stores`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol
from uuid import UUID

import pydantic
from pydantic import BaseModel

from strongroom.integrations.rentl import schemas
from strongroom.integrations.rentl._base import ARTIFACT_NAMESPACE, PAGE, Store
from strongroom.integrations.rentl._handle import (
    as_uuid,
    validated,
)
from strongroom.integrations.rentl.errors import (
    StorageError,
    StorageErrorCode,
    parse_error_info,
)
from strongroom.integrations.rentl.ports import ModelT
from strongroom.models import ArtifactMetadata as StoredArtifact
from strongroom.vault import Vault

__all__ = ["StrongroomArtifactStore"]


class _Redactor(Protocol):
    """rentl's ``Redactor`` as the artifact writers use it."""

    def redact_dict(self, data: dict[str, Any]) -> dict[str, Any]: ...


class StrongroomArtifactStore(Store):
    """rentl's ``ArtifactStoreProtocol`` on a vault (see the module's table)."""

    async def write_artifact_json(
        self,
        metadata: schemas.ArtifactMetadata,
        payload: BaseModel,
        redactor: _Redactor | None = None,
    ) -> schemas.ArtifactMetadata:
        body = _json_body(payload, redactor)
        return await self._write(metadata, body, "json", "write_artifact_json")

    async def write_artifact_jsonl(
        self,
        metadata: schemas.ArtifactMetadata,
        payload: Sequence[BaseModel],
        redactor: _Redactor | None = None,
    ) -> schemas.ArtifactMetadata:
        body = b"".join(_json_body(item, redactor) + b"\n" for item in payload)
        return await self._write(metadata, body, "jsonl", "write_artifact_jsonl")

    async def list_artifacts(self, run_id: UUID) -> list[schemas.ArtifactMetadata]:
        rid = as_uuid(run_id, "list_artifacts")
        found: list[StoredArtifact] = []
        with self.handle.mapped("list_artifacts", run_id=rid):
            vault = await self.handle.vault()
            after: str | None = None
            while True:
                page = await vault.artifacts.list(
                    run_id=str(rid), namespace=ARTIFACT_NAMESPACE, limit=PAGE, after_id=after
                )
                found.extend(page)
                if len(page) < PAGE:
                    break
                after = page[-1].artifact_id
        return [self._metadata(item, "list_artifacts") for item in found]

    async def load_artifact_json(self, artifact_id: UUID, model: type[ModelT]) -> ModelT:
        data, item = await self._read(artifact_id, "json", "load_artifact_json")
        return self._parse(model, data, item, "load_artifact_json")

    async def load_artifact_jsonl(self, artifact_id: UUID, model: type[ModelT]) -> list[ModelT]:
        data, item = await self._read(artifact_id, "jsonl", "load_artifact_jsonl")
        return [
            self._parse(model, line, item, "load_artifact_jsonl")
            for line in data.split(b"\n")
            if line.strip()
        ]

    # -- internals ------------------------------------------------------------------------------

    async def _write(
        self, metadata: schemas.ArtifactMetadata, body: bytes, fmt: str, operation: str
    ) -> schemas.ArtifactMetadata:
        parsed, given = validated(
            metadata, schemas.ArtifactMetadata, operation, "Artifact metadata"
        )
        if str(parsed.format) != fmt:
            raise self.handle.fail(
                StorageErrorCode.UNSUPPORTED_FORMAT,
                f"Artifact format must be {fmt}",
                operation,
                run_id=parsed.run_id,
                artifact_id=parsed.artifact_id,
            )
        aid = str(parsed.artifact_id)
        kept = {k: v for k, v in given.items() if k not in ("location", "size_bytes")}
        kept.pop("checksum_sha256", None)
        with self.handle.mapped(operation, run_id=parsed.run_id, artifact_id=parsed.artifact_id):
            vault = await self.handle.ensure_run(str(parsed.run_id))
            stored = await vault.artifacts.put_bytes(
                str(parsed.run_id),
                body,
                role=str(parsed.role),
                format=fmt,
                phase=None if parsed.phase is None else str(parsed.phase),
                label=parsed.target_language,
                name=f"artifact-{aid}.{fmt}",
                description=None if parsed.description is None else parsed.description[:4000],
                metadata={"rentl_artifact": kept},
                namespace=ARTIFACT_NAMESPACE,
                tags=[f"rentl.artifact={aid}"],
            )
        self.handle.artifact_ids[aid] = stored.artifact_id
        enriched = self._metadata(stored, operation)
        # Returned as the caller's class (rentl's own, or the mirror).
        return type(metadata).model_validate_json(enriched.model_dump_json())

    def _metadata(self, item: StoredArtifact, operation: str) -> Any:
        given = item.metadata.get("rentl_artifact")
        payload = {
            **(given if isinstance(given, dict) else {}),
            "location": self.handle.blob_reference(item.location).model_dump(mode="json"),
            "size_bytes": item.size_bytes,
            "checksum_sha256": item.sha256,
        }
        return self._load(
            self.schemas.artifact_metadata,
            payload,
            "Artifact index entry",
            operation,
            run_id=UUID(item.run_id),
        )

    async def _find(self, vault: Vault, artifact_id: str) -> StoredArtifact | None:
        known = self.handle.artifact_ids.get(artifact_id)
        if known is not None:
            return await vault.artifacts.get(known)
        matches = await vault.artifacts.list(
            namespace=ARTIFACT_NAMESPACE, tag=f"rentl.artifact={artifact_id}", limit=1000
        )
        if not matches:
            return None
        self.handle.artifact_ids[artifact_id] = matches[-1].artifact_id
        return matches[-1]  # written twice under one id: the newest, as rentl's index

    async def _read(
        self, artifact_id: UUID, fmt: str, operation: str
    ) -> tuple[bytes, StoredArtifact]:
        aid = as_uuid(artifact_id, operation, "artifact_id")
        with self.handle.mapped(operation, artifact_id=aid):
            vault = await self.handle.vault()
            item = await self._find(vault, str(aid))
            if item is None:
                raise self.handle.fail(
                    StorageErrorCode.NOT_FOUND, "Artifact not found", operation, artifact_id=aid
                )
            if item.format.value != fmt:
                raise self.handle.fail(
                    StorageErrorCode.UNSUPPORTED_FORMAT,
                    f"Artifact is not {fmt.upper()}",
                    operation,
                    run_id=UUID(item.run_id),
                    artifact_id=aid,
                )
            data = await vault.artifacts.get_bytes(item.artifact_id)  # sha256 verified
        return data, item

    def _parse(
        self, model: type[ModelT], data: bytes, item: StoredArtifact, operation: str
    ) -> ModelT:
        try:
            return model.model_validate_json(data)
        except pydantic.ValidationError as exc:
            reference = self.handle.blob_reference(item.location)
            details = self.handle.details(
                operation,
                run_id=UUID(item.run_id),
                artifact_id=UUID(str(self._rentl_id(item))),
                path=reference.path,
                uri=reference.uri,
            )
            info = parse_error_info(
                exc, entity="Artifact", schema_entity="Artifact payload", details=details
            )
            raise StorageError(info) from exc

    @staticmethod
    def _rentl_id(item: StoredArtifact) -> str:
        given = item.metadata.get("rentl_artifact")
        if isinstance(given, dict) and isinstance(given.get("artifact_id"), str):
            return str(given["artifact_id"])
        return item.artifact_id


def _json_body(payload: BaseModel, redactor: _Redactor | None) -> bytes:
    if redactor is None:
        return payload.model_dump_json(exclude_none=True).encode()
    data = redactor.redact_dict(payload.model_dump(mode="json", exclude_none=True))
    return json.dumps(data).encode()
