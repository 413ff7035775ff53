"""The storage catalog: providers, namespaces (with retention_days) and objects, as live
records. Every change is audited. Objects hold bytes in the blob store at a deterministic,
versioned path inside their namespace (e.g. ``runs/<run_id>/run.json``).

The default provider and namespaces (`DEFAULT_NAMESPACES`) are an invariant of every vault,
however it was built: `Vault.open` creates the missing ones, and so does this service before
its first use (`ensure_defaults`, once per service), so a `Vault` built from two stores needs
no extra step. ``bootstrap=False`` (a vault about to receive another vault's records
verbatim, or one verify is checking) never creates them."""

from __future__ import annotations

import asyncio
from typing import Any

from strongroom.ids import new_id
from strongroom.models import (
    AuditEvent,
    CatalogObject,
    Namespace,
    Provider,
    ProviderCapabilities,
    ProviderType,
)
from strongroom.ports import BlobStore, MetadataStore
from strongroom.services._arguments import checked_arguments
from strongroom.services._common import check_int, parse
from strongroom.services._reclaim import write_despite_gc
from strongroom.services.audit import AuditService

__all__ = ["DEFAULT_NAMESPACES", "CatalogService"]

# namespace_id -> (purpose, default_prefix)
DEFAULT_NAMESPACES: dict[str, tuple[str, str]] = {
    "runs": ("Run records and state snapshots", "runs/"),
    "artifacts": ("Run outputs", "artifacts/"),
    "logs": ("Sealed run logs", "logs/"),
    "playbooks": ("Playbook definitions", "playbooks/"),
    "projects": ("Project configs", "projects/"),
    "tools": ("Tool manifests", "tools/"),
}


