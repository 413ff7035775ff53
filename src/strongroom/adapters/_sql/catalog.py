"""The catalog: providers, their namespaces, and the objects stored in each namespace.

Object listings filter by path prefix with a byte-order range, so they use the path indexes
and order paths the same way on every backend.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from strongroom.adapters._sql.audit import AuditRecords
from strongroom.adapters._sql.base import (
    check_limit,
    fetch_all,
    fetch_scalar,
    parse_body,
)
from strongroom.adapters._sql.tables import (
    catalog_objects_table,
    namespaces_table,
    providers_table,
)
from strongroom.models import (
    AuditEvent,
    CatalogObject,
    Namespace,
    Provider,
    bind,
    bind_deleted,
    stored_body,
)

__all__ = ["CatalogRecords"]


def _object_row(obj: CatalogObject) -> dict[str, Any]:
    return {
        "object_id": obj.object_id,
        "namespace_id": obj.namespace_id,
        "path": obj.path,
        "sha256": obj.sha256,
        "size_bytes": obj.size_bytes,
        "created_at": obj.created_at,
        "body": stored_body(obj),
    }


def _prefix_successor(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (byte order)."""
    for i in range(len(prefix) - 1, -1, -1):
        code = ord(prefix[i])
        if code < 0x10FFFF and not 0xD7FF <= code < 0xE000:
            return prefix[:i] + chr(code + 1)
    return None


class CatalogRecords(AuditRecords):
    """The provider, namespace and object methods of `SqlMetadataStore`."""

    async def put_provider(self, provider: Provider, *, audit: AuditEvent | None = None) -> None:
        values = {"provider_id": provider.provider_id, "body": stored_body(provider)}

        def op(conn: Connection) -> None:
            conn.execute(self._upsert(conn, providers_table, values, ["provider_id"]))

        await self._write_bound(
            "put_provider",
            op,
            audit,
            [bind(provider, values["body"])],
            provider_id=provider.provider_id,
        )

    async def get_provider(self, provider_id: str) -> Provider:
        stmt = select(providers_table.c.body).where(providers_table.c.provider_id == provider_id)
        body = await self._read("get_provider", fetch_scalar(stmt), provider_id=provider_id)
        if body is None:
            raise self._not_found(
                "get_provider", f"no provider {provider_id}", provider_id=provider_id
            )
        return parse_body(Provider, body, "provider", provider_id)

    async def list_providers(self) -> list[Provider]:
        c = providers_table.c
        stmt = select(c.provider_id, c.body).order_by(c.provider_id)

        rows = await self._read("list_providers", fetch_all(stmt))
        return [parse_body(Provider, row.body, "provider", row.provider_id) for row in rows]

    async def put_namespace(self, namespace: Namespace, *, audit: AuditEvent | None = None) -> None:
        values = {
            "namespace_id": namespace.namespace_id,
            "provider_id": namespace.provider_id,
            "body": stored_body(namespace),
        }

        def op(conn: Connection) -> None:
            conn.execute(self._upsert(conn, namespaces_table, values, ["namespace_id"]))

        await self._write_bound(
            "put_namespace",
            op,
            audit,
            [bind(namespace, values["body"])],
            namespace_id=namespace.namespace_id,
            provider_id=namespace.provider_id,
        )

    async def get_namespace(self, namespace_id: str) -> Namespace:
        stmt = select(namespaces_table.c.body).where(
            namespaces_table.c.namespace_id == namespace_id
        )
        body = await self._read("get_namespace", fetch_scalar(stmt), namespace_id=namespace_id)
        if body is None:
            raise self._not_found(
                "get_namespace", f"no namespace {namespace_id}", namespace_id=namespace_id
            )
        return parse_body(Namespace, body, "namespace", namespace_id)

    async def list_namespaces(self, provider_id: str | None = None) -> list[Namespace]:
        c = namespaces_table.c
        stmt = select(c.namespace_id, c.body).order_by(c.namespace_id)
        if provider_id is not None:
            stmt = stmt.where(c.provider_id == provider_id)

        rows = await self._read("list_namespaces", fetch_all(stmt), provider_id=provider_id)
        return [parse_body(Namespace, row.body, "namespace", row.namespace_id) for row in rows]

    async def put_object(self, obj: CatalogObject, *, audit: AuditEvent | None = None) -> None:
        values = _object_row(obj)

        def op(conn: Connection) -> None:
            conn.execute(self._upsert(conn, catalog_objects_table, values, ["object_id"]))

        await self._write_bound(
            "put_object",
            op,
            audit,
            [bind(obj, values["body"])],
            blobs=[obj.sha256],
            object_id=obj.object_id,
            namespace_id=obj.namespace_id,
            uri=obj.path,
        )

    async def get_object(self, object_id: str) -> CatalogObject:
        stmt = select(catalog_objects_table.c.body).where(
            catalog_objects_table.c.object_id == object_id
        )
        body = await self._read("get_object", fetch_scalar(stmt), object_id=object_id)
        if body is None:
            raise self._not_found("get_object", f"no object {object_id}", object_id=object_id)
        return parse_body(CatalogObject, body, "object", object_id)

    async def list_objects(
        self, namespace_id: str | None = None, *, prefix: str | None = None, limit: int = 1000
    ) -> list[CatalogObject]:
        check_limit(limit, "list_objects")
        c = catalog_objects_table.c
        stmt = select(c.object_id, c.body)
        if namespace_id is not None:
            stmt = stmt.where(c.namespace_id == namespace_id)
        if prefix:
            # A byte-order range rather than LIKE: SQLite's LIKE ignores ASCII case, and a
            # range uses the (namespace_id, path) / path indexes on both backends.
            stmt = stmt.where(c.path >= prefix)
            successor = _prefix_successor(prefix)
            if successor is not None:
                stmt = stmt.where(c.path < successor)
        stmt = stmt.order_by(c.path, c.namespace_id).limit(limit)

        rows = await self._read("list_objects", fetch_all(stmt), namespace_id=namespace_id)
        return [parse_body(CatalogObject, row.body, "object", row.object_id) for row in rows]

    async def delete_object(self, object_id: str, *, audit: AuditEvent | None = None) -> None:
        def op(conn: Connection) -> None:
            result = conn.execute(
                delete(catalog_objects_table).where(catalog_objects_table.c.object_id == object_id)
            )
            if result.rowcount == 0:  # raised inside: nothing, not even the audit entry, lands
                raise self._not_found(
                    "delete_object", f"no object {object_id}", object_id=object_id
                )

        await self._write_bound(
            "delete_object", op, audit, [bind_deleted("object", object_id)], object_id=object_id
        )
