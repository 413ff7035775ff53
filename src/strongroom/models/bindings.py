"""How each kind of record is named in the audit chain: `bind` makes the `RecordBinding` a
write carries, from exactly the record that was stored.

A bound record is stored as `stored_body`: its canonical JSON (the bytes its digest is taken
over) as text. verify can then check a stored record against its binding by hashing the stored
text, without parsing or re-serializing it; a body stored in another form (an older vault) is
still checked, by the slower parse-and-recompute path."""

from __future__ import annotations

import hashlib

from strongroom.models.artifacts import ArtifactMetadata
from strongroom.models.audit import BindingType, MerkleCheckpoint, RecordBinding, record_digest
from strongroom.models.canonical import record_json
from strongroom.models.catalog import CatalogObject, Namespace, Provider
from strongroom.models.identity import Actor
from strongroom.models.logs import LogEntry, LogReference
from strongroom.models.registry import Approval, ChannelMove, DefinitionVersion
from strongroom.models.retention import Hold
from strongroom.models.runs import Run, SnapshotRecord

__all__ = [
    "BoundRecord",
    "bind",
    "bind_deleted",
    "bind_log_head",
    "binding_id",
    "stored_body",
]

BoundRecord = (
    Run
    | SnapshotRecord
    | ArtifactMetadata
    | LogReference
    | Provider
    | Namespace
    | CatalogObject
    | DefinitionVersion
    | ChannelMove
    | Approval
    | MerkleCheckpoint
    | Actor
    | Hold
)


def binding_id(record: BoundRecord) -> tuple[BindingType, str]:
    """(type, id) of a record in the audit chain."""
    if isinstance(record, Run):
        return "run", record.run_id
    if isinstance(record, SnapshotRecord):
        return "snapshot", f"{record.run_id}@{record.revision}"
    if isinstance(record, ArtifactMetadata):
        return "artifact", record.artifact_id
    if isinstance(record, LogReference):
        return "log_ref", record.run_id
    if isinstance(record, Provider):
        return "provider", record.provider_id
    if isinstance(record, Namespace):
        return "namespace", record.namespace_id
    if isinstance(record, CatalogObject):
        return "object", record.object_id
    if isinstance(record, DefinitionVersion):
        return "definition", f"{record.kind.value}/{record.definition_id}@{record.version}"
    if isinstance(record, ChannelMove):
        return "channel_move", record.move_id
    if isinstance(record, Approval):
        return "approval", record.approval_id
    if isinstance(record, MerkleCheckpoint):
        return "checkpoint", str(record.tree_size)
    if isinstance(record, Actor):
        return "actor", record.key_id
    if isinstance(record, Hold):
        return "hold", record.hold_id
    raise TypeError(f"no audit binding for {type(record).__name__}")  # pragma: no cover


def stored_body(record: BoundRecord) -> str:
    """The text a records store keeps for a bound record: its canonical JSON, whose sha256
    is `record_digest` (and which every reader parses like any JSON form of the record)."""
    return record_json(record.model_dump(mode="json")).decode("utf-8")


def bind(record: BoundRecord, body: str | None = None) -> RecordBinding:
    """The binding of ``record``; ``body``: its `stored_body`, when the caller has it (its
    digest is then the hash of that text, not recomputed from the record)."""
    kind, ident = binding_id(record)
    digest = (
        record_digest(record) if body is None else hashlib.sha256(body.encode("utf-8")).hexdigest()
    )
    return RecordBinding.model_construct(type=kind, id=ident, digest=digest, seq=None)


def bind_deleted(kind: BindingType, ident: str) -> RecordBinding:
    return RecordBinding.model_validate({"type": kind, "id": ident, "digest": None})


def bind_log_head(head: LogEntry) -> RecordBinding:
    return RecordBinding.model_construct(type="log", id=head.run_id, digest=head.hash, seq=head.seq)
