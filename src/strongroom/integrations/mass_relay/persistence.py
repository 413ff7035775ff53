"""Mass Relay persistence records (Run/Playbook/ProjectConfig PersistenceRecord) and
strongroom's `PersistenceRecord`, both ways; and the record strongroom writes of each
registry version, computed from the version and its catalog copy.

strongroom keeps every published version as a catalog object ``<folder>/<id>/<version>.json``
(namespace ``tools``, ``playbooks``, ``projects`` or ``policies``) whose bytes are the
version's canonical JSON: `version_record` says so in the persistence record's shape
(``stored_at`` = when it was published, ``checksum`` = ``sha256:`` + its digest).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from strongroom.errors import ValidationError
from strongroom.integrations.mass_relay.contracts import (
    PERSISTENCE_ID_FIELDS,
    PersistenceDocument,
)
from strongroom.models import DefinitionKind, PersistenceRecord
from strongroom.registry import OBJECT_FOLDERS, object_path
from strongroom.services import parse
from strongroom.vault import Vault

__all__ = [
    "from_persistence_record",
    "persistence_document",
    "persistence_record",
    "timestamp",
    "version_record",
]

_OPERATION = "mass_relay.persistence"


def timestamp(moment: datetime) -> str:
    """A UTC time as Mass Relay writes it: ``2025-01-15T13:00:00Z`` (fractions when any)."""
    text = moment.astimezone(UTC).isoformat(
        timespec="microseconds" if moment.microsecond else "seconds"
    )
    return text.replace("+00:00", "Z")


def persistence_document(data: Any) -> PersistenceDocument:
    """A Mass Relay persistence record, every field kept (`ValidationError` otherwise)."""
    doc = parse(PersistenceDocument, data, operation=_OPERATION)
    try:
        doc.subject()
    except ValueError as exc:
        raise ValidationError(str(exc), operation=_OPERATION, reason="no_subject") from None
    return doc


def persistence_record(data: Any) -> PersistenceRecord:
    """A Mass Relay persistence record as strongroom's `PersistenceRecord` (same fields;
    ``checksum`` without its ``sha256:`` prefix, the id field as ``subject``/``subject_id``).
    Fields Mass Relay may add beyond its contract are not carried: keep the document
    (`persistence_document`) for those."""
    doc = persistence_document(data)
    subject, ident = doc.subject()
    return parse(
        PersistenceRecord,
        {
            "subject": subject,
            "subject_id": ident,
            "stored_at": doc.stored_at,
            "format": doc.format,
            "version": doc.version,
            "storage": doc.storage.document(),
        },
        operation=_OPERATION,
    )


def from_persistence_record(record: PersistenceRecord) -> dict[str, Any]:
    """strongroom's `PersistenceRecord` in Mass Relay's shape (``<subject>_id`` field,
    ``checksum`` written ``sha256:<hex>``, times as ``...Z``)."""
    storage = record.storage.model_dump(mode="json")
    storage["checksum"] = f"sha256:{record.storage.checksum}"
    return {
        PERSISTENCE_ID_FIELDS[record.subject.value]: record.subject_id,
        "stored_at": timestamp(record.stored_at),
        "format": record.format,
        "version": record.version,
        "storage": storage,
    }


async def version_record(
    vault: Vault, kind: DefinitionKind | str, definition_id: str, selector: str | None = None
) -> PersistenceRecord:
    """The persistence record of a published version (see the module docstring): where its
    canonical JSON is stored, with which checksum and size."""
    kind = DefinitionKind(kind)
    version = await vault.registry.version(kind, definition_id, selector)
    folder = OBJECT_FOLDERS[kind]
    namespace = await vault.catalog.namespace(folder)
    return parse(
        PersistenceRecord,
        {
            "subject": kind.value,
            "subject_id": definition_id,
            "stored_at": version.published_at,
            "format": "json",
            "version": version.version,
            "storage": {
                "provider_id": namespace.provider_id,
                "namespace_id": namespace.namespace_id,
                "object_path": object_path(kind, definition_id, version.version),
                "checksum": version.digest,
                "size_bytes": version.size_bytes,
                "content_type": "application/json",
            },
        },
        operation=_OPERATION,
    )