@checked_arguments
class CatalogService:
    def __init__(
        self,
        store: MetadataStore,
        blobs: BlobStore,
        audit: AuditService,
        *,
        bootstrap: bool = True,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._audit = audit
        self._defaults_ready = not bootstrap
        self._defaults_lock = asyncio.Lock()  # concurrent first uses create them once

    async def ensure_defaults(self, *, base_uri: str | None = None) -> None:
        """Create whichever of the default provider and namespaces are missing (the
        provider's ``base_uri``: where the blob store keeps blobs, by default asked of it).

        Each is checked on its own, so a first open that was killed halfway is completed by
        the next open. Cheap when everything exists: one read.
        """
        if base_uri is None:
            probe = self._blobs.locate("0" * 64)
            base_uri = probe.uri.removesuffix(probe.path)
        have_namespaces = {n.namespace_id for n in await self._store.list_namespaces()}
        if have_namespaces >= set(DEFAULT_NAMESPACES):
            self._defaults_ready = True
            return
        have_providers = {p.provider_id for p in await self._store.list_providers()}
        if "default" not in have_providers:
            await self._put_default_provider(base_uri)
        for namespace_id, (purpose, prefix) in DEFAULT_NAMESPACES.items():
            if namespace_id in have_namespaces:
                continue
            await self._put_namespace(
                Namespace(
                    namespace_id=namespace_id,
                    provider_id="default",
                    name=namespace_id,
                    purpose=purpose,
                    default_prefix=prefix,
                ),
                actor="system",
            )
        self._defaults_ready = True

    async def _ready(self) -> None:
        """Before any use: the defaults exist (checked once per service)."""
        if self._defaults_ready:
            return
        async with self._defaults_lock:
            if not self._defaults_ready:
                await self.ensure_defaults()

    async def _put_default_provider(self, base_uri: str) -> None:
        provider_type = (
            ProviderType.OBJECT_STORE if self._blobs.backend == "s3" else ProviderType.FILESYSTEM
        )
        await self._put_provider(
            Provider(
                provider_id="default",
                name=f"Default {self._blobs.backend} blob store",
                type=provider_type,
                owner="system",
                base_uri=base_uri,
                capabilities=ProviderCapabilities(supports_versioning=True),
            )
        )

    async def put_provider(
        self, provider: Provider | dict[str, Any], *, actor: str = "system"
    ) -> Provider:
        parsed = parse(Provider, provider, operation="catalog.put_provider")
        await self._ready()
        return await self._put_provider(parsed, actor=actor)

    async def _put_provider(self, parsed: Provider, *, actor: str = "system") -> Provider:
        await self._store.put_provider(
            parsed,
            audit=AuditEvent(
                event="catalog.provider.put",
                actor=actor,
                subject_type="provider",
                subject_id=parsed.provider_id,
                details=parsed.model_dump(mode="json"),
            ),
        )
        return parsed

    async def put_namespace(
        self, namespace: Namespace | dict[str, Any], *, actor: str = "system"
    ) -> Namespace:
        parsed = parse(Namespace, namespace, operation="catalog.put_namespace")
        await self._ready()
        return await self._put_namespace(parsed, actor=actor)

    async def _put_namespace(self, parsed: Namespace, *, actor: str) -> Namespace:
        await self._store.put_namespace(
            parsed,
            audit=AuditEvent(
                event="catalog.namespace.put",
                actor=actor,
                subject_type="namespace",
                subject_id=parsed.namespace_id,
                details=parsed.model_dump(mode="json"),
            ),
        )
        return parsed

    async def providers(self) -> list[Provider]:
        await self._ready()
        return await self._store.list_providers()

    async def provider(self, provider_id: str) -> Provider:
        await self._ready()
        return await self._store.get_provider(provider_id)

    async def namespaces(self, provider_id: str | None = None) -> list[Namespace]:
        await self._ready()
        return await self._store.list_namespaces(provider_id)

    async def namespace(self, namespace_id: str) -> Namespace:
        await self._ready()
        return await self._store.get_namespace(namespace_id)

    async def put_object(
        self,
        namespace_id: str,
        path: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        run_id: str | None = None,
        tags: list[str] | None = None,
        actor: str = "system",
    ) -> CatalogObject:
        """Store ``data`` at ``path`` in a namespace. Paths are immutable: writing another
        version means another path (``.../<version>.json``); the same path again is `Conflict`."""
        draft = parse(
            CatalogObject,
            {
                "object_id": new_id(),
                "namespace_id": namespace_id,
                "path": path,
                "sha256": "0" * 64,
                "size_bytes": len(data),
                "content_type": content_type,
                "run_id": run_id,
                "tags": tags or [],
            },
            operation="catalog.put_object",
        )
        await self._ready()
        await self._store.get_namespace(draft.namespace_id)
        blob = await self._blobs.put_bytes(data)
        obj = draft.model_copy(update={"sha256": blob.sha256})
        await write_despite_gc(
            self._store,
            self._blobs,
            lambda: self._blobs.put_bytes(data),
            lambda: self._store.put_object(
                obj,
                audit=AuditEvent(
                    event="catalog.object.put",
                    actor=actor,
                    subject_type="object",
                    subject_id=obj.object_id,
                    details={"namespace_id": namespace_id, "path": path, "sha256": blob.sha256},
                ),
            ),
        )
        return obj

    async def get_object(self, object_id: str) -> CatalogObject:
        return await self._store.get_object(object_id)

    async def read_object(self, object_id: str) -> bytes:
        obj = await self._store.get_object(object_id)
        return await self._blobs.get_bytes(obj.sha256)

    async def objects(
        self, namespace_id: str | None = None, *, prefix: str | None = None, limit: int = 1000
    ) -> list[CatalogObject]:
        check_int(limit, name="limit", operation="catalog.objects", low=1)
        await self._ready()
        return await self._store.list_objects(namespace_id, prefix=prefix, limit=limit)

    async def delete_object(self, object_id: str, *, actor: str = "system") -> None:
        """Remove the record (the blob stays until garbage collection finds it unreferenced)."""
        obj = await self._store.get_object(object_id)
        await self._store.delete_object(
            object_id,
            audit=AuditEvent(
                event="catalog.object.deleted",
                actor=actor,
                subject_type="object",
                subject_id=object_id,
                details={"namespace_id": obj.namespace_id, "path": obj.path, "sha256": obj.sha256},
            ),
        )
