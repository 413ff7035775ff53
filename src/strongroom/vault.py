"""The `Vault`: one object a program holds to use strongroom, wiring the services over a
metadata store and a blob store chosen by URL.

    async with await Vault.open("./.strongroom") as vault:
        run = await vault.runs.create(project="demo")
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

from strongroom.adapters import open_stores, safe_url
from strongroom.models import VerifyReport
from strongroom.ports import BlobStore, MetadataStore
from strongroom.services import (
    DEFAULT_REDACT_PATTERNS,
    ArtifactService,
    AuditService,
    CatalogService,
    LogService,
    ProgressCallback,
    Redactor,
    RunService,
    SnapshotService,
    TransitionService,
    verify_vault,
)
from strongroom.services.registry import RegistryService

__all__ = ["DEFAULT_VAULT_URL", "Vault"]

DEFAULT_VAULT_URL = "./.strongroom"


class Vault:
    def __init__(
        self,
        metadata: MetadataStore,
        blobs: BlobStore,
        *,
        url: str = "memory://",
        redact_patterns: Iterable[str] = DEFAULT_REDACT_PATTERNS,
        checkpoint_interval: int = 1000,
    ) -> None:
        self.url = url
        self.metadata = metadata
        self.blobs = blobs
        self.audit = AuditService(metadata, checkpoint_interval=checkpoint_interval)
        self.artifacts = ArtifactService(metadata, blobs)
        self.logs = LogService(metadata, self.audit, self.artifacts, Redactor(redact_patterns))
        self.runs = RunService(metadata, self.audit, self.logs)
        self.snapshots = SnapshotService(metadata, blobs)
        self.transitions = TransitionService(metadata, self.snapshots, self.runs, self.logs)
        self.catalog = CatalogService(metadata, blobs, self.audit)
        self.registry = RegistryService(metadata, blobs, self.audit, self.catalog)

    def local_paths(self) -> list[Path]:
        """The directories on this machine that hold the vault's files (the SQLite database's
        folder, the local blob root): what a sandboxed tool must never be able to reach."""
        found: list[Path] = []
        database = getattr(self.metadata, "path", None)
        if isinstance(database, Path):
            found.append(database.parent)
        root = getattr(self.blobs, "root", None)
        if isinstance(root, Path):
            found.append(root)
        return found

    @classmethod
    async def open(
        cls,
        url: str | Path | None = None,
        *,
        blobs_url: str | Path | None = None,
        redact_patterns: Iterable[str] = DEFAULT_REDACT_PATTERNS,
        checkpoint_interval: int = 1000,
        create: bool = True,
        bootstrap: bool = True,
    ) -> Self:
        """Open the vault at ``url``: a directory path for the embedded SQLite + local blobs
        vault, ``postgresql://...`` (with ``blobs_url``), or ``memory://``. ``blobs_url``
        (``s3://bucket/prefix``, a directory, ``memory://``) puts the blobs elsewhere than the
        URL's default (see `strongroom.adapters`). A missing embedded vault is created unless
        ``create=False``, which raises `NotFound` instead. ``vault.url`` never holds a
        password (`safe_url`).

        Opening also creates whichever default catalog entries (the ``default`` provider and
        the standard namespaces) are missing, each one audited. ``bootstrap=False`` skips
        that, so opening adds no record (a new store still gets its schema): for a vault that
        is about to receive another vault's records verbatim (``strongroom import``), where
        a catalog and audit chain of its own would collide with the copied ones."""
        text = str(url) if url is not None else DEFAULT_VAULT_URL
        metadata, blobs = open_stores(
            text, blobs_url=str(blobs_url) if blobs_url is not None else None, create=create
        )
        await metadata.open()
        try:
            await blobs.open()
            vault = cls(
                metadata,
                blobs,
                url=safe_url(text),
                redact_patterns=redact_patterns,
                checkpoint_interval=checkpoint_interval,
            )
            if bootstrap:
                probe = blobs.locate("0" * 64)
                await vault.catalog.ensure_defaults(base_uri=probe.uri.removesuffix(probe.path))
        except BaseException:
            await blobs.close()
            await metadata.close()
            raise
        return vault

    async def close(self) -> None:
        try:
            await self.blobs.close()
        finally:
            await self.metadata.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def verify(self, *, on_progress: ProgressCallback | None = None) -> VerifyReport:
        return await verify_vault(
            self.metadata, self.blobs, self.logs, self.audit, on_progress=on_progress
        )
