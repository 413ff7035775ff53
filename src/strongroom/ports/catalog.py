"""The catalog port: providers, namespaces and objects. Writes are insert-or-replace (an
object's (namespace, path) is unique); every write takes ``audit`` (see
`strongroom.ports.metadata`)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from strongroom.models import AuditEvent, CatalogObject, Namespace, Provider

__all__ = ["CatalogRecords"]


class CatalogRecords(ABC):
    """The storage catalog (conformance: `strongroom.testing.CatalogRecordsTests`)."""

    @abstractmethod
    async def put_provider(self, provider: Provider, *, audit: AuditEvent | None = None) -> None:
        """Insert or replace."""

    @abstractmethod
    async def get_provider(self, provider_id: str) -> Provider: ...

    @abstractmethod
    async def list_providers(self) -> list[Provider]: ...

    @abstractmethod
    async def put_namespace(self, namespace: Namespace, *, audit: AuditEvent | None = None) -> None:
        """Insert or replace. `NotFound` if its provider is missing."""

    @abstractmethod
    async def get_namespace(self, namespace_id: str) -> Namespace: ...

    @abstractmethod
    async def list_namespaces(self, provider_id: str | None = None) -> list[Namespace]: ...

    @abstractmethod
    async def put_object(self, obj: CatalogObject, *, audit: AuditEvent | None = None) -> None:
        """Insert or replace by object_id; (namespace_id, path) is unique: another object at
        the same path raises `Conflict`. `NotFound` if the namespace is missing."""

    @abstractmethod
    async def get_object(self, object_id: str) -> CatalogObject: ...

    @abstractmethod
    async def list_objects(
        self, namespace_id: str | None = None, *, prefix: str | None = None, limit: int = 1000
    ) -> list[CatalogObject]:
        """Objects ordered by path."""

    @abstractmethod
    async def delete_object(self, object_id: str, *, audit: AuditEvent | None = None) -> None:
        """`NotFound` if absent."""
