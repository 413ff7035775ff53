"""What the three rentl stores share: one vault (opened lazily from a URL, or given), the
runs they have made sure exist, rentl's artifact ids already resolved, and the mapping of
strongroom's errors and locations onto rentl's shapes."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse
from uuid import UUID

import pydantic
from pydantic import BaseModel

from strongroom.errors import Conflict, NotFound, StrongroomError
from strongroom.ids import check_name
from strongroom.integrations.rentl.errors import (
    StorageError,
    StorageErrorCode,
    StorageErrorDetails,
    StorageErrorInfo,
    storage_error,
)
from strongroom.integrations.rentl.schemas import StorageBackend, StorageReference
from strongroom.models import BlobLocation
from strongroom.vault import Vault

__all__ = ["VaultHandle"]

M = TypeVar("M", bound=BaseModel)

_RECORDS_BACKENDS = {"sqlite": StorageBackend.SQLITE, "postgresql": StorageBackend.POSTGRES}
_BLOB_BACKENDS = {"local": StorageBackend.FILESYSTEM, "s3": StorageBackend.S3}


class VaultHandle:
    """One vault shared by a run state store, an artifact store and a log store.

    ``vault``: an open `Vault` (the caller closes it), or a URL / path that is opened on first
    use (``blobs_url`` as for `Vault.open`) and closed by `aclose`. ``project``: the strongroom
    project of the runs the stores create (rentl's run state carries no project name; a run
    index record's ``project_name`` is used instead when it is a valid strongroom name and
    the run does not exist yet). ``actor``: who the runs and their changes are recorded as.

    A handle is used from one event loop, as rentl's orchestrator does (a vault's database
    connections belong to the loop that opened them)."""

    def __init__(
        self,
        vault: Vault | str | Path,
        *,
        blobs_url: str | Path | None = None,
        project: str = "rentl",
        actor: str = "rentl",
    ) -> None:
        check_name(project)
        self._vault = vault if isinstance(vault, Vault) else None
        self._url = None if isinstance(vault, Vault) else vault
        self._blobs_url = blobs_url
        self._owned = self._vault is None
        self._lock: asyncio.Lock | None = None
        self.project = project
        self.actor = actor
        self._ensured: set[str] = set()
        #: rentl artifact id -> strongroom artifact id, for the artifacts this handle wrote
        #: or found (saves a tag query per read and lets snapshots name real artifacts).
        self.artifact_ids: dict[str, str] = {}

    @property
    def opened(self) -> Vault | None:
        """The vault if it is open already."""
        return self._vault

    async def vault(self) -> Vault:
        """The vault, opened now if this handle was given a URL."""
        if self._vault is not None:
            return self._vault
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._vault is None:
                assert self._url is not None
                self._vault = await Vault.open(self._url, blobs_url=self._blobs_url)
        return self._vault

    async def aclose(self) -> None:
        """Close the vault if this handle opened it."""
        if self._owned and self._vault is not None:
            vault, self._vault = self._vault, None
            await vault.close()

    async def ensure_run(self, run_id: str, project: str | None = None) -> Vault:
        """Make sure strongroom has a run record for rentl's ``run_id`` (a pending run of
        ``project``, else of the handle's project), and return the vault."""
        vault = await self.vault()
        if run_id in self._ensured:
            return vault
        try:
            await vault.runs.get(run_id)
        except NotFound:
            try:
                await vault.runs.create(
                    run_id=run_id,
                    project=_valid_name(project) or self.project,
                    actor=self.actor,
                    purpose="rentl pipeline run",
                )
            except Conflict:
                await vault.runs.get(run_id)  # created meanwhile by another process
        self._ensured.add(run_id)
        return vault

    # -- rentl shapes -------------------------------------------------------------------------

    def records_backend(self) -> StorageBackend | None:
        vault = self._vault
        if vault is None:
            return None
        return _RECORDS_BACKENDS.get(vault.metadata.backend, StorageBackend.CUSTOM)

    def blob_reference(self, location: BlobLocation) -> StorageReference:
        """Where a blob is, as rentl says it: a filesystem ``path`` for a local blob kept as
        a file (the file itself), and always the ``uri``. A small blob is a row of the records
        store (`strongroom.adapters.InlineBlobStore`): no file, so no ``path``; rentl reads it
        through the vault, as it reads any blob."""
        path = None
        if location.uri.startswith("file://"):
            candidate = unquote(urlparse(location.uri).path)
            path = candidate if os.path.isfile(candidate) else None
        return StorageReference(
            backend=_BLOB_BACKENDS.get(location.backend, StorageBackend.CUSTOM),
            path=path,
            uri=location.uri,
        )

    def records_reference(self, fragment: str) -> StorageReference:
        """A place in the records store (a run's open log): the vault's URL + a fragment."""
        vault = self._vault
        url = vault.url if vault is not None else str(self._url)
        if "://" not in url:
            url = Path(url).resolve().as_uri()
        return StorageReference(backend=self.records_backend(), uri=f"{url}#{fragment}")

    def details(
        self,
        operation: str,
        *,
        run_id: UUID | None = None,
        artifact_id: UUID | None = None,
        **extra: str | None,
    ) -> StorageErrorDetails:
        return StorageErrorDetails(
            operation=operation,
            run_id=run_id,
            artifact_id=artifact_id,
            backend=self.records_backend(),
            **extra,
        )

    @contextmanager
    def mapped(
        self, operation: str, *, run_id: UUID | None = None, artifact_id: UUID | None = None
    ) -> Iterator[None]:
        """Raise whatever strongroom (or the OS) raises inside as rentl's `StorageError`."""
        try:
            yield
        except (StorageError, pydantic.ValidationError):
            raise
        except (StrongroomError, OSError) as exc:
            raise storage_error(
                exc, self.details(operation, run_id=run_id, artifact_id=artifact_id)
            ) from exc

    def fail(
        self,
        code: StorageErrorCode,
        message: str,
        operation: str,
        *,
        run_id: UUID | None = None,
        artifact_id: UUID | None = None,
        reason: str | None = None,
    ) -> StorageError:
        details = self.details(operation, run_id=run_id, artifact_id=artifact_id, reason=reason)
        return StorageError(StorageErrorInfo(code=code, message=message, details=details))


