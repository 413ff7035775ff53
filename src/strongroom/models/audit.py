"""Audit records: one global append-only hash-chained log, with Merkle checkpoints.

Every durable record write appends an audit entry in the same transaction, carrying a
`RecordBinding` per record it wrote: the record's type, id and canonical digest
(`record_digest`). ``verify`` recomputes each record's digest and compares it with the latest
binding the chain holds for it, so a record rewritten, re-pointed or deleted behind
strongroom's back no longer matches the chain."""

from __future__ import annotations

import hashlib
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

from strongroom.ids import ActorName, Digest
from strongroom.models._base import Record, UtcDatetime, utcnow
from strongroom.models.canonical import Canon, record_json, sorted_json

__all__ = [
    "BINDING_TYPES",
    "AuditEntry",
    "AuditEvent",
    "BindingType",
    "MerkleCheckpoint",
    "RecordBinding",
    "record_digest",
    "record_digest_as",
]

# What a binding can name. "log" binds a run's log head (``seq`` and the head's hash);
# every other type binds a whole record by its canonical digest.
BindingType = Literal[
    "run",
    "snapshot",
    "artifact",
    "log",
    "log_ref",
    "provider",
    "namespace",
    "object",
    "definition",
    "channel_move",
    "approval",
    "checkpoint",
    "actor",
]
BINDING_TYPES: tuple[str, ...] = get_args(BindingType)


def record_digest(record: BaseModel) -> str:
    """sha256 of the record's canonical JSON (`record_json`: RFC 8785 wherever it can
    represent the record): what a binding carries."""
    return hashlib.sha256(record_json(record.model_dump(mode="json"))).hexdigest()


def record_digest_as(record: BaseModel, expected: str | None) -> str:
    """The record's digest in the form ``expected`` (a binding's digest) was taken in: its
    `record_digest`, or, when that is not ``expected``, its `sorted_json` digest if that is
    (the form of bindings in entries written before ``canon``). Both are SHA-256 of a JSON
    text of the same value, so accepting either vouches for nothing the other would not."""
    body = record.model_dump(mode="json")
    digest = hashlib.sha256(record_json(body)).hexdigest()
    if digest == expected:
        return digest
    old = hashlib.sha256(sorted_json(body)).hexdigest()
    return old if old == expected else digest


class RecordBinding(Record):
    """One record an audit entry vouches for: its state after the write (``digest``), or its
    deletion (``digest`` None). For a log head: ``id`` is the run, ``seq`` the head's position
    and ``digest`` its hash."""

    type: BindingType
    id: str = Field(min_length=1, max_length=400)
    digest: Digest | None = None
    seq: int | None = Field(default=None, ge=0)


class AuditEvent(Record):
    """An audit event as a service emits it."""

    event: str = Field(min_length=1, max_length=128, pattern=r"^[a-z][a-z0-9_.]*$")
    actor: ActorName = "system"
    subject_type: str = Field(max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    subject_id: str = Field(max_length=256)
    details: dict[str, Any] = Field(default_factory=dict)
    timestamp: UtcDatetime = Field(default_factory=utcnow)
    records: list[RecordBinding] = Field(
        default_factory=list,
        description="Bindings to add besides the ones the store computes for what it wrote.",
    )


class AuditEntry(Record):
    """A stored audit entry. ``hash`` = sha256 of the canonical JSON of the entry without
    ``hash`` (which includes ``prev_hash``); seq starts at 1. See `strongroom.models.chain`."""

    seq: int = Field(ge=1)
    timestamp: UtcDatetime
    event: str
    actor: str
    subject_type: str
    subject_id: str
    details: dict[str, Any] = Field(default_factory=dict)
    records: list[RecordBinding] = Field(
        default_factory=list,
        description="The records this entry vouches for. Left out of the hashed body when "
        "empty, so entries written before bindings existed keep their hash.",
    )
    prev_hash: Digest
    hash: Digest
    canon: Canon | None = Field(
        default=None,
        description="How ``hash`` and the digests of ``records`` were taken: 'jcs' = SHA-256 "
        "of RFC 8785 canonical JSON. Absent on entries written before it (CPython's sorted "
        "json.dumps; see strongroom.models.canonical).",
    )


class MerkleCheckpoint(Record):
    """RFC 6962 Merkle tree head over audit entries 1..tree_size (leaf = entry hash bytes).

    ``compact_range`` holds the roots of the perfect subtrees the first ``tree_size`` leaves
    decompose into (left to right): the next checkpoint continues from it instead of reading
    the whole chain again. verify never trusts it: it recomputes every root from the entries.
    A signed checkpoint also carries an Ed25519 signature over its tree head
    (`strongroom.integrity.tree_head_payload` of tree_size, root_hash and ``signed_at``),
    made with a key kept outside the vault."""

    tree_size: int = Field(ge=1)
    root_hash: Digest
    created_at: UtcDatetime = Field(default_factory=utcnow)
    compact_range: list[Digest] = Field(default_factory=list, max_length=64)
    signed_at: UtcDatetime | None = None
    key_id: str | None = Field(default=None, max_length=64)
    public_key: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    signature: str | None = Field(default=None, pattern=r"^[0-9a-f]{128}$")