def _valid_name(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_name(value)
    except ValueError:
        return None


def as_uuid(value: object, operation: str, what: str = "run_id") -> UUID:
    """rentl's ids are UUIDs; a canonical string is accepted too."""
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise StorageError(
            StorageErrorInfo(
                code=StorageErrorCode.VALIDATION_ERROR,
                message=f"{what} must be a UUID",
                details=StorageErrorDetails(operation=operation, reason=f"invalid_{what}"),
            )
        ) from None


def validated(
    value: object, model: type[M], operation: str, entity: str
) -> tuple[M, dict[str, Any]]:
    """A caller's record (rentl's class or the mirror) checked against the mirrored schema:
    the mirror instance and the record's JSON form. Anything else is `validation_error`."""
    if not isinstance(value, BaseModel):
        raise StorageError(
            StorageErrorInfo(
                code=StorageErrorCode.VALIDATION_ERROR,
                message=f"{entity} must be a pydantic model, not {type(value).__name__}",
                details=StorageErrorDetails(operation=operation, reason="not_a_model"),
            )
        )
    text = value.model_dump_json()
    try:
        parsed = model.model_validate_json(text)
    except pydantic.ValidationError as exc:
        raise StorageError(
            StorageErrorInfo(
                code=StorageErrorCode.VALIDATION_ERROR,
                message=f"{entity} failed schema validation",
                details=StorageErrorDetails(operation=operation, reason=str(exc)),
            )
        ) from exc
    loaded: dict[str, Any] = json.loads(text)
    return parsed, loaded


def timestamp(value: datetime) -> str:
    """A datetime as rentl writes timestamps: ISO-8601 UTC with ``Z``."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
